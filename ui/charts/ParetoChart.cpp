#include "ui/charts/ParetoChart.h"

#include <QChart>
#include <QChartView>
#include <QCursor>
#include <QLineSeries>
#include <QScatterSeries>
#include <QToolTip>
#include <QVBoxLayout>
#include <QValueAxis>
#include <algorithm>
#include <cmath>
#include <limits>

namespace lathe::ui {

std::vector<int> paretoFront(const QVector<QPointF>& points, bool higher_x_better,
                             bool higher_y_better) {
  auto better_eq = [](double a, double b, bool higher) { return higher ? a >= b : a <= b; };
  auto better = [](double a, double b, bool higher) { return higher ? a > b : a < b; };
  std::vector<int> front;
  for (int i = 0; i < points.size(); ++i) {
    const QPointF& p = points[i];
    if (!std::isfinite(p.x()) || !std::isfinite(p.y())) continue;
    bool dominated = false;
    for (int j = 0; j < points.size() && !dominated; ++j) {
      const QPointF& q = points[j];
      if (j == i || !std::isfinite(q.x()) || !std::isfinite(q.y())) continue;
      dominated = better_eq(q.x(), p.x(), higher_x_better) &&
                  better_eq(q.y(), p.y(), higher_y_better) &&
                  (better(q.x(), p.x(), higher_x_better) || better(q.y(), p.y(), higher_y_better));
    }
    if (!dominated) front.push_back(i);
  }
  std::sort(front.begin(), front.end(),
            [&](int a, int b) { return points[a].x() < points[b].x(); });
  return front;
}

ParetoChart::ParetoChart(QWidget* parent) : QWidget(parent) {
  chart_ = new QChart();
  chart_->legend()->setAlignment(Qt::AlignBottom);
  x_axis_ = new QValueAxis(chart_);
  y_axis_ = new QValueAxis(chart_);
  x_axis_->setLabelFormat("%.3g");
  y_axis_->setLabelFormat("%.3g");
  chart_->addAxis(x_axis_, Qt::AlignBottom);
  chart_->addAxis(y_axis_, Qt::AlignLeft);
  all_ = new QScatterSeries(chart_);
  all_->setName(tr("runs"));
  all_->setMarkerSize(9);
  front_line_ = new QLineSeries(chart_);
  front_line_->setName(tr("Pareto front"));
  front_ = new QScatterSeries(chart_);
  front_->setName(tr("on the front"));
  front_->setMarkerSize(13);
  front_->setColor(QColor(220, 90, 30));
  front_line_->setColor(QColor(220, 90, 30));
  for (QXYSeries* s : {static_cast<QXYSeries*>(all_), static_cast<QXYSeries*>(front_line_),
                       static_cast<QXYSeries*>(front_)}) {
    chart_->addSeries(s);
    s->attachAxis(x_axis_);
    s->attachAxis(y_axis_);
  }
  view_ = new QChartView(chart_, this);
  view_->setRenderHint(QPainter::Antialiasing);
  view_->setMinimumSize(320, 240);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(view_);
}

void ParetoChart::setData(const QVector<QPointF>& points, const QStringList& labels,
                          const QString& x_title, const QString& y_title, bool higher_x_better,
                          bool higher_y_better) {
  QVector<QPointF> finite;
  for (const QPointF& p : points)
    if (std::isfinite(p.x()) && std::isfinite(p.y())) finite.push_back(p);
  all_->replace(finite);
  QVector<QPointF> front;
  for (int i : paretoFront(points, higher_x_better, higher_y_better)) front.push_back(points[i]);
  front_->replace(front);
  front_line_->replace(front);
  // Hovering a point names its run.
  disconnect(all_, &QScatterSeries::hovered, nullptr, nullptr);
  connect(all_, &QScatterSeries::hovered, this, [this, points, labels](const QPointF& p, bool on) {
    if (!on) return QToolTip::hideText();
    for (int i = 0; i < points.size() && i < labels.size(); ++i)
      if (points[i] == p) QToolTip::showText(QCursor::pos(), labels[i]);
  });
  auto arrow = [](bool higher) {
    return higher ? QStringLiteral(" (higher is better)") : QStringLiteral(" (lower is better)");
  };
  x_axis_->setTitleText(x_title + arrow(higher_x_better));
  y_axis_->setTitleText(y_title + arrow(higher_y_better));
  chart_->setTitle(tr("%1 vs %2").arg(y_title, x_title));
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const QPointF& p : finite) {
    x0 = std::min(x0, p.x());
    x1 = std::max(x1, p.x());
    y0 = std::min(y0, p.y());
    y1 = std::max(y1, p.y());
  }
  if (finite.isEmpty()) {
    x0 = y0 = 0;
    x1 = y1 = 1;
  }
  auto pad = [](double lo, double hi) {
    return hi > lo ? 0.08 * (hi - lo) : std::max(1e-9, 0.1 * std::abs(lo) + 1e-3);
  };
  const double px = pad(x0, x1), py = pad(y0, y1);
  x_axis_->setRange(x0 - px, x1 + px);
  y_axis_->setRange(y0 - py, y1 + py);
}

int ParetoChart::pointCount() const {
  return all_->count();
}

int ParetoChart::frontCount() const {
  return front_->count();
}

bool ParetoChart::savePng(const QString& path) {
  return view_->grab().save(path, "PNG");
}

}  // namespace lathe::ui
