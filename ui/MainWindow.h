// The workbench's main window: composes the Setup, Monitor and Compare tabs, the Runs dock,
// the menus and the status bar, and wires them to the EngineBridge. It owns no engine logic
// (see DESIGN.md, UI); panels live in ui/panels/<name>/. It holds the GUI thread's RunStore
// connection (readers) next to the bridge (whose runners write through their own).
#pragma once

#include <QMainWindow>
#include <memory>

#include "ui/Settings.h"

class QDockWidget;
class QTabWidget;

namespace lathe::store {
class RunStore;
}

namespace lathe::ui {

class ComparePanel;
class EngineBridge;
class MonitorPanel;
class RunsPanel;
class SetupPanel;

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  explicit MainWindow(WorkbenchSettings settings = WorkbenchSettings::load(),
                      QWidget* parent = nullptr);
  ~MainWindow() override;

  QTabWidget* tabs() const { return tabs_; }
  SetupPanel* setupPanel() const { return setup_; }
  MonitorPanel* monitorPanel() const { return monitor_; }
  ComparePanel* comparePanel() const { return compare_; }
  RunsPanel* runsPanel() const { return runs_; }
  EngineBridge* bridge() const { return bridge_; }
  QString dbPath() const { return db_path_; }

  // Validates the Setup draft and queues it; returns the run id, or 0 with the error shown.
  qint64 launchFromSetup();

 private:
  void buildMenus();
  void openStore();
  void showRun(qint64 run_id);
  void openConfigFile();
  void showAbout();

  WorkbenchSettings settings_;
  QString db_path_;
  std::unique_ptr<store::RunStore> store_;
  EngineBridge* bridge_ = nullptr;
  QTabWidget* tabs_ = nullptr;
  SetupPanel* setup_ = nullptr;
  MonitorPanel* monitor_ = nullptr;
  ComparePanel* compare_ = nullptr;
  RunsPanel* runs_ = nullptr;
  QDockWidget* runs_dock_ = nullptr;
};

}  // namespace lathe::ui
