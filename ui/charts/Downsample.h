// Downsampling for line charts: keeps the first and last point and, per bucket, the points of
// the bucket's minimum and maximum y in their x order, so spikes (a diverging loss) survive.
// Output size <= 2 * buckets + 2. Qt-free apart from QPointF, so it is testable on its own.
#pragma once

#include <QPointF>
#include <QVector>

namespace lathe::ui {

QVector<QPointF> downsampleMinMax(const QVector<QPointF>& points, int max_points);

}  // namespace lathe::ui
