// The workbench's main window: composes the Setup, Monitor and Compare tabs, the Runs dock,
// the menus and the status bar, and wires them to the EngineBridge. It owns no engine logic
// (see DESIGN.md, UI); panels live in ui/panels/<name>/. It holds the GUI thread's RunStore
// connection (readers) next to the bridge (whose runners write through their own). The window
// layout, the database chosen with File > Open database and the recent files go through
// WorkbenchSettings, saved when they change and on close.
#pragma once

#include <QMainWindow>
#include <memory>

#include "ui/Settings.h"

class QDockWidget;
class QLabel;
class QMenu;
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
  const WorkbenchSettings& settings() const { return settings_; }
  QMenu* recentMenu() const { return recent_menu_; }

  // Validates the Setup draft and queues it; returns the run id, or 0 with the error shown.
  qint64 launchFromSetup();
  // Opens (or creates) another run database, remembered in the settings; refused (false, the
  // reason in the status bar) while runs of this session are queued or running, or when the
  // file is not a usable database (the current one stays open).
  bool switchDatabase(const QString& path);
  // Loads a run config file into Setup and adds it to the recent files.
  bool openConfig(const QString& path);
  // Loads the config of a stored run into Setup (the Runs dock's "duplicate").
  void duplicateRun(qint64 run_id);
  // Queues a stored run to continue from its checkpoint (the Runs dock's "resume").
  bool resumeRun(qint64 run_id);

 protected:
  void closeEvent(QCloseEvent* event) override;

 private:
  void buildMenus();
  void openStore();
  void connectBridge();
  void showRun(qint64 run_id);
  void openConfigFile();
  void openDatabaseDialog();
  void openRecent(const QString& path);
  void addRecent(const QString& path);
  void updateRecentMenu();
  void showAbout();
  // Holds the dataset preview and the estimate back while the engine runs (see
  // DatasetCard::setPreviewHeld, EstimateCard::setHeld).
  void holdBackgroundWork(bool held);

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
  QMenu* recent_menu_ = nullptr;
  QLabel* db_label_ = nullptr;
};

}  // namespace lathe::ui
