#include "ui/charts/MetricChart.h"

#include <QChart>
#include <QChartView>
#include <QLineSeries>
#include <QVBoxLayout>
#include <QValueAxis>
#include <cmath>
#include <limits>

#include "ui/charts/Downsample.h"

namespace lathe::ui {

MetricChart::MetricChart(const QString& title, const QString& y_title, QWidget* parent)
    : QWidget(parent) {
  chart_ = new QChart();
  chart_->setTitle(title);
  chart_->legend()->setAlignment(Qt::AlignBottom);
  chart_->setMargins(QMargins(4, 4, 4, 4));
  x_axis_ = new QValueAxis(chart_);
  x_axis_->setTitleText(tr("step"));
  x_axis_->setLabelFormat("%g");
  y_axis_ = new QValueAxis(chart_);
  y_axis_->setTitleText(y_title);
  y_axis_->setLabelFormat("%.3g");
  chart_->addAxis(x_axis_, Qt::AlignBottom);
  chart_->addAxis(y_axis_, Qt::AlignLeft);
  view_ = new QChartView(chart_, this);
  view_->setRenderHint(QPainter::Antialiasing);
  view_->setMinimumSize(240, 180);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(view_);
  redraw_timer_.setSingleShot(true);
  redraw_timer_.setInterval(kRedrawMs);
  connect(&redraw_timer_, &QTimer::timeout, this, &MetricChart::redrawNow);
}

void MetricChart::addSeries(const QString& key, const QString& label) {
  if (lines_.count(key)) return;
  auto* s = new QLineSeries(chart_);
  s->setName(label);
  chart_->addSeries(s);
  s->attachAxis(x_axis_);
  s->attachAxis(y_axis_);
  lines_[key].series = s;
}

void MetricChart::removeAllSeries() {
  for (auto& [key, line] : lines_) {
    chart_->removeSeries(line.series);
    delete line.series;
  }
  lines_.clear();
  redrawNow();
}

void MetricChart::setXTitle(const QString& title) {
  x_axis_->setTitleText(title);
}

void MetricChart::setPoints(const QString& key, QVector<QPointF> points) {
  auto it = lines_.find(key);
  if (it == lines_.end()) return;
  it->second.data = std::move(points);
  it->second.dirty = true;
  scheduleRedraw();
}

void MetricChart::append(const QString& key, const QPointF& point) {
  auto it = lines_.find(key);
  if (it == lines_.end()) return;
  QVector<QPointF>& d = it->second.data;
  d.push_back(point);
  if (d.size() > kMaxHeldPoints) {
    qsizetype w = 0;
    for (qsizetype r = 0; r < d.size(); r += 2) d[w++] = d[r];
    d.resize(w);
  }
  it->second.dirty = true;
  scheduleRedraw();
}

void MetricChart::clear() {
  for (auto& [key, line] : lines_) {
    line.data.clear();
    line.dirty = true;
  }
  redrawNow();
}

qsizetype MetricChart::pointCount(const QString& key) const {
  auto it = lines_.find(key);
  return it == lines_.end() ? 0 : it->second.data.size();
}

qsizetype MetricChart::shownCount(const QString& key) const {
  auto it = lines_.find(key);
  return it == lines_.end() ? 0 : it->second.series->count();
}

void MetricChart::scheduleRedraw() {
  if (!redraw_timer_.isActive()) redraw_timer_.start();
}

void MetricChart::redrawNow() {
  redraw_timer_.stop();
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (auto& [key, line] : lines_) {
    if (line.dirty) {
      line.series->replace(downsampleMinMax(line.data, kShownPoints));
      line.dirty = false;
    }
    for (const QPointF& p : line.series->points()) {
      if (!std::isfinite(p.x()) || !std::isfinite(p.y())) continue;
      x0 = std::min(x0, p.x());
      x1 = std::max(x1, p.x());
      y0 = std::min(y0, p.y());
      y1 = std::max(y1, p.y());
    }
  }
  if (x0 > x1) {
    x_axis_->setRange(0, 1);
    y_axis_->setRange(0, 1);
    return;
  }
  if (x1 == x0) x1 = x0 + 1;
  const double pad = y1 > y0 ? 0.05 * (y1 - y0) : std::max(1e-9, 0.05 * std::abs(y0) + 1e-3);
  x_axis_->setRange(x0, x1);
  y_axis_->setRange(y0 - pad, y1 + pad);
}

}  // namespace lathe::ui
