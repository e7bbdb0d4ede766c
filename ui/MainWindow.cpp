#include "ui/MainWindow.h"

#include <QAction>
#include <QApplication>
#include <QKeySequence>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QStatusBar>
#include <QTabWidget>

#include "core/base/BuildInfo.h"
#include "ui/panels/SetupPanel.h"

namespace lathe::ui {
namespace {

// A centred explanatory label for a tab that has nothing to show yet.
QWidget* emptyState(const QString& text, const QString& object_name) {
  auto* label = new QLabel(text);
  label->setObjectName(object_name);
  label->setAlignment(Qt::AlignCenter);
  label->setWordWrap(true);
  label->setStyleSheet("color: palette(mid); font-size: 14px;");
  return label;
}

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setWindowTitle(QStringLiteral("Lathe %1 — efficiency workbench").arg(lathe::version()));
  setObjectName("MainWindow");
  resize(1280, 800);

  tabs_ = new QTabWidget(this);
  tabs_->setObjectName("MainTabs");
  tabs_->setDocumentMode(true);
  tabs_->addTab(new SetupPanel(), tr("Setup"));
  tabs_->addTab(emptyState(tr("No run selected.\nLaunch a run from Setup to watch its loss, "
                              "accuracy, throughput and memory here."),
                           "MonitorEmpty"),
                tr("Monitor"));
  tabs_->addTab(emptyState(tr("No finished runs yet.\nFinished runs appear here as a table and "
                              "as accuracy / time / memory trade-off charts."),
                           "CompareEmpty"),
                tr("Compare"));
  setCentralWidget(tabs_);

  buildMenus();
  statusBar()->showMessage(tr("Ready"));
}

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  QAction* quit = file->addAction(tr("&Quit"), qApp, &QApplication::quit);
  quit->setShortcut(QKeySequence::Quit);

  QMenu* view = menuBar()->addMenu(tr("&View"));
  const char* names[] = {"&Setup", "&Monitor", "&Compare"};
  for (int i = 0; i < 3; ++i) {
    QAction* a = view->addAction(tr(names[i]), this, [this, i] { tabs_->setCurrentIndex(i); });
    a->setShortcut(QKeySequence(Qt::CTRL | static_cast<Qt::Key>(Qt::Key_1 + i)));
  }

  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&About Lathe"), this, &MainWindow::showAbout);
}

void MainWindow::showAbout() {
  QMessageBox::about(
      this, tr("About Lathe"),
      QString::fromStdString(lathe::versionReport("Lathe")).toHtmlEscaped().replace("\n", "<br>"));
}

}  // namespace lathe::ui
