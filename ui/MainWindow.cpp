#include "ui/MainWindow.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDockWidget>
#include <QFile>
#include <QFileDialog>
#include <QKeySequence>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QStatusBar>
#include <QTabWidget>

#include "core/base/BuildInfo.h"
#include "core/store/RunStore.h"
#include "ui/EngineBridge.h"
#include "ui/panels/compare/ComparePanel.h"
#include "ui/panels/monitor/MonitorPanel.h"
#include "ui/panels/runs/RunsPanel.h"
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
  if (bridge_ != nullptr) {
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
    connect(monitor_, &MonitorPanel::cancelRequested, bridge_, &EngineBridge::cancel);
    connect(monitor_, &MonitorPanel::pauseRequested, bridge_, &EngineBridge::pause);
    connect(monitor_, &MonitorPanel::resumeRequested, bridge_, &EngineBridge::resume);
  }

  buildMenus();
  statusBar()->addPermanentWidget(new QLabel(tr("Database: %1").arg(db_path_)));
  if (statusBar()->currentMessage().isEmpty()) statusBar()->showMessage(tr("Ready"));
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
  try {
    id = bridge_->launch(*config);
  } catch (const std::exception& e) {
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

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  file->addAction(tr("&Open run config…"), QKeySequence(QKeySequence::Open), this,
                  &MainWindow::openConfigFile);
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
  const QString path = QFileDialog::getOpenFileName(this, tr("Open run config"), QString(),
                                                    tr("Run configs (*.json)"));
  if (path.isEmpty()) return;
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) {
    statusBar()->showMessage(tr("%1: %2").arg(path, f.errorString()));
    return;
  }
  try {
    setup_->setConfig(nlohmann::json::parse(f.readAll().toStdString()));
    tabs_->setCurrentWidget(setup_);
  } catch (const std::exception& e) {
    statusBar()->showMessage(tr("%1: not valid JSON (%2)").arg(path, e.what()));
  }
}

void MainWindow::showAbout() {
  QMessageBox::about(
      this, tr("About Lathe"),
      QString::fromStdString(lathe::versionReport("Lathe")).toHtmlEscaped().replace("\n", "<br>"));
}

}  // namespace lathe::ui
