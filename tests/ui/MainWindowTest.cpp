// Opens the main window offscreen (on a temporary run database) and checks its tabs, dock and
// menus; saves a screenshot of each tab under $LATHE_TEST_ARTIFACTS. The settings (database
// choice, recent files, window layout) go to an ini file of the test's own.
#include <QDir>
#include <QDockWidget>
#include <QFileDialog>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QMenuBar>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "kernels/Backends.h"
#include "tests/ui/UiTestUtil.h"
#include "ui/MainWindow.h"
#include "ui/panels/runs/RunsPanel.h"
#include "ui/panels/setup/DatasetCard.h"
#include "ui/panels/setup/SetupPanel.h"

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

    // The Setup tab's hardware card and, once loaded, the default data set's preview.
    QVERIFY(w.findChild<QWidget*>("HardwareCard") != nullptr);
    QTRY_VERIFY_WITH_TIMEOUT(!w.setupPanel()->datasetCard()->previewPending(), 30000);
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

  // File > Open database switches the store and is remembered with the recent files and the
  // window layout; a restart opens the same database.
  void databaseAndRecentFilesAreRemembered() {
    const QString ini = dir_.filePath("settings.ini");
    const QString first = dir_.filePath("first.db"), second = dir_.filePath("second.db");
    const QString config = dir_.filePath("cfg.json");
    {
      QFile f(config);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(R"({"name": "from-a-file", "model": {"type": "mlp", "input_dim": 4, "classes": 3},
                  "dataset": {"format": "csv", "path": "x.csv"}})");
    }
    {
      lathe::ui::WorkbenchSettings s = lathe::ui::WorkbenchSettings::loadFrom(ini);
      s.db_path = first;
      lathe::ui::MainWindow w(s);
      w.show();
      QVERIFY(QTest::qWaitForWindowExposed(&w));
      QCOMPARE(w.dbPath(), first);
      w.findChild<QAction*>("OpenDatabaseAction")->trigger();
      QVERIFY(pick(&w, "OpenDatabaseDialog", second));
      QTRY_COMPARE(w.dbPath(), second);
      QVERIFY(QFileInfo::exists(second));
      QCOMPARE(w.runsPanel()->runCount(), 0);
      QVERIFY(w.findChild<QLabel*>("DatabaseLabel")->text().contains("second.db"));
      // A file that is not a database: refused, the current one stays.
      QVERIFY(!w.switchDatabase(config));
      QCOMPARE(w.dbPath(), second);
      // A run config through File > Open.
      QTest::keyClick(&w, Qt::Key_O, Qt::ControlModifier);
      QVERIFY(pick(&w, "OpenConfigDialog", config));
      QTRY_COMPARE(w.findChild<QLineEdit*>("RunName")->text(), QString("from-a-file"));
      QCOMPARE(w.recentMenu()->actions().size(), 2);
      QCOMPARE(w.recentMenu()->actions().front()->data().toString(), config);
      w.resize(1111, 777);
      w.close();
    }
    const lathe::ui::WorkbenchSettings back = lathe::ui::WorkbenchSettings::loadFrom(ini);
    QCOMPARE(back.db_path, second);
    QCOMPARE(back.recent_files, QStringList({config, second}));
    QVERIFY(!back.geometry.isEmpty());
    lathe::ui::MainWindow again(back);
    QCOMPARE(again.dbPath(), second);
    QCOMPARE(again.size(), QSize(1111, 777));
    QCOMPARE(again.recentMenu()->actions().size(), 2);
    // A recent run config opens from the menu.
    again.findChild<QLineEdit*>("RunName")->setText("other");
    again.recentMenu()->actions().front()->trigger();
    QCOMPARE(again.findChild<QLineEdit*>("RunName")->text(), QString("from-a-file"));
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
  static bool pick(QWidget* parent, const QString& name, const QString& path) {
    return lathe::ui::test::acceptFileDialog(parent, name, path);
  }

  QTemporaryDir dir_;
  lathe::ui::WorkbenchSettings settings_;
};

QTEST_MAIN(MainWindowTest)
#include "MainWindowTest.moc"
