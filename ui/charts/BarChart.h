// BarChart: grouped bars, one bar set per run over shared categories (the memory breakdown by
// allocator tag in Compare). Values are drawn as given; the caller picks the unit. Only
// ui/charts/ includes Qt Charts.
#pragma once

#include <QString>
#include <QStringList>
#include <QVector>
#include <QWidget>

QT_BEGIN_NAMESPACE
class QChart;
class QChartView;
QT_END_NAMESPACE

namespace lathe::ui {

class BarChart : public QWidget {
  Q_OBJECT

 public:
  explicit BarChart(const QString& title, QWidget* parent = nullptr);

  // values[s][c]: set s (labelled set_labels[s]) in category c; every row has
  // categories.size() values.
  void setData(const QStringList& categories, const QStringList& set_labels,
               const QVector<QVector<double>>& values, const QString& y_title);
  int setCount() const { return static_cast<int>(values_.size()); }
  int categoryCount() const { return static_cast<int>(categories_.size()); }
  QStringList categories() const { return categories_; }
  double value(int set, int category) const;
  bool savePng(const QString& path);

 private:
  QChart* chart_ = nullptr;
  QChartView* view_ = nullptr;
  QStringList categories_;
  QVector<QVector<double>> values_;
};

}  // namespace lathe::ui
