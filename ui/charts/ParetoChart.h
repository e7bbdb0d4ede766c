// ParetoChart: a scatter of runs over two figures with the Pareto front marked (the runs no
// other run beats on both figures, given which direction is better for each), joined by a line.
// Only ui/charts/ includes Qt Charts.
#pragma once

#include <QPointF>
#include <QString>
#include <QVector>
#include <QWidget>
#include <vector>

QT_BEGIN_NAMESPACE
class QChart;
class QChartView;
class QScatterSeries;
class QLineSeries;
class QValueAxis;
QT_END_NAMESPACE

namespace lathe::ui {

// Indices of the non-dominated points, sorted by x. A point dominates another when it is at
// least as good on both figures and better on one. Points with a non-finite coordinate are
// never on the front.
std::vector<int> paretoFront(const QVector<QPointF>& points, bool higher_x_better,
                             bool higher_y_better);

class ParetoChart : public QWidget {
  Q_OBJECT

 public:
  explicit ParetoChart(QWidget* parent = nullptr);

  void setData(const QVector<QPointF>& points, const QStringList& labels, const QString& x_title,
               const QString& y_title, bool higher_x_better, bool higher_y_better);
  int pointCount() const;
  int frontCount() const;
  bool savePng(const QString& path);

 private:
  QChart* chart_ = nullptr;
  QChartView* view_ = nullptr;
  QScatterSeries* all_ = nullptr;
  QScatterSeries* front_ = nullptr;
  QLineSeries* front_line_ = nullptr;
  QValueAxis* x_axis_ = nullptr;
  QValueAxis* y_axis_ = nullptr;
};

}  // namespace lathe::ui
