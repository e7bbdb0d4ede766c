// MetricChart: one live line chart (several named series over the step axis). Appends are
// buffered and redrawn in one batch at most every 40 ms; each series is downsampled to about
// kShownPoints for drawing (min/max per bucket), so a 1M-point run redraws at interactive speed.
// Only ui/charts/ includes Qt Charts: this header forward-declares what it needs.
#pragma once

#include <QPointF>
#include <QString>
#include <QTimer>
#include <QVector>
#include <QWidget>
#include <map>

QT_BEGIN_NAMESPACE
class QChart;
class QChartView;
class QLineSeries;
class QValueAxis;
QT_END_NAMESPACE

namespace lathe::ui {

class MetricChart : public QWidget {
  Q_OBJECT

 public:
  static constexpr int kShownPoints = 2000;
  static constexpr int kRedrawMs = 40;
  // Beyond this many points held, a series keeps every other point (memory stays bounded).
  static constexpr qsizetype kMaxHeldPoints = 1 << 19;

  MetricChart(const QString& title, const QString& y_title, QWidget* parent = nullptr);

  void addSeries(const QString& key, const QString& label);
  void removeAllSeries();  // series and data (charts whose series change: overlaid runs)
  int seriesCount() const { return static_cast<int>(lines_.size()); }
  void setXTitle(const QString& title);
  void setPoints(const QString& key, QVector<QPointF> points);  // replaces the series' data
  void append(const QString& key, const QPointF& point);        // buffered redraw
  void clear();                                                 // every series' data
  qsizetype pointCount(const QString& key) const;               // points held
  qsizetype shownCount(const QString& key) const;               // points drawn (after downsampling)
  void redrawNow();

 private:
  struct Line {
    QVector<QPointF> data;
    QLineSeries* series = nullptr;
    bool dirty = false;
  };
  void scheduleRedraw();

  QChart* chart_ = nullptr;
  QChartView* view_ = nullptr;
  QValueAxis* x_axis_ = nullptr;
  QValueAxis* y_axis_ = nullptr;
  std::map<QString, Line> lines_;
  QTimer redraw_timer_;
};

}  // namespace lathe::ui
