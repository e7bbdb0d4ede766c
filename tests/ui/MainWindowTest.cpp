// Opens the main window offscreen (on a temporary run database) and checks its tabs, dock and
// menus; saves a screenshot of each tab under $LATHE_TEST_ARTIFACTS.
#include <QDir>
#include <QDockWidget>
#include <QMenuBar>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "kernels/Backends.h"
#include "ui/MainWindow.h"

class MainWindowTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() {
    lathe::registerBackends();
    QVERIFY(dir_.isValid());
    settings_.db_path = dir_.filePath("runs.db");
  }

  void opensWithThreeTabs() {
    lathe::ui::MainWindow w(settings_);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(w.windowTitle().startsWith("Lathe "));
    QCOMPARE(w.dbPath(), settings_.db_path);
    QVERIFY(QFileInfo::exists(settings_.db_path));  // the store was created
    QTabWidget* tabs = w.tabs();
    QCOMPARE(tabs->count(), 3);
    QCOMPARE(tabs->tabText(0), QString("Setup"));
    QCOMPARE(tabs->tabText(1), QString("Monitor"));
    QCOMPARE(tabs->tabText(2), QString("Compare"));
    QStringList menus;
    for (QAction* a : w.menuBar()->actions()) menus << a->text().remove('&');
    QCOMPARE(menus, QStringList({"File", "View", "Help"}));
    QVERIFY(w.findChild<QWidget*>("SetupPanel") != nullptr);
    QVERIFY(w.findChild<QWidget*>("MonitorPanel") != nullptr);
    QVERIFY(w.findChild<QWidget*>("ComparePanel") != nullptr);
    QVERIFY(w.findChild<QDockWidget*>("RunsDock") != nullptr);

    const QString dir = qEnvironmentVariable("LATHE_TEST_ARTIFACTS");
    for (int i = 0; i < tabs->count(); ++i) {
      tabs->setCurrentIndex(i);
      QCoreApplication::processEvents();
      if (!dir.isEmpty()) {
        QDir().mkpath(dir);
        QVERIFY(w.grab().save(dir + "/main_window_" + tabs->tabText(i).toLower() + ".png"));
      }
    }
  }

  void viewShortcutsSwitchTabs() {
    lathe::ui::MainWindow w(settings_);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QTest::keyClick(&w, Qt::Key_3, Qt::ControlModifier);
    QCOMPARE(w.tabs()->currentIndex(), 2);
    QTest::keyClick(&w, Qt::Key_1, Qt::ControlModifier);
    QCOMPARE(w.tabs()->currentIndex(), 0);
  }

  // A database path that cannot be created leaves a usable window that says why.
  void unusableDatabaseIsReported() {
    lathe::ui::WorkbenchSettings bad;
    QFile blocker(dir_.filePath("not-a-dir"));
    QVERIFY(blocker.open(QIODevice::WriteOnly));
    blocker.close();
    bad.db_path = dir_.filePath("not-a-dir/runs.db");
    lathe::ui::MainWindow w(bad);
    QVERIFY(w.bridge() == nullptr);
    QVERIFY(w.launchFromSetup() == 0);
  }

 private:
  QTemporaryDir dir_;
  lathe::ui::WorkbenchSettings settings_;
};

QTEST_MAIN(MainWindowTest)
#include "MainWindowTest.moc"
