#include "ui/MainWindow.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDir>
#include <QDockWidget>
#include <QFile>
#include <QFileDialog>
#include <QKeySequence>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QPushButton>
#include <QStatusBar>
#include <QTabWidget>
#include <nlohmann/json.hpp>

#include "core/base/BuildInfo.h"
#include "core/store/RunStore.h"
#include "ui/EngineBridge.h"
#include "ui/panels/compare/ComparePanel.h"
#include "ui/panels/monitor/MonitorPanel.h"
#include "ui/panels/runs/RunsPanel.h"
#include "ui/panels/setup/DatasetCard.h"
#include "ui/panels/setup/EstimateCard.h"
#include "ui/panels/setup/ModelCard.h"
#include "ui/panels/setup/SetupPanel.h"

namespace lathe::ui {
namespace {

bool isFinal(const QString& status) {
  return status == "done" || status == "failed" || status == "cancelled" || status == "interrupted";
}

}  // namespace

MainWindow::MainWindow(WorkbenchSettings settings, QWidget* parent)
    : QMainWindow(parent), settings_(std::move(settings)) {
  setWindowTitle(QStringLiteral("Lathe %1 — efficiency workbench").arg(lathe::version()));
  setObjectName("MainWindow");
  resize(1400, 860);
  openStore();

  tabs_ = new QTabWidget(this);
  tabs_->setObjectName("MainTabs");
  tabs_->setDocumentMode(true);
  setup_ = new SetupPanel();
  monitor_ = new MonitorPanel(store_.get());
  compare_ = new ComparePanel(store_.get());
  tabs_->addTab(setup_, tr("Setup"));
  tabs_->addTab(monitor_, tr("Monitor"));
  tabs_->addTab(compare_, tr("Compare"));
  setCentralWidget(tabs_);

  runs_ = new RunsPanel(store_.get());
  runs_dock_ = new QDockWidget(tr("Runs"), this);
  runs_dock_->setObjectName("RunsDock");
  runs_dock_->setWidget(runs_);
  runs_dock_->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable);
  addDockWidget(Qt::LeftDockWidgetArea, runs_dock_);
  resizeDocks({runs_dock_}, {330}, Qt::Horizontal);

  connect(setup_, &SetupPanel::launchRequested, this, &MainWindow::launchFromSetup);
  connect(runs_, &RunsPanel::runSelected, this, &MainWindow::showRun);
  connect(compare_, &ComparePanel::runActivated, this, [this](qint64 id) {
    runs_->selectRun(id);
    tabs_->setCurrentWidget(monitor_);
  });
  connect(runs_, &RunsPanel::message, this,
          [this](const QString& text) { statusBar()->showMessage(text); });
  connect(runs_, &RunsPanel::runsChanged, compare_, &ComparePanel::refresh);
  connect(runs_, &RunsPanel::runDeleted, monitor_, &MonitorPanel::forgetRun);
  connect(runs_, &RunsPanel::duplicateRequested, this, &MainWindow::duplicateRun);
  connect(runs_, &RunsPanel::resumeRequested, this, &MainWindow::resumeRun);
  connect(setup_->modelCard(), &ModelCard::fileOpened, this, &MainWindow::addRecent);
  connectBridge();

  buildMenus();
  db_label_ = new QLabel(tr("Database: %1").arg(db_path_));
  db_label_->setObjectName("DatabaseLabel");
  statusBar()->addPermanentWidget(db_label_);
  if (statusBar()->currentMessage().isEmpty()) statusBar()->showMessage(tr("Ready"));
  if (!settings_.geometry.isEmpty()) restoreGeometry(settings_.geometry);
  if (!settings_.window_state.isEmpty()) restoreState(settings_.window_state);
}

void MainWindow::connectBridge() {
  if (bridge_ == nullptr) return;
  connect(bridge_, &EngineBridge::stepMetrics, monitor_, &MonitorPanel::onStep);
  connect(bridge_, &EngineBridge::evalMetrics, monitor_, &MonitorPanel::onEval);
  connect(bridge_, &EngineBridge::logLine, monitor_, &MonitorPanel::onLog);
  connect(bridge_, &EngineBridge::progress, monitor_, &MonitorPanel::onProgress);
  connect(bridge_, &EngineBridge::statusChanged, monitor_, &MonitorPanel::onStatus);
  connect(bridge_, &EngineBridge::statusChanged, this,
          [this](qint64 id, const QString& status, const QString& message) {
            runs_->refresh();
            if (isFinal(status)) compare_->refresh();
            statusBar()->showMessage(message.isEmpty()
                                         ? tr("Run #%1: %2").arg(id).arg(status)
                                         : tr("Run #%1: %2 — %3").arg(id).arg(status, message));
          });
  connect(bridge_, &EngineBridge::summaryReady, runs_, &RunsPanel::refresh);
  // No dataset preview or estimate runs while a run trains: it would count in the run's memory
  // figures (launchFromSetup and resumeRun hold them before the run starts already).
  connect(bridge_, &EngineBridge::runQueued, this, [this] { holdBackgroundWork(true); });
  connect(bridge_, &EngineBridge::idle, this, [this] { holdBackgroundWork(false); });
  connect(monitor_, &MonitorPanel::cancelRequested, bridge_, &EngineBridge::cancel);
  connect(monitor_, &MonitorPanel::pauseRequested, bridge_, &EngineBridge::pause);
  connect(monitor_, &MonitorPanel::resumeRequested, bridge_, &EngineBridge::resume);
}

void MainWindow::closeEvent(QCloseEvent* event) {
  settings_.geometry = saveGeometry();
  settings_.window_state = saveState();
  settings_.save();
  QMainWindow::closeEvent(event);
}

bool MainWindow::switchDatabase(const QString& path) {
  if (path.isEmpty()) return false;
  if (bridge_ != nullptr && bridge_->currentRunId() != 0) {
    statusBar()->showMessage(
        tr("Cannot switch the database while a run is active: cancel it or let it finish"));
    return false;
  }
  std::unique_ptr<store::RunStore> next;
  try {
    next = std::make_unique<store::RunStore>(path.toStdString());
  } catch (const std::exception& e) {
    statusBar()->showMessage(tr("Cannot open the run database: %1").arg(e.what()));
    return false;
  }
  delete bridge_;  // idle: nothing to cancel
  bridge_ = nullptr;
  runs_->setStore(next.get());
  monitor_->setStore(next.get());
  compare_->setStore(next.get());
  store_ = std::move(next);
  db_path_ = path;
  run::RunnerOptions options;
  options.db_path = db_path_.toStdString();
  bridge_ = new EngineBridge(options);
  connectBridge();
  settings_.db_override.clear();
  settings_.db_path = path;
  addRecent(path);
  db_label_->setText(tr("Database: %1").arg(db_path_));
  statusBar()->showMessage(tr("Opened %1").arg(path));
  return true;
}

MainWindow::~MainWindow() {
  delete bridge_;  // cancels and joins the engine threads before the panels go
  bridge_ = nullptr;
}

void MainWindow::openStore() {
  db_path_ = settings_.resolvedDbPath();
  if (db_path_.isEmpty()) {
    statusBar()->showMessage(tr("No database: set HOME or start with --db PATH"));
    return;
  }
  try {
    store_ = std::make_unique<store::RunStore>(db_path_.toStdString());
    run::RunnerOptions options;
    options.db_path = db_path_.toStdString();
    bridge_ = new EngineBridge(options);
  } catch (const std::exception& e) {
    store_.reset();
    statusBar()->showMessage(tr("Cannot open the run database: %1").arg(e.what()));
  }
}

qint64 MainWindow::launchFromSetup() {
  QString error;
  const std::optional<run::RunConfig> config = setup_->currentConfig(&error);
  if (!config) {
    statusBar()->showMessage(tr("Cannot launch: %1").arg(error));
    return 0;
  }
  if (bridge_ == nullptr) {
    statusBar()->showMessage(tr("Cannot launch: no run database (%1)").arg(db_path_));
    return 0;
  }
  qint64 id = 0;
  holdBackgroundWork(true);  // before the engine thread starts
  try {
    id = bridge_->launch(*config);
  } catch (const std::exception& e) {
    if (bridge_->currentRunId() == 0) holdBackgroundWork(false);
    statusBar()->showMessage(tr("Cannot launch: %1").arg(e.what()));
    return 0;
  }
  runs_->refresh();
  runs_->selectRun(id);
  tabs_->setCurrentWidget(monitor_);
  statusBar()->showMessage(tr("Run #%1 queued").arg(id));
  return id;
}

void MainWindow::showRun(qint64 run_id) {
  monitor_->showRun(run_id);
}

void MainWindow::duplicateRun(qint64 run_id) {
  if (store_ == nullptr) return;
  try {
    const store::RunRecord r = store_->getRun(run_id);
    nlohmann::json config = nlohmann::json::parse(r.config_json);
    config["name"] = r.name + "-copy";
    // Relative data paths resolved against the config file's folder: made absolute, since the
    // draft has no folder of its own.
    const auto sums = store_->summaries(run_id);
    if (auto it = sums.find("config.base_dir"); it != sums.end() && config.contains("dataset"))
      if (const auto* base = std::get_if<std::string>(&it->second))
        for (const char* key : {"path", "inputs", "targets", "vocab"}) {
          nlohmann::json& d = config["dataset"];
          if (!d.contains(key) || !d[key].is_string()) continue;
          const QString p = QString::fromStdString(d[key].get<std::string>());
          if (!p.isEmpty() && QDir::isRelativePath(p))
            d[key] = QDir(QString::fromStdString(*base)).absoluteFilePath(p).toStdString();
        }
    setup_->setConfig(config);
  } catch (const std::exception& e) {
    statusBar()->showMessage(tr("Cannot load run #%1's config: %2").arg(run_id).arg(e.what()));
    return;
  }
  tabs_->setCurrentWidget(setup_);
  statusBar()->showMessage(tr("Run #%1's config loaded into Setup").arg(run_id));
}

void MainWindow::holdBackgroundWork(bool held) {
  setup_->datasetCard()->setPreviewHeld(held);
  // Cancels an estimate in flight and waits for it (one training step at most).
  setup_->estimateCard()->setHeld(held);
}

bool MainWindow::resumeRun(qint64 run_id) {
  if (bridge_ == nullptr) return false;
  holdBackgroundWork(true);  // before the engine thread starts
  try {
    bridge_->resumeRun(run_id);
  } catch (const std::exception& e) {
    if (bridge_->currentRunId() == 0) holdBackgroundWork(false);
    statusBar()->showMessage(tr("Cannot resume run #%1: %2").arg(run_id).arg(e.what()));
    return false;
  }
  monitor_->followResumed(run_id);
  runs_->refresh();
  runs_->selectRun(run_id);
  monitor_->showRun(run_id);
  tabs_->setCurrentWidget(monitor_);
  statusBar()->showMessage(tr("Run #%1 resumes from its checkpoint").arg(run_id));
  return true;
}

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  file->addAction(tr("&Open run config…"), QKeySequence(QKeySequence::Open), this,
                  &MainWindow::openConfigFile);
  QAction* model = file->addAction(tr("Open &model file…"), setup_->modelCard(), [this] {
    tabs_->setCurrentWidget(setup_);
    setup_->findChild<QPushButton*>("ModelOpenFile")->click();
  });
  model->setObjectName("OpenModelFileAction");
  model->setShortcut(QKeySequence(tr("Ctrl+Shift+M")));
  QAction* db = file->addAction(tr("Open &database…"), this, &MainWindow::openDatabaseDialog);
  db->setObjectName("OpenDatabaseAction");
  db->setShortcut(QKeySequence(tr("Ctrl+Shift+O")));
  recent_menu_ = file->addMenu(tr("&Recent files"));
  recent_menu_->setObjectName("RecentFilesMenu");
  updateRecentMenu();
  QMenu* examples = file->addMenu(tr("&Examples"));
  for (const char* name : {"fashion_cnn", "fashion_mlp", "text_gpt_tiny"}) {
    examples->addAction(QString(name), this, [this, name] {
      QFile f(QString(":/lathe/examples/%1.json").arg(name));
      if (!f.open(QIODevice::ReadOnly)) return;
      try {
        setup_->setConfig(nlohmann::json::parse(f.readAll().toStdString()));
        tabs_->setCurrentWidget(setup_);
      } catch (const std::exception& e) {
        statusBar()->showMessage(e.what());
      }
    });
  }
  file->addSeparator();
  QAction* quit = file->addAction(tr("&Quit"), qApp, &QApplication::quit);
  quit->setShortcut(QKeySequence::Quit);

  QMenu* view = menuBar()->addMenu(tr("&View"));
  const char* names[] = {"&Setup", "&Monitor", "&Compare"};
  for (int i = 0; i < 3; ++i) {
    QAction* a = view->addAction(tr(names[i]), this, [this, i] { tabs_->setCurrentIndex(i); });
    a->setShortcut(QKeySequence(Qt::CTRL | static_cast<Qt::Key>(Qt::Key_1 + i)));
  }
  view->addAction(runs_dock_->toggleViewAction());
  view->addAction(tr("&Refresh runs"), QKeySequence(QKeySequence::Refresh), this, [this] {
    runs_->refresh();
    compare_->refresh();
  });

  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&About Lathe"), this, &MainWindow::showAbout);
}

void MainWindow::openConfigFile() {
  auto* dialog =
      new QFileDialog(this, tr("Open run config"), QString(), tr("Run configs (*.json)"));
  dialog->setObjectName("OpenConfigDialog");
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->setFileMode(QFileDialog::ExistingFile);
  connect(dialog, &QFileDialog::fileSelected, this, &MainWindow::openConfig);
  dialog->open();
}

bool MainWindow::openConfig(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) {
    statusBar()->showMessage(tr("%1: %2").arg(path, f.errorString()));
    return false;
  }
  try {
    setup_->setConfig(nlohmann::json::parse(f.readAll().toStdString()));
    tabs_->setCurrentWidget(setup_);
  } catch (const std::exception& e) {
    statusBar()->showMessage(tr("%1: not valid JSON (%2)").arg(path, e.what()));
    return false;
  }
  addRecent(path);
  return true;
}

void MainWindow::openDatabaseDialog() {
  auto* dialog =
      new QFileDialog(this, tr("Open or create a run database"), QFileInfo(db_path_).absolutePath(),
                      tr("Run databases (*.db);;All files (*)"));
  dialog->setObjectName("OpenDatabaseDialog");
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->setFileMode(QFileDialog::AnyFile);  // a new name creates a database
  dialog->setOption(QFileDialog::DontConfirmOverwrite);
  connect(dialog, &QFileDialog::fileSelected, this, &MainWindow::switchDatabase);
  dialog->open();
}

void MainWindow::openRecent(const QString& path) {
  if (path.endsWith(".json", Qt::CaseInsensitive)) {
    openConfig(path);
  } else if (path.endsWith(".safetensors", Qt::CaseInsensitive)) {
    tabs_->setCurrentWidget(setup_);
    setup_->modelCard()->openModelFile(path);
  } else {
    switchDatabase(path);
  }
}

void MainWindow::addRecent(const QString& path) {
  settings_.addRecentFile(path);
  settings_.save();
  updateRecentMenu();
}

void MainWindow::updateRecentMenu() {
  if (recent_menu_ == nullptr) return;
  recent_menu_->clear();
  for (const QString& path : settings_.recent_files) {
    QAction* a = recent_menu_->addAction(QFileInfo(path).fileName(), this,
                                         [this, path] { openRecent(path); });
    a->setToolTip(path);
    a->setData(path);
  }
  recent_menu_->setEnabled(!settings_.recent_files.isEmpty());
}

void MainWindow::showAbout() {
  QMessageBox::about(
      this, tr("About Lathe"),
      QString::fromStdString(lathe::versionReport("Lathe")).toHtmlEscaped().replace("\n", "<br>"));
}

}  // namespace lathe::ui
