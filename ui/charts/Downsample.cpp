#include "ui/charts/Downsample.h"

#include <cmath>

namespace lathe::ui {

QVector<QPointF> downsampleMinMax(const QVector<QPointF>& points, int max_points) {
  const qsizetype n = points.size();
  if (n <= max_points || max_points < 4) return points;
  const qsizetype buckets = (max_points - 2) / 2;
  QVector<QPointF> out;
  out.reserve(2 * buckets + 2);
  out.push_back(points.front());
  const double width = static_cast<double>(n - 2) / static_cast<double>(buckets);
  for (qsizetype b = 0; b < buckets; ++b) {
    const qsizetype begin = 1 + static_cast<qsizetype>(std::floor(b * width));
    const qsizetype end =
        std::min<qsizetype>(n - 1, 1 + static_cast<qsizetype>(std::floor((b + 1) * width)));
    if (begin >= end) continue;
    qsizetype lo = begin, hi = begin;
    for (qsizetype i = begin; i < end; ++i) {
      // NaN (a diverged loss) compares false both ways: such points are skipped unless alone.
      if (points[i].y() < points[lo].y()) lo = i;
      if (points[i].y() > points[hi].y()) hi = i;
    }
    out.push_back(points[std::min(lo, hi)]);
    if (lo != hi) out.push_back(points[std::max(lo, hi)]);
  }
  out.push_back(points.back());
  return out;
}

}  // namespace lathe::ui
