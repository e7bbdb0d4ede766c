// Runs dock: every run of the store, newest first, with its status and key figure (test or
// validation accuracy, else perplexity or loss). Refreshed on status events; selecting a run
// shows it in Monitor. Reads through the GUI thread's own RunStore connection.
#pragma once

#include <QWidget>

class QLabel;
class QTreeWidget;

namespace lathe::store {
class RunStore;
}

namespace lathe::ui {

class RunsPanel : public QWidget {
  Q_OBJECT

 public:
  explicit RunsPanel(store::RunStore* store, QWidget* parent = nullptr);

  QTreeWidget* list() const { return list_; }
  qint64 selectedRun() const;
  void selectRun(qint64 run_id);
  int runCount() const;
  QString statusOf(qint64 run_id) const;  // as shown; empty when not listed

 public Q_SLOTS:
  void refresh();

 Q_SIGNALS:
  void runSelected(qint64 run_id);

 private:
  store::RunStore* store_;
  QTreeWidget* list_ = nullptr;
  QLabel* error_ = nullptr;
};

}  // namespace lathe::ui
