// Compare tab: every run of the store with its summaries in a sortable, filterable table, and a
// scatter of two chosen figures with the Pareto front (the direction that is better is known
// per figure: accuracy and throughput up, the rest down). The chart follows the table's
// filter. Exports: the visible table as CSV, the chart as PNG.
#pragma once

#include <QStringList>
#include <QWidget>

class QComboBox;
class QLabel;
class QLineEdit;
class QSortFilterProxyModel;
class QStandardItemModel;
class QTableView;

namespace lathe::store {
class RunStore;
}

namespace lathe::ui {

class ParetoChart;

class ComparePanel : public QWidget {
  Q_OBJECT

 public:
  explicit ComparePanel(store::RunStore* store, QWidget* parent = nullptr);

  QTableView* table() const { return table_; }
  QSortFilterProxyModel* proxy() const { return proxy_; }
  ParetoChart* chart() const { return chart_; }
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
  QStringList keys_;  // summary keys, in column order after the fixed columns
};

}  // namespace lathe::ui
