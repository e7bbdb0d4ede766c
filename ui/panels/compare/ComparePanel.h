// Compare tab: every run of the store with its summaries in a sortable, filterable table, and
// three charts: a scatter of two chosen figures with the Pareto front (the direction that is
// better is known per figure: accuracy and throughput up, the rest down), overlaid curves of one
// recorded series (loss, validation accuracy, ...) against step or time, and the peak memory by
// allocator tag (the peak_<tag>_bytes summaries) as bars. The scatter follows the table's
// filter; curves and bars show the selected rows (else the visible ones, at most kMaxOverlaid).
// Exports: the visible table as CSV, the chart shown as PNG.
#pragma once

#include <QStringList>
#include <QWidget>

class QComboBox;
class QLabel;
class QLineEdit;
class QSortFilterProxyModel;
class QStandardItemModel;
class QTabWidget;
class QTableView;

namespace lathe::store {
class RunStore;
}

namespace lathe::ui {

class BarChart;
class MetricChart;
class ParetoChart;

class ComparePanel : public QWidget {
  Q_OBJECT

 public:
  static constexpr int kMaxOverlaid = 12;

  explicit ComparePanel(store::RunStore* store, QWidget* parent = nullptr);

  void setStore(store::RunStore* store);  // another database: relists
  QTableView* table() const { return table_; }
  QSortFilterProxyModel* proxy() const { return proxy_; }
  ParetoChart* chart() const { return chart_; }
  MetricChart* curves() const { return curves_; }
  BarChart* memoryBars() const { return memory_; }
  QTabWidget* chartTabs() const { return chart_tabs_; }
  // The runs the curves and bars show, in table order.
  QVector<qint64> overlaidRuns() const { return overlaid_; }
  // Runs listed (all of them, before the filter).
  int runCount() const;
  void setFigures(const QString& x_key, const QString& y_key);
  void setFilter(const QString& text);

  // Write the table as the filter shows it (header row, then one row per run); false with
  // `error` set when the file cannot be written.
  bool exportCsv(const QString& path, QString* error = nullptr) const;
  bool exportPng(const QString& path);

  // Whether a larger value of this summary key is better.
  static bool higherIsBetter(const QString& key);

 public Q_SLOTS:
  void refresh();

 Q_SIGNALS:
  void runActivated(qint64 run_id);

 private:
  void updateChart();
  void updateOverlays();  // curves and memory bars of the selected (else visible) runs
  void exportCsvDialog();
  void exportPngDialog();

  store::RunStore* store_;
  QStandardItemModel* model_ = nullptr;
  QSortFilterProxyModel* proxy_ = nullptr;
  QTableView* table_ = nullptr;
  QLineEdit* filter_ = nullptr;
  QComboBox* x_ = nullptr;
  QComboBox* y_ = nullptr;
  ParetoChart* chart_ = nullptr;
  QLabel* note_ = nullptr;
  QTabWidget* chart_tabs_ = nullptr;
  MetricChart* curves_ = nullptr;
  QComboBox* curve_metric_ = nullptr;
  QComboBox* curve_axis_ = nullptr;
  BarChart* memory_ = nullptr;
  QLabel* memory_note_ = nullptr;
  QVector<qint64> overlaid_;
  QStringList keys_;  // summary keys, in column order after the fixed columns
};

}  // namespace lathe::ui
