// Opens the main window offscreen and checks its tabs and menus; saves a screenshot of each
// tab under $LATHE_TEST_ARTIFACTS.
#include <QDir>
#include <QMenuBar>
#include <QTabWidget>
#include <QtTest/QtTest>

#include "kernels/Backends.h"
#include "ui/MainWindow.h"

class MainWindowTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() { lathe::registerBackends(); }

  void opensWithThreeTabs() {
    lathe::ui::MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(w.windowTitle().startsWith("Lathe "));
    QTabWidget* tabs = w.tabs();
    QCOMPARE(tabs->count(), 3);
    QCOMPARE(tabs->tabText(0), QString("Setup"));
    QCOMPARE(tabs->tabText(1), QString("Monitor"));
    QCOMPARE(tabs->tabText(2), QString("Compare"));
    QStringList menus;
    for (QAction* a : w.menuBar()->actions()) menus << a->text().remove('&');
    QCOMPARE(menus, QStringList({"File", "View", "Help"}));
    // The engine card lists the CPU backend's capabilities.
    QVERIFY(w.findChild<QWidget*>("SetupPanel") != nullptr);

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
    lathe::ui::MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QTest::keyClick(&w, Qt::Key_3, Qt::ControlModifier);
    QCOMPARE(w.tabs()->currentIndex(), 2);
    QTest::keyClick(&w, Qt::Key_1, Qt::ControlModifier);
    QCOMPARE(w.tabs()->currentIndex(), 0);
  }
};

QTEST_MAIN(MainWindowTest)
#include "MainWindowTest.moc"
