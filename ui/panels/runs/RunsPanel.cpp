#include "ui/panels/runs/RunsPanel.h"

#include <QHeaderView>
#include <QLabel>
#include <QTreeWidget>
#include <QVBoxLayout>

#include "core/store/RunStore.h"

namespace lathe::ui {
namespace {

enum Column { kId, kName, kStatus, kFigure, kColumns };

QString keyFigure(const std::map<std::string, store::SummaryValue>& s) {
  auto num = [&](const char* key) -> std::optional<double> {
    auto it = s.find(key);
    if (it == s.end()) return std::nullopt;
    if (const double* d = std::get_if<double>(&it->second)) return *d;
    return std::nullopt;
  };
  for (const char* k : {"test_accuracy", "val_accuracy"})
    if (auto v = num(k)) return QString("%1 %2%").arg(k).arg(100 * *v, 0, 'f', 2);
  for (const char* k : {"test_perplexity", "val_perplexity", "test_loss", "val_loss"})
    if (auto v = num(k)) return QString("%1 %2").arg(k).arg(*v, 0, 'g', 4);
  return {};
}

QColor statusColor(store::Status s) {
  switch (s) {
    case store::Status::done: return QColor(39, 174, 96);
    case store::Status::failed: return QColor(192, 57, 43);
    case store::Status::running: return QColor(41, 128, 185);
    case store::Status::paused: return QColor(185, 119, 14);
    default: return QColor(127, 127, 127);
  }
}

}  // namespace

RunsPanel::RunsPanel(store::RunStore* store, QWidget* parent) : QWidget(parent), store_(store) {
  setObjectName("RunsPanel");
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(2, 2, 2, 2);
  list_ = new QTreeWidget(this);
  list_->setObjectName("RunsList");
  list_->setColumnCount(kColumns);
  list_->setHeaderLabels({tr("#"), tr("Name"), tr("Status"), tr("Key figure")});
  list_->setRootIsDecorated(false);
  list_->setUniformRowHeights(true);
  list_->setAlternatingRowColors(true);
  list_->header()->setSectionResizeMode(QHeaderView::ResizeToContents);
  layout->addWidget(list_);
  error_ = new QLabel(this);
  error_->setWordWrap(true);
  error_->setStyleSheet("color: #c0392b;");
  error_->hide();
  layout->addWidget(error_);
  connect(list_, &QTreeWidget::currentItemChanged, this, [this](QTreeWidgetItem* item) {
    if (item != nullptr) Q_EMIT runSelected(item->data(kId, Qt::UserRole).toLongLong());
  });
  refresh();
}

void RunsPanel::refresh() {
  if (store_ == nullptr) return;
  const qint64 selected = selectedRun();
  try {
    std::vector<int64_t> ids;
    for (const store::RunRecord& r : store_->listRuns()) ids.push_back(r.id);
    const store::Comparison c = store_->compare(ids);
    const QSignalBlocker block(list_);
    list_->clear();
    for (size_t i = 0; i < c.runs.size(); ++i) {
      const store::RunRecord& r = c.runs[i];
      std::map<std::string, store::SummaryValue> sums;
      for (size_t k = 0; k < c.keys.size(); ++k)
        if (c.values[i][k]) sums[c.keys[k]] = *c.values[i][k];
      auto* item = new QTreeWidgetItem(list_);
      item->setText(kId, QString::number(r.id));
      item->setData(kId, Qt::UserRole, QVariant::fromValue<qint64>(r.id));
      item->setText(kName, QString::fromStdString(r.name));
      item->setText(kStatus, store::statusName(r.status));
      item->setForeground(kStatus, statusColor(r.status));
      item->setText(kFigure, keyFigure(sums));
      if (!r.message.empty()) {
        item->setToolTip(kStatus, QString::fromStdString(r.message));
        item->setToolTip(kName, QString::fromStdString(r.message));
      }
    }
    error_->hide();
  } catch (const std::exception& e) {
    error_->setText(tr("Cannot read the runs: %1").arg(e.what()));
    error_->show();
  }
  if (selected != 0) {
    const QSignalBlocker block(list_);
    selectRun(selected);
  }
}

qint64 RunsPanel::selectedRun() const {
  QTreeWidgetItem* item = list_->currentItem();
  return item == nullptr ? 0 : item->data(kId, Qt::UserRole).toLongLong();
}

void RunsPanel::selectRun(qint64 run_id) {
  for (int i = 0; i < list_->topLevelItemCount(); ++i) {
    QTreeWidgetItem* item = list_->topLevelItem(i);
    if (item->data(kId, Qt::UserRole).toLongLong() == run_id) {
      list_->setCurrentItem(item);
      return;
    }
  }
}

int RunsPanel::runCount() const {
  return list_->topLevelItemCount();
}

QString RunsPanel::statusOf(qint64 run_id) const {
  for (int i = 0; i < list_->topLevelItemCount(); ++i) {
    QTreeWidgetItem* item = list_->topLevelItem(i);
    if (item->data(kId, Qt::UserRole).toLongLong() == run_id) return item->text(kStatus);
  }
  return {};
}

}  // namespace lathe::ui
