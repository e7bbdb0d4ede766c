// Runs dock: every run of the store, newest first, with a status icon and its key figure (test
// or validation accuracy, else perplexity or loss). Refreshed on status events; selecting a run
// shows it in Monitor. Reads through the GUI thread's own RunStore connection.
//
// Its context menu (also on the list's keys: F2, Delete, Ctrl+E) acts on the selected run:
// rename and delete go through the RunStore (delete asks first and removes the run's checkpoint
// and model files, never its exports); export copies the trained model to a chosen file as
// `lathe-cli export` does; duplicate and resume are handed to the main window (Setup and the
// EngineBridge). Each action is a child QAction named "Run<Verb>"; its dialog opens modeless
// and is named "<Verb>RunDialog", so tests drive both.
#pragma once

#include <QIcon>
#include <QWidget>
#include <array>

class QAction;
class QLabel;
class QMenu;
class QTreeWidget;

namespace lathe::store {
class RunStore;
}

namespace lathe::ui {

class RunsPanel : public QWidget {
  Q_OBJECT

 public:
  explicit RunsPanel(store::RunStore* store, QWidget* parent = nullptr);

  void setStore(store::RunStore* store);  // another database: relists
  QTreeWidget* list() const { return list_; }
  QMenu* contextMenu() const { return menu_; }
  qint64 selectedRun() const;
  void selectRun(qint64 run_id);
  int runCount() const;
  QString statusOf(qint64 run_id) const;  // as shown; empty when not listed
  QString nameOf(qint64 run_id) const;    // as shown; empty when not listed

  // Copies run `run_id`'s trained model (its "model" artifact, safetensors with the architecture
  // spec) to `path` atomically and records an "export" artifact. False with `error` set when the
  // run has no model or a file cannot be read or written.
  bool exportRun(qint64 run_id, const QString& path, QString* error);

 public Q_SLOTS:
  void refresh();

 Q_SIGNALS:
  void runSelected(qint64 run_id);
  void runsChanged();  // a run was renamed or deleted here
  void runDeleted(qint64 run_id);
  void duplicateRequested(qint64 run_id);
  void resumeRequested(qint64 run_id);
  void message(const QString& text);  // for the status bar

 private:
  void updateActions();
  void renameSelected();
  void deleteSelected();
  void exportSelected();

  store::RunStore* store_;
  QTreeWidget* list_ = nullptr;
  QLabel* error_ = nullptr;
  QMenu* menu_ = nullptr;
  QAction* rename_ = nullptr;
  QAction* duplicate_ = nullptr;
  QAction* delete_ = nullptr;
  QAction* resume_ = nullptr;
  QAction* export_ = nullptr;
  std::array<QIcon, 7> icons_;  // by store::Status
};

}  // namespace lathe::ui
