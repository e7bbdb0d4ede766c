// The Setup tab's estimate card on a tiny CSV data set: it fills in for a small config (peak by
// tag, capacity, times, "fits"), estimates by itself after an edit but never an invalid config,
// shows an estimate's error, says "does not fit" against a small planned capacity and then asks
// before Launch, drops a result whose config left the screen, and waits while held (a run).
#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "kernels/Backends.h"
#include "tests/ui/UiTestUtil.h"
#include "ui/FormatUtil.h"
#include "ui/panels/setup/DatasetCard.h"
#include "ui/panels/setup/EstimateCard.h"
#include "ui/panels/setup/SetupPanel.h"

using namespace lathe::ui;
using lathe::ui::test::child;
using lathe::ui::test::saveShot;
using lathe::ui::test::writeBlobs;

namespace {

template <typename T>
T* waitForChild(QWidget* parent, const QString& name) {
  T* c = nullptr;
  for (int i = 0; i < 300 && c == nullptr; ++i) {
    c = parent->findChild<T*>(name);
    if (c == nullptr) QTest::qWait(10);
  }
  return c;
}

QString text(QWidget* w, const QString& name) {
  auto* l = child<QLabel>(w, name);
  return l != nullptr ? l->text() : QString();
}

}  // namespace

class EstimatePanelTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() {
    qputenv("LATHE_NUM_THREADS", "1");
    lathe::registerBackends();
    QVERIFY(dir_.isValid());
    csv_ = dir_.filePath("blobs.csv");
    writeBlobs(csv_, 240);
  }

  void fillsInForASmallConfigAndFollowsEdits() {
    SetupPanel setup;
    prepare(setup, "tiny", "16");
    setup.resize(1300, 820);
    setup.show();
    EstimateCard* card = setup.estimateCard();
    QCOMPARE(card->state(), EstimateCard::State::idle);
    QVERIFY(text(card, "EstimateStatus").contains("Press Estimate"));
    QVERIFY(card->estimateNow());
    QCOMPARE(card->state(), EstimateCard::State::running);
    QVERIFY2(text(card, "EstimateStatus").startsWith("Estimating"),
             qPrintable(text(card, "EstimateStatus")));
    QVERIFY(!child<QPushButton>(card, "EstimateButton")->isEnabled());
    QTRY_COMPARE_WITH_TIMEOUT(card->state(), EstimateCard::State::done, 60000);
    const lathe::run::Estimate e = *card->estimate();
    QCOMPARE(e.name, std::string("tiny"));
    QCOMPARE(e.batch_size, int64_t{16});
    QVERIFY(e.calibrated() && e.fits && e.peak_bytes > 0 && e.step_time_s > 0);
    // 4*16 + 16 + 16*3 + 3 = 131 f32 parameters; AdamW keeps two moments each.
    const auto tag = [&](lathe::MemoryTag t) { return e.tag_bytes[static_cast<size_t>(t)]; };
    QVERIFY(tag(lathe::MemoryTag::parameters) >= 131 * 4);
    QVERIFY(tag(lathe::MemoryTag::optimizer_state) >= 2 * 131 * 4);
    QVERIFY(text(card, "EstimateVerdict").startsWith("Fits"));
    QVERIFY(text(card, "EstimateCapacity").contains("physical RAM"));
    QCOMPARE(text(card, "EstimateTag.parameters"),
             formatBytes(static_cast<double>(tag(lathe::MemoryTag::parameters))));
    for (const char* t :
         {"parameters", "gradients", "optimizer_state", "activations", "workspace", "other"})
      QVERIFY2(!text(card, QString("EstimateTag.%1").arg(t)).isEmpty(), t);
    QVERIFY(text(card, "EstimateStepTime").contains("per optimizer step (batch 16)"));
    QVERIFY(text(card, "EstimateTotalTime").contains("for 20 steps"));
    QVERIFY(child<QWidget>(card, "EstimateFigures")->isVisible());
    QVERIFY(!child<QLabel>(card, "EstimateNote")->isVisible());
    saveShot(setup, "setup-estimate-fits");
    // Another refresh of the same config keeps the estimate.
    setup.refreshNow();
    QCOMPARE(card->state(), EstimateCard::State::done);

    // An edit: the old figures go at once, a new estimate follows by itself after the debounce.
    card->setAutoEstimate(true);
    child<QSpinBox>(&setup, "BatchSize")->setValue(32);
    setup.refreshNow();
    QCOMPARE(card->state(), EstimateCard::State::scheduled);
    QVERIFY(!card->estimate().has_value());
    QVERIFY(!child<QWidget>(card, "EstimateFigures")->isVisible());
    QTRY_COMPARE_WITH_TIMEOUT(card->state(), EstimateCard::State::done, 60000);
    QCOMPARE(card->estimate()->batch_size, int64_t{32});

    // An invalid config is never estimated.
    child<QLineEdit>(&setup, "model.mlp.hidden")->setText("16, x");
    setup.refreshNow();
    QVERIFY(!setup.canLaunch());
    QCOMPARE(card->state(), EstimateCard::State::invalid);
    QVERIFY(!card->estimateNow());
    QTest::qWait(EstimateCard::kAutoDelayMs + 300);
    QCOMPARE(card->state(), EstimateCard::State::invalid);
    QVERIFY(!child<QPushButton>(card, "EstimateButton")->isEnabled());
  }

  void showsTheErrorOfAFailingEstimate() {
    SetupPanel setup;
    prepare(setup, "too-big-batch", "16");
    EstimateCard* card = setup.estimateCard();
    child<QSpinBox>(&setup, "BatchSize")->setValue(4096);  // more than the 192 training rows
    setup.refreshNow();
    QVERIFY(setup.canLaunch());
    QVERIFY(card->estimateNow());
    QTRY_COMPARE_WITH_TIMEOUT(card->state(), EstimateCard::State::failed, 60000);
    QVERIFY2(text(card, "EstimateStatus").contains("Cannot estimate: training.batch_size: 4096"),
             qPrintable(text(card, "EstimateStatus")));
    QVERIFY(!card->doesNotFit());
    QVERIFY(child<QLabel>(card, "EstimateVerdict")->isHidden());
  }

  void doesNotFitASmallCapacityAndLaunchAsksFirst() {
    SetupPanel setup;
    // 4*512 + 512 + 512*512 + 512 + 512*3 + 3 = 267,267 parameters: 4.3 MB with gradients and
    // AdamW's moments, more than the 1.07 MB planned for.
    prepare(setup, "wide", "512, 512");
    EstimateCard* card = setup.estimateCard();
    setup.resize(1300, 820);
    setup.show();
    QSignalSpy launches(&setup, &SetupPanel::launchRequested);
    auto* capacity = child<QDoubleSpinBox>(card, "EstimateCapacityOverride");
    capacity->setValue(0.001);  // GiB
    QCOMPARE(card->capacityOverride(), int64_t{1073742});
    QVERIFY(card->estimateNow());
    QTRY_COMPARE_WITH_TIMEOUT(card->state(), EstimateCard::State::done, 60000);
    QVERIFY(card->doesNotFit());
    const QString verdict = text(card, "EstimateVerdict");
    QVERIFY2(verdict.startsWith("Does not fit") && verdict.contains("1.02 MiB") &&
                 verdict.contains("override"),
             qPrintable(verdict));
    QVERIFY(child<QLabel>(card, "EstimateVerdict")->styleSheet().contains("#c0392b"));
    QVERIFY(text(card, "EstimateNote").startsWith("Not built"));  // answered from the spec
    QVERIFY(text(card, "EstimateStepTime").contains("not timed"));
    saveShot(setup, "setup-estimate-does-not-fit");

    // Launch asks; Cancel queues nothing, "Launch anyway" does.
    QTest::mouseClick(child<QPushButton>(&setup, "LaunchButton"), Qt::LeftButton);
    auto* box = waitForChild<QMessageBox>(&setup, "DoesNotFitDialog");
    QVERIFY(box != nullptr);
    QVERIFY(box->text().contains("Does not fit"));
    box->button(QMessageBox::Cancel)->click();
    QTest::qWait(50);
    QCOMPARE(launches.count(), 0);
    QTRY_VERIFY(setup.findChild<QMessageBox*>("DoesNotFitDialog") == nullptr);
    QTest::mouseClick(child<QPushButton>(&setup, "LaunchButton"), Qt::LeftButton);
    box = waitForChild<QMessageBox>(&setup, "DoesNotFitDialog");
    QVERIFY(box != nullptr);
    child<QPushButton>(box, "LaunchAnyway")->click();
    QTRY_COMPARE(launches.count(), 1);

    // Planning for this machine again: it fits, and Launch does not ask.
    capacity->setValue(0.0);
    QVERIFY(!card->doesNotFit());
    QVERIFY(card->estimateNow());
    QTRY_COMPARE_WITH_TIMEOUT(card->state(), EstimateCard::State::done, 60000);
    QVERIFY(card->estimate()->fits && card->estimate()->calibrated());
    QTest::qWait(100);
    QTRY_VERIFY(setup.findChild<QMessageBox*>("DoesNotFitDialog") == nullptr);
    QTest::mouseClick(child<QPushButton>(&setup, "LaunchButton"), Qt::LeftButton);
    QCOMPARE(launches.count(), 2);
    QVERIFY(setup.findChild<QMessageBox*>("DoesNotFitDialog") == nullptr);
  }

  void aStaleResultIsDiscarded() {
    SetupPanel setup;
    prepare(setup, "first", "64, 64");
    EstimateCard* card = setup.estimateCard();
    QStringList shown;
    connect(card, &EstimateCard::updated, card, [&] {
      if (card->estimate()) shown << QString::fromStdString(card->estimate()->name);
    });
    QVERIFY(card->estimateNow());
    QCOMPARE(card->state(), EstimateCard::State::running);
    // Another config while the first one's estimate is in flight.
    child<QLineEdit>(&setup, "RunName")->setText("second");
    setup.refreshNow();
    QVERIFY(card->state() != EstimateCard::State::running);
    QVERIFY(!card->estimate().has_value());
    QVERIFY(card->estimateNow());
    QTRY_COMPARE_WITH_TIMEOUT(card->state(), EstimateCard::State::done, 60000);
    QCOMPARE(card->estimate()->name, std::string("second"));
    QTest::qWait(200);  // anything left of the first estimate has arrived by now
    QCOMPARE(shown, QStringList{"second"});
    QCOMPARE(card->estimate()->name, std::string("second"));
  }

  void waitsWhileHeld() {
    SetupPanel setup;
    prepare(setup, "held", "16");
    EstimateCard* card = setup.estimateCard();
    QVERIFY(card->estimateNow());
    QCOMPARE(card->state(), EstimateCard::State::running);
    card->setHeld(true);  // a run starts: the estimate in flight stops, and waits
    QCOMPARE(card->state(), EstimateCard::State::scheduled);
    QVERIFY(text(card, "EstimateStatus").contains("running experiment"));
    QTest::qWait(EstimateCard::kAutoDelayMs + 300);
    QCOMPARE(card->state(), EstimateCard::State::scheduled);
    card->setHeld(false);
    QTRY_COMPARE_WITH_TIMEOUT(card->state(), EstimateCard::State::done, 60000);
    QCOMPARE(card->estimate()->name, std::string("held"));
  }

 private:
  // An MLP on the blobs with short calibrations and no automatic estimates (each test starts
  // them itself), its data preview done.
  void prepare(SetupPanel& setup, const QString& name, const QString& hidden) {
    setup.estimateCard()->setAutoEstimate(false);
    lathe::run::EstimateOptions fast;
    fast.warmup_steps = 1;
    fast.timed_steps = 2;
    setup.estimateCard()->setOptions(fast);
    nlohmann::json config = {
        {"name", name.toStdString()},
        {"model",
         {{"type", "mlp"}, {"input_dim", 4}, {"hidden", *parseIntList(hidden)}, {"classes", 3}}},
        {"dataset", {{"format", "csv"}, {"path", csv_.toStdString()}, {"val_fraction", 0.2}}},
        {"training", {{"batch_size", 16}, {"max_steps", 20}}},
        {"methods", {{{"name", "adamw"}, {"lr", 0.01}}}}};
    setup.setConfig(config);
    QString error;
    if (!setup.currentConfig(&error)) qWarning("invalid config: %s", qPrintable(error));
    // The preview of the data goes first (an estimate waits for it).
    QTRY_VERIFY_WITH_TIMEOUT(!setup.datasetCard()->previewPending(), 30000);
  }

  QTemporaryDir dir_;
  QString csv_;
};

QTEST_MAIN(EstimatePanelTest)
#include "EstimatePanelTest.moc"
