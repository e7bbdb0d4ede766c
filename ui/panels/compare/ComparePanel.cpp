#include "ui/panels/compare/ComparePanel.h"

#include <QComboBox>
#include <QFile>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QRegularExpression>
#include <QSaveFile>
#include <QSortFilterProxyModel>
#include <QSplitter>
#include <QStandardItemModel>
#include <QTabWidget>
#include <QTableView>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>

#include "core/store/RunStore.h"
#include "ui/charts/BarChart.h"
#include "ui/charts/MetricChart.h"
#include "ui/charts/ParetoChart.h"

namespace lathe::ui {
namespace {

enum FixedColumn { kId, kName, kStatus, kDevice, kFixed };

QString csvCell(QString s) {
  if (s.contains(',') || s.contains('"') || s.contains('\n'))
    s = '"' + s.replace('"', "\"\"") + '"';
  return s;
}

}  // namespace

bool ComparePanel::higherIsBetter(const QString& key) {
  return key.contains("accuracy") || key.endsWith("per_s");
}

ComparePanel::ComparePanel(store::RunStore* store, QWidget* parent)
    : QWidget(parent), store_(store) {
  setObjectName("ComparePanel");
  auto* layout = new QVBoxLayout(this);
  auto* bar = new QHBoxLayout();
  filter_ = new QLineEdit(this);
  filter_->setObjectName("CompareFilter");
  filter_->setPlaceholderText(tr("Filter runs (name, status, any value)…"));
  filter_->setClearButtonEnabled(true);
  bar->addWidget(filter_, 1);
  auto* csv = new QPushButton(tr("Export CSV…"), this);
  csv->setObjectName("ExportCsv");
  auto* png = new QPushButton(tr("Export PNG…"), this);
  png->setObjectName("ExportPng");
  bar->addWidget(csv);
  bar->addWidget(png);
  layout->addLayout(bar);

  auto* split = new QSplitter(Qt::Vertical, this);
  model_ = new QStandardItemModel(this);
  proxy_ = new QSortFilterProxyModel(this);
  proxy_->setSourceModel(model_);
  proxy_->setFilterKeyColumn(-1);
  proxy_->setFilterCaseSensitivity(Qt::CaseInsensitive);
  proxy_->setSortRole(Qt::UserRole);
  table_ = new QTableView(split);
  table_->setObjectName("CompareTable");
  table_->setModel(proxy_);
  table_->setSortingEnabled(true);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->verticalHeader()->hide();

  chart_tabs_ = new QTabWidget(split);
  chart_tabs_->setObjectName("CompareCharts");
  chart_tabs_->setDocumentMode(true);
  // Scatter with the Pareto front.
  auto* chart_host = new QWidget(chart_tabs_);
  auto* chart_layout = new QVBoxLayout(chart_host);
  chart_layout->setContentsMargins(0, 0, 0, 0);
  auto* axes = new QHBoxLayout();
  x_ = new QComboBox(chart_host);
  x_->setObjectName("CompareX");
  y_ = new QComboBox(chart_host);
  y_->setObjectName("CompareY");
  axes->addWidget(new QLabel(tr("X:"), chart_host));
  axes->addWidget(x_, 1);
  axes->addWidget(new QLabel(tr("Y:"), chart_host));
  axes->addWidget(y_, 1);
  chart_layout->addLayout(axes);
  chart_ = new ParetoChart(chart_host);
  chart_->setObjectName("CompareChart");
  chart_layout->addWidget(chart_, 1);
  note_ = new QLabel(chart_host);
  note_->setObjectName("CompareNote");
  chart_layout->addWidget(note_);
  chart_tabs_->addTab(chart_host, tr("Scatter"));
  // Overlaid curves.
  auto* curves_host = new QWidget(chart_tabs_);
  auto* curves_layout = new QVBoxLayout(curves_host);
  curves_layout->setContentsMargins(0, 0, 0, 0);
  auto* curve_bar = new QHBoxLayout();
  curve_metric_ = new QComboBox(curves_host);
  curve_metric_->setObjectName("CurveMetric");
  for (const auto& [key, label] : std::initializer_list<std::pair<const char*, const char*>>{
           {"loss", "training loss"},
           {"val_loss", "validation loss"},
           {"val_accuracy", "validation accuracy"},
           {"train_accuracy", "training accuracy"},
           {"val_perplexity", "validation perplexity"},
           {"samples_per_s", "samples/s"},
           {"memory_mb", "memory (MiB)"},
           {"lr", "learning rate"}})
    curve_metric_->addItem(tr(label), QString(key));
  curve_axis_ = new QComboBox(curves_host);
  curve_axis_->setObjectName("CurveAxis");
  curve_axis_->addItem(tr("step"), "step");
  curve_axis_->addItem(tr("time (s)"), "time");
  curve_bar->addWidget(new QLabel(tr("Curve:"), curves_host));
  curve_bar->addWidget(curve_metric_, 1);
  curve_bar->addWidget(new QLabel(tr("against:"), curves_host));
  curve_bar->addWidget(curve_axis_);
  curves_layout->addLayout(curve_bar);
  curves_ = new MetricChart(tr("Selected runs"), tr("value"), curves_host);
  curves_->setObjectName("CompareCurves");
  curves_layout->addWidget(curves_, 1);
  chart_tabs_->addTab(curves_host, tr("Curves"));
  // Peak memory by tag.
  auto* memory_host = new QWidget(chart_tabs_);
  auto* memory_layout = new QVBoxLayout(memory_host);
  memory_layout->setContentsMargins(0, 0, 0, 0);
  memory_ = new BarChart(tr("Peak memory by tag"), memory_host);
  memory_->setObjectName("CompareMemory");
  memory_layout->addWidget(memory_, 1);
  memory_note_ = new QLabel(memory_host);
  memory_note_->setObjectName("CompareMemoryNote");
  memory_layout->addWidget(memory_note_);
  chart_tabs_->addTab(memory_host, tr("Memory"));
  split->addWidget(table_);
  split->addWidget(chart_tabs_);
  layout->addWidget(split, 1);

  connect(filter_, &QLineEdit::textChanged, this, &ComparePanel::setFilter);
  connect(x_, &QComboBox::currentIndexChanged, this, &ComparePanel::updateChart);
  connect(y_, &QComboBox::currentIndexChanged, this, &ComparePanel::updateChart);
  connect(curve_metric_, &QComboBox::currentIndexChanged, this, &ComparePanel::updateOverlays);
  connect(curve_axis_, &QComboBox::currentIndexChanged, this, &ComparePanel::updateOverlays);
  connect(table_->selectionModel(), &QItemSelectionModel::selectionChanged, this,
          &ComparePanel::updateOverlays);
  connect(csv, &QPushButton::clicked, this, &ComparePanel::exportCsvDialog);
  connect(png, &QPushButton::clicked, this, &ComparePanel::exportPngDialog);
  connect(table_, &QTableView::doubleClicked, this, [this](const QModelIndex& index) {
    Q_EMIT runActivated(proxy_->index(index.row(), kId).data(Qt::UserRole).toLongLong());
  });
  refresh();
}

int ComparePanel::runCount() const {
  return model_->rowCount();
}

void ComparePanel::setFilter(const QString& text) {
  if (filter_->text() != text) filter_->setText(text);
  proxy_->setFilterFixedString(text);
  updateChart();
  updateOverlays();
}

void ComparePanel::setFigures(const QString& x_key, const QString& y_key) {
  x_->setCurrentText(x_key);
  y_->setCurrentText(y_key);
  updateChart();
}

void ComparePanel::setStore(store::RunStore* store) {
  store_ = store;
  model_->clear();
  refresh();
}

void ComparePanel::refresh() {
  if (store_ == nullptr) {
    updateChart();
    updateOverlays();
    return;
  }
  store::Comparison c;
  try {
    std::vector<int64_t> ids;
    for (const store::RunRecord& r : store_->listRuns()) ids.push_back(r.id);
    c = store_->compare(ids);
  } catch (const std::exception& e) {
    note_->setText(tr("Cannot read the runs: %1").arg(e.what()));
    return;
  }
  keys_.clear();
  for (const std::string& k : c.keys)
    if (k.rfind("config.", 0) != 0) keys_ << QString::fromStdString(k);
  model_->clear();
  QStringList header = {tr("#"), tr("Name"), tr("Status"), tr("Device")};
  model_->setHorizontalHeaderLabels(header + keys_);
  QStringList numeric;
  for (size_t i = 0; i < c.runs.size(); ++i) {
    const store::RunRecord& r = c.runs[i];
    QList<QStandardItem*> row;
    auto* id = new QStandardItem(QString::number(r.id));
    id->setData(QVariant::fromValue<qint64>(r.id), Qt::UserRole);
    row << id;
    for (const std::string& s : {r.name, std::string(store::statusName(r.status)), r.device}) {
      auto* item = new QStandardItem(QString::fromStdString(s));
      item->setData(QString::fromStdString(s), Qt::UserRole);
      row << item;
    }
    row[kStatus]->setToolTip(QString::fromStdString(r.message));
    for (const QString& key : keys_) {
      const auto k = static_cast<size_t>(
          std::find(c.keys.begin(), c.keys.end(), key.toStdString()) - c.keys.begin());
      auto* item = new QStandardItem();
      if (const auto& v = c.values[i][k]) {
        if (const double* d = std::get_if<double>(&*v)) {
          item->setText(QString::number(*d, 'g', 6));
          item->setData(*d, Qt::UserRole);
          item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
          if (!numeric.contains(key)) numeric << key;
        } else {
          const QString s = QString::fromStdString(std::get<std::string>(*v));
          item->setText(s);
          item->setData(s, Qt::UserRole);
        }
      }
      row << item;
    }
    model_->appendRow(row);
  }
  // The figure choices: numeric keys; keep the user's choice, else a sensible default.
  const QString old_x = x_->currentText(), old_y = y_->currentText();
  {
    const QSignalBlocker b1(x_), b2(y_);
    x_->clear();
    y_->clear();
    numeric.sort();
    x_->addItems(numeric);
    y_->addItems(numeric);
    auto pick = [&](QComboBox* box, const QString& old, QStringList prefs) {
      prefs.prepend(old);
      for (const QString& p : prefs)
        if (int i = box->findText(p); i >= 0) return box->setCurrentIndex(i);
    };
    pick(x_, old_x, {"peak_memory_bytes", "train_time_s", "params"});
    pick(y_, old_y, {"test_accuracy", "val_accuracy", "test_loss", "val_loss"});
  }
  updateChart();
  updateOverlays();
}

void ComparePanel::updateChart() {
  const QString xk = x_->currentText(), yk = y_->currentText();
  const int xc = static_cast<int>(keys_.indexOf(xk)), yc = static_cast<int>(keys_.indexOf(yk));
  QVector<QPointF> points;
  QStringList labels;
  if (xc >= 0 && yc >= 0) {
    for (int r = 0; r < proxy_->rowCount(); ++r) {
      const QVariant xv = proxy_->index(r, kFixed + xc).data(Qt::UserRole);
      const QVariant yv = proxy_->index(r, kFixed + yc).data(Qt::UserRole);
      if (xv.typeId() != QMetaType::Double || yv.typeId() != QMetaType::Double) continue;
      points.push_back(QPointF(xv.toDouble(), yv.toDouble()));
      labels << QString("#%1 %2").arg(proxy_->index(r, kId).data().toString(),
                                      proxy_->index(r, kName).data().toString());
    }
  }
  chart_->setData(points, labels, xk, yk, higherIsBetter(xk), higherIsBetter(yk));
  note_->setText(
      points.isEmpty()
          ? tr("No run has both figures yet: finished runs appear here.")
          : tr("%1 runs, %2 on the Pareto front.").arg(points.size()).arg(chart_->frontCount()));
}

void ComparePanel::updateOverlays() {
  // The selected rows in table order, else the visible ones.
  QVector<int> rows;
  for (const QModelIndex& i : table_->selectionModel()->selectedRows()) rows << i.row();
  std::sort(rows.begin(), rows.end());
  if (rows.isEmpty())
    for (int r = 0; r < proxy_->rowCount(); ++r) rows << r;
  if (rows.size() > kMaxOverlaid) rows.resize(kMaxOverlaid);
  overlaid_.clear();
  QStringList labels;
  for (int r : rows) {
    overlaid_ << proxy_->index(r, kId).data(Qt::UserRole).toLongLong();
    labels << QString("#%1 %2").arg(proxy_->index(r, kId).data().toString(),
                                    proxy_->index(r, kName).data().toString());
  }

  // Curves: one recorded series per run, against step or seconds since the run started.
  const QString metric = curve_metric_->currentData().toString();
  const bool by_time = curve_axis_->currentData().toString() == "time";
  curves_->removeAllSeries();
  curves_->setXTitle(by_time ? tr("time (s)") : tr("step"));
  if (store_ != nullptr) {
    for (qsizetype i = 0; i < overlaid_.size(); ++i) {
      const QString key = QString::number(overlaid_[i]);
      try {
        const store::RunRecord run = store_->getRun(overlaid_[i]);
        const std::vector<store::MetricPoint> pts =
            store_->series(overlaid_[i], metric.toStdString());
        if (pts.empty()) continue;
        double t0 = run.started_at.value_or(pts.front().wall_time);
        QVector<QPointF> v;
        v.reserve(static_cast<qsizetype>(pts.size()));
        for (const store::MetricPoint& p : pts) {
          if (!by_time)
            v.push_back(QPointF(static_cast<double>(p.step), p.value));
          else if (std::isfinite(p.wall_time))
            v.push_back(QPointF(p.wall_time - t0, p.value));
        }
        curves_->addSeries(key, labels[i]);
        curves_->setPoints(key, std::move(v));
      } catch (const std::exception& e) {
        note_->setText(tr("Cannot read run #%1's curves: %2").arg(key).arg(e.what()));
      }
    }
  }
  curves_->redrawNow();

  // Memory: peak_<tag>_bytes per run, in MiB; tags every run has as zero are left out.
  static const QRegularExpression tag_key("^peak_(.+)_bytes$");
  QStringList tags;
  QVector<int> columns;
  for (qsizetype k = 0; k < keys_.size(); ++k) {
    const QRegularExpressionMatch m = tag_key.match(keys_[k]);
    if (!m.hasMatch() || keys_[k] == "peak_memory_bytes") continue;
    bool any = false;
    for (int r : rows)
      any |= proxy_->index(r, kFixed + static_cast<int>(k)).data(Qt::UserRole).toDouble() > 0;
    if (!any) continue;
    tags << m.captured(1);
    columns << kFixed + static_cast<int>(k);
  }
  QVector<QVector<double>> values;
  QStringList set_labels;
  for (qsizetype i = 0; i < rows.size() && !tags.isEmpty(); ++i) {
    QVector<double> v;
    bool any = false;
    for (int c : columns) {
      const QVariant d = proxy_->index(rows[i], c).data(Qt::UserRole);
      any |= d.typeId() == QMetaType::Double;
      v << (d.typeId() == QMetaType::Double ? d.toDouble() / (1 << 20) : 0.0);
    }
    if (!any) continue;
    values << v;
    set_labels << labels[i];
  }
  memory_->setData(tags, set_labels, values, tr("MiB"));
  memory_note_->setText(
      values.isEmpty()
          ? tr("No run has per-tag memory figures yet (peak_<tag>_bytes).")
          : tr("Peak bytes per allocator tag during training, %1 runs.").arg(values.size()));
}

bool ComparePanel::exportCsv(const QString& path, QString* error) const {
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly | QIODevice::Text)) {
    if (error != nullptr) *error = tr("%1: %2").arg(path, f.errorString());
    return false;
  }
  QStringList cells;
  for (int c = 0; c < proxy_->columnCount(); ++c)
    cells << csvCell(proxy_->headerData(c, Qt::Horizontal).toString());
  QByteArray out = cells.join(',').toUtf8() + '\n';
  for (int r = 0; r < proxy_->rowCount(); ++r) {
    cells.clear();
    for (int c = 0; c < proxy_->columnCount(); ++c) {
      const QVariant v = proxy_->index(r, c).data(Qt::UserRole);
      // Full precision for numbers (the table shows 6 digits).
      cells << (v.typeId() == QMetaType::Double ? QString::number(v.toDouble(), 'g', 17)
                                                : csvCell(proxy_->index(r, c).data().toString()));
    }
    out += cells.join(',').toUtf8() + '\n';
  }
  f.write(out);
  if (!f.commit()) {
    if (error != nullptr) *error = tr("%1: %2").arg(path, f.errorString());
    return false;
  }
  return true;
}

bool ComparePanel::exportPng(const QString& path) {
  if (chart_tabs_->currentIndex() == 1) return curves_->grab().save(path, "PNG");
  if (chart_tabs_->currentIndex() == 2) return memory_->savePng(path);
  return chart_->savePng(path);
}

void ComparePanel::exportCsvDialog() {
  const QString path =
      QFileDialog::getSaveFileName(this, tr("Export runs as CSV"), "runs.csv", tr("CSV (*.csv)"));
  if (path.isEmpty()) return;
  QString error;
  note_->setText(exportCsv(path, &error) ? tr("Wrote %1").arg(path) : error);
}

void ComparePanel::exportPngDialog() {
  const QString path = QFileDialog::getSaveFileName(this, tr("Export chart as PNG"), "pareto.png",
                                                    tr("PNG (*.png)"));
  if (path.isEmpty()) return;
  note_->setText(exportPng(path) ? tr("Wrote %1").arg(path) : tr("Cannot write %1").arg(path));
}

}  // namespace lathe::ui
