#include "ui/charts/BarChart.h"

#include <QBarCategoryAxis>
#include <QBarSeries>
#include <QBarSet>
#include <QChart>
#include <QChartView>
#include <QVBoxLayout>
#include <QValueAxis>
#include <algorithm>

namespace lathe::ui {

BarChart::BarChart(const QString& title, QWidget* parent) : QWidget(parent) {
  chart_ = new QChart();
  chart_->setTitle(title);
  chart_->legend()->setAlignment(Qt::AlignBottom);
  chart_->setMargins(QMargins(4, 4, 4, 4));
  view_ = new QChartView(chart_, this);
  view_->setRenderHint(QPainter::Antialiasing);
  view_->setMinimumSize(240, 180);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(view_);
}

void BarChart::setData(const QStringList& categories, const QStringList& set_labels,
                       const QVector<QVector<double>>& values, const QString& y_title) {
  chart_->removeAllSeries();
  for (QAbstractAxis* a : chart_->axes()) {
    chart_->removeAxis(a);
    delete a;
  }
  categories_ = categories;
  values_ = values;
  if (categories.isEmpty() || values.isEmpty()) return;
  auto* series = new QBarSeries(chart_);
  double top = 0;
  for (qsizetype s = 0; s < values.size(); ++s) {
    auto* set = new QBarSet(s < set_labels.size() ? set_labels[s] : QString::number(s));
    for (double v : values[s]) {
      set->append(v);
      top = std::max(top, v);
    }
    series->append(set);
  }
  chart_->addSeries(series);
  auto* x = new QBarCategoryAxis(chart_);
  x->append(categories);
  auto* y = new QValueAxis(chart_);
  y->setTitleText(y_title);
  y->setLabelFormat("%.3g");
  y->setRange(0, top > 0 ? top * 1.08 : 1.0);
  chart_->addAxis(x, Qt::AlignBottom);
  chart_->addAxis(y, Qt::AlignLeft);
  series->attachAxis(x);
  series->attachAxis(y);
}

double BarChart::value(int set, int category) const {
  if (set < 0 || set >= values_.size() || category < 0 || category >= values_[set].size()) return 0;
  return values_[set][category];
}

bool BarChart::savePng(const QString& path) {
  return view_->grab().save(path, "PNG");
}

}  // namespace lathe::ui
