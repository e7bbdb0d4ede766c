#include "ui/panels/runs/RunsPanel.h"

#include <QAction>
#include <QFileDialog>
#include <QFileInfo>
#include <QHeaderView>
#include <QInputDialog>
#include <QLabel>
#include <QMenu>
#include <QMessageBox>
#include <QPainter>
#include <QPixmap>
#include <QTreeWidget>
#include <QVBoxLayout>
#include <filesystem>
#include <map>

#include "core/run/Export.h"
#include "core/store/RunStore.h"

namespace lathe::ui {
namespace {

namespace fs = std::filesystem;

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
    case store::Status::paused:
    case store::Status::interrupted: return QColor(185, 119, 14);
    default: return QColor(127, 127, 127);
  }
}

// A filled disc in the status colour with a glyph: done ✓, failed ✗, running ▶, paused ‖,
// interrupted !, cancelled ■, queued ….
QIcon paintStatusIcon(store::Status s) {
  static const std::map<store::Status, QString> glyphs = {
      {store::Status::done, QString::fromUtf8("\u2713")},
      {store::Status::failed, QString::fromUtf8("\u2717")},
      {store::Status::running, QString::fromUtf8("\u25B6")},
      {store::Status::paused, QString::fromUtf8("\u2016")},
      {store::Status::interrupted, "!"},
      {store::Status::cancelled, QString::fromUtf8("\u25A0")},
      {store::Status::queued, QString::fromUtf8("\u2026")}};
  QPixmap pm(32, 32);
  pm.fill(Qt::transparent);
  QPainter p(&pm);
  p.setRenderHint(QPainter::Antialiasing);
  p.setPen(Qt::NoPen);
  p.setBrush(statusColor(s));
  p.drawEllipse(QRectF(2, 2, 28, 28));
  QFont f = p.font();
  f.setPixelSize(18);
  f.setBold(true);
  p.setFont(f);
  p.setPen(Qt::white);
  p.drawText(QRect(0, 0, 32, 32), Qt::AlignCenter, glyphs.at(s));
  p.end();
  return QIcon(pm);
}

bool isActive(const QString& status) {
  return status == "queued" || status == "running" || status == "paused";
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
  list_->setIconSize(QSize(14, 14));
  list_->header()->setSectionResizeMode(QHeaderView::ResizeToContents);
  list_->setContextMenuPolicy(Qt::CustomContextMenu);
  for (size_t i = 0; i < icons_.size(); ++i)
    icons_[i] = paintStatusIcon(static_cast<store::Status>(i));
  layout->addWidget(list_);
  error_ = new QLabel(this);
  error_->setWordWrap(true);
  error_->setStyleSheet("color: #c0392b;");
  error_->hide();
  layout->addWidget(error_);

  auto action = [this](const QString& name, const QString& text, const QKeySequence& key) {
    auto* a = new QAction(text, this);
    a->setObjectName(name);
    if (!key.isEmpty()) {
      a->setShortcut(key);
      a->setShortcutContext(Qt::WidgetWithChildrenShortcut);
    }
    list_->addAction(a);
    return a;
  };
  rename_ = action("RunRename", tr("&Rename…"), QKeySequence(Qt::Key_F2));
  duplicate_ = action("RunDuplicate", tr("D&uplicate config into Setup"), {});
  resume_ = action("RunResume", tr("Re&sume from checkpoint"), {});
  export_ = action("RunExport", tr("&Export model (safetensors)…"), QKeySequence(tr("Ctrl+E")));
  delete_ = action("RunDelete", tr("&Delete…"), QKeySequence(QKeySequence::Delete));
  menu_ = new QMenu(this);
  menu_->setObjectName("RunsContextMenu");
  menu_->addActions({rename_, duplicate_, resume_, export_});
  menu_->addSeparator();
  menu_->addAction(delete_);

  connect(rename_, &QAction::triggered, this, &RunsPanel::renameSelected);
  connect(delete_, &QAction::triggered, this, &RunsPanel::deleteSelected);
  connect(export_, &QAction::triggered, this, &RunsPanel::exportSelected);
  connect(duplicate_, &QAction::triggered, this, [this] {
    if (const qint64 id = selectedRun(); id != 0) Q_EMIT duplicateRequested(id);
  });
  connect(resume_, &QAction::triggered, this, [this] {
    if (const qint64 id = selectedRun(); id != 0) Q_EMIT resumeRequested(id);
  });
  connect(list_, &QWidget::customContextMenuRequested, this, [this](const QPoint& pos) {
    if (QTreeWidgetItem* item = list_->itemAt(pos)) list_->setCurrentItem(item);
    updateActions();
    if (selectedRun() != 0) menu_->popup(list_->viewport()->mapToGlobal(pos));
  });
  connect(list_, &QTreeWidget::currentItemChanged, this, [this](QTreeWidgetItem* item) {
    updateActions();
    if (item != nullptr) Q_EMIT runSelected(item->data(kId, Qt::UserRole).toLongLong());
  });
  refresh();
}

void RunsPanel::setStore(store::RunStore* store) {
  store_ = store;
  list_->clear();
  refresh();
}

void RunsPanel::refresh() {
  if (store_ == nullptr) {
    updateActions();
    return;
  }
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
      item->setIcon(kStatus, icons_[static_cast<size_t>(r.status)]);
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
  updateActions();
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
      updateActions();
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

QString RunsPanel::nameOf(qint64 run_id) const {
  for (int i = 0; i < list_->topLevelItemCount(); ++i) {
    QTreeWidgetItem* item = list_->topLevelItem(i);
    if (item->data(kId, Qt::UserRole).toLongLong() == run_id) return item->text(kName);
  }
  return {};
}

// Enables what makes sense for the selected run: delete only when it is not active, resume for
// an interrupted, cancelled or failed run with a checkpoint, export for a run with a model.
void RunsPanel::updateActions() {
  const qint64 id = selectedRun();
  const QString status = statusOf(id);
  bool has_checkpoint = false, has_model = false;
  if (id != 0 && store_ != nullptr) {
    try {
      has_checkpoint = store_->latestCheckpoint(id).has_value();
      for (const store::Artifact& a : store_->artifacts(id)) has_model |= a.kind == "model";
    } catch (const std::exception& e) {
      Q_EMIT message(tr("Cannot read run #%1's files: %2").arg(id).arg(e.what()));
    }
  }
  rename_->setEnabled(id != 0);
  duplicate_->setEnabled(id != 0);
  delete_->setEnabled(id != 0 && !isActive(status));
  resume_->setEnabled(has_checkpoint &&
                      (status == "interrupted" || status == "cancelled" || status == "failed"));
  export_->setEnabled(has_model);
}

void RunsPanel::renameSelected() {
  const qint64 id = selectedRun();
  if (id == 0 || store_ == nullptr) return;
  auto* dialog = new QInputDialog(this);
  dialog->setObjectName("RenameRunDialog");
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->setWindowTitle(tr("Rename run #%1").arg(id));
  dialog->setLabelText(tr("Name:"));
  dialog->setTextValue(nameOf(id));
  connect(dialog, &QInputDialog::textValueSelected, this, [this, id](const QString& text) {
    const QString name = text.trimmed();
    if (name.isEmpty()) {
      Q_EMIT message(tr("A run needs a name; run #%1 keeps its own").arg(id));
      return;
    }
    try {
      store_->renameRun(id, name.toStdString());
    } catch (const std::exception& e) {
      Q_EMIT message(tr("Cannot rename run #%1: %2").arg(id).arg(e.what()));
      return;
    }
    refresh();
    Q_EMIT runsChanged();
    Q_EMIT message(tr("Run #%1 renamed to %2").arg(id).arg(name));
  });
  dialog->open();
}

void RunsPanel::deleteSelected() {
  const qint64 id = selectedRun();
  if (id == 0 || store_ == nullptr || !delete_->isEnabled()) return;
  auto* box = new QMessageBox(QMessageBox::Warning, tr("Delete run #%1").arg(id),
                              tr("Delete run #%1 \"%2\" with its curves, figures, checkpoint and "
                                 "model file? Exported files stay. This cannot be undone.")
                                  .arg(id)
                                  .arg(nameOf(id)),
                              QMessageBox::Yes | QMessageBox::Cancel, this);
  box->setObjectName("DeleteRunDialog");
  box->setDefaultButton(QMessageBox::Cancel);
  box->setAttribute(Qt::WA_DeleteOnClose);
  connect(box, &QMessageBox::finished, this, [this, box, id] {
    if (box->clickedButton() != box->button(QMessageBox::Yes)) return;
    std::vector<std::string> files;
    try {
      for (const store::Artifact& a : store_->artifacts(id))
        if (a.kind != "export") files.push_back(a.path);
      store_->deleteRun(id);
    } catch (const std::exception& e) {
      Q_EMIT message(tr("Cannot delete run #%1: %2").arg(id).arg(e.what()));
      return;
    }
    // The rows are gone; the run's own files follow (their folder too when left empty).
    QStringList left;
    for (const std::string& f : files) {
      std::error_code ec;
      if (fs::remove(f, ec); ec) left << QString::fromStdString(f + ": " + ec.message());
      fs::remove(fs::path(f).parent_path(), ec);  // only when empty; not an error otherwise
    }
    refresh();
    Q_EMIT runDeleted(id);
    Q_EMIT runsChanged();
    Q_EMIT message(left.isEmpty()
                       ? tr("Run #%1 deleted").arg(id)
                       : tr("Run #%1 deleted; could not remove %2").arg(id).arg(left.join("; ")));
  });
  box->open();
}

void RunsPanel::exportSelected() {
  const qint64 id = selectedRun();
  if (id == 0 || store_ == nullptr || !export_->isEnabled()) return;
  auto* dialog = new QFileDialog(this, tr("Export run #%1's model").arg(id));
  dialog->setObjectName("ExportRunDialog");
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->setAcceptMode(QFileDialog::AcceptSave);
  dialog->setNameFilter(tr("safetensors (*.safetensors)"));
  dialog->setDefaultSuffix("safetensors");
  dialog->selectFile(QString("%1.safetensors").arg(nameOf(id).isEmpty() ? "model" : nameOf(id)));
  connect(dialog, &QFileDialog::fileSelected, this, [this, id](const QString& path) {
    QString error;
    if (exportRun(id, path, &error))
      Q_EMIT message(tr("Run #%1's model written to %2").arg(id).arg(path));
    else
      Q_EMIT message(tr("Cannot export run #%1: %2").arg(id).arg(error));
  });
  dialog->open();
}

bool RunsPanel::exportRun(qint64 run_id, const QString& path, QString* error) {
  auto fail = [&](const QString& why) {
    if (error != nullptr) *error = why;
    return false;
  };
  if (store_ == nullptr) return fail(tr("no run database"));
  try {
    run::exportRunModel(*store_, run_id, path.toStdString());
  } catch (const std::exception& e) {
    return fail(QString::fromUtf8(e.what()));
  }
  return true;
}

}  // namespace lathe::ui
