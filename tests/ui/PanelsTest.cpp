// The panels on their own: chart downsampling and the Pareto front, the Setup tab's default
// experiment, schema-generated method panels, conflicts and inline model errors.
#include <QCheckBox>
#include <QComboBox>
#include <QGroupBox>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QtTest/QtTest>
#include <cmath>

#include "core/methods/Method.h"
#include "kernels/Backends.h"
#include "ui/FormatUtil.h"
#include "ui/charts/Downsample.h"
#include "ui/charts/MetricChart.h"
#include "ui/charts/ParetoChart.h"
#include "ui/panels/setup/SetupPanel.h"

using namespace lathe::ui;

class PanelsTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() { lathe::registerBackends(); }

  void downsampleKeepsEndsAndSpikes() {
    QVector<QPointF> pts;
    for (int i = 0; i < 100000; ++i) pts.push_back(QPointF(i, std::sin(i * 1e-3)));
    pts[54321].setY(50.0);  // one spike
    const QVector<QPointF> d = downsampleMinMax(pts, 2000);
    QVERIFY(d.size() <= 2000);
    QVERIFY(d.size() > 1000);
    QCOMPARE(d.front(), pts.front());
    QCOMPARE(d.back(), pts.back());
    bool spike = false;
    for (int i = 1; i < d.size(); ++i) {
      QVERIFY(d[i].x() > d[i - 1].x());  // still ordered by step
      spike = spike || d[i].y() == 50.0;
    }
    QVERIFY(spike);
    QCOMPARE(downsampleMinMax(pts.mid(0, 10), 2000).size(), 10);  // short series untouched
  }

  void metricChartBatchesAndDownsamples() {
    MetricChart chart("Loss", "loss");
    chart.addSeries("train", "train");
    for (int i = 0; i < 200000; ++i) chart.append("train", QPointF(i, 1.0 / (1 + i)));
    QCOMPARE(chart.pointCount("train"), qsizetype{200000});
    QCOMPARE(chart.shownCount("train"), qsizetype{0});  // nothing drawn before the timer
    QTRY_VERIFY_WITH_TIMEOUT(chart.shownCount("train") > 0, 1000);
    QVERIFY(chart.shownCount("train") <= MetricChart::kShownPoints);
    chart.append("unknown", QPointF(1, 1));  // ignored, no crash
    chart.clear();
    QCOMPARE(chart.shownCount("train"), qsizetype{0});
  }

  void paretoFrontByDirection() {
    // x = memory (lower better), y = accuracy (higher better).
    const QVector<QPointF> p = {{10, 0.90}, {20, 0.95}, {15, 0.80},
                                {30, 0.94}, {5, 0.5},   {std::nan(""), 0.99}};
    const std::vector<int> front = paretoFront(p, false, true);
    QCOMPARE(front, (std::vector<int>{4, 0, 1}));  // sorted by x; NaN never on the front
    // Both higher-better: only the top-right survivors.
    QCOMPARE(paretoFront(p, true, true), (std::vector<int>{1, 3}));
    ParetoChart chart;
    chart.setData(p, {"a", "b", "c", "d", "e", "f"}, "memory", "accuracy", false, true);
    QCOMPARE(chart.pointCount(), 5);
    QCOMPARE(chart.frontCount(), 3);
  }

  void formatting() {
    QCOMPARE(formatCount(1234567), QString("1.23 M"));
    QCOMPARE(formatCount(789), QString("789"));
    QCOMPARE(formatBytes(4.0 * 1024 * 1024), QString("4.00 MiB"));
    QCOMPARE(formatSeconds(125), QString("2 min 05 s"));
    QCOMPARE(parseIntList("256, 128").value(), nlohmann::json({256, 128}));
    QCOMPARE(parseIntList("").value(), nlohmann::json::array());
    QVERIFY(!parseIntList("12, x").has_value());
  }

  void setupStartsWithTheDefaultExperiment() {
    SetupPanel setup;
    const nlohmann::json def = SetupPanel::defaultConfig();
    QCOMPARE(QString::fromStdString(def.value("name", "")), QString("fashion-cnn"));
    QCOMPARE(setup.findChild<QLineEdit*>("RunName")->text(), QString("fashion-cnn"));
    QCOMPARE(setup.findChild<QComboBox*>("ModelPreset")->currentData().toString(),
             QString("lenet"));
    QCOMPARE(setup.findChild<QLineEdit*>("DatasetPath")->text(),
             QString("/usr/share/datasets/fashion-mnist"));
    // The draft is the example's config: same canonical form, same hash.
    QString error;
    auto config = setup.currentConfig(&error);
    QVERIFY2(config.has_value(), qPrintable(error));
    QCOMPARE(config->hash(), lathe::run::RunConfig::parse(def).hash());
    QVERIFY(setup.findChild<QPlainTextEdit*>("ConfigJson")->toPlainText().contains("\"lenet\""));
    QVERIFY(setup.findChild<QLabel*>("ModelInfo")->text().contains("parameters"));
    QVERIFY(setup.canLaunch());
  }

  void methodPanelsFollowTheSchemas() {
    SetupPanel setup;
    for (const auto* info : lathe::methods::MethodRegistry::instance().all()) {
      auto* box = setup.findChild<QGroupBox*>(QString("method.%1").arg(info->name.c_str()));
      QVERIFY2(box != nullptr, info->name.c_str());
      QVERIFY(box->isCheckable());
      for (const auto& p : info->params) {
        auto* w = box->findChild<QWidget*>(
            QString("method.%1.%2").arg(info->name.c_str(), p.name.c_str()));
        QVERIFY2(w != nullptr, p.name.c_str());
        QVERIFY(!w->toolTip().isEmpty());
        if (p.type == lathe::methods::ParamType::number) {
          auto* s = qobject_cast<QDoubleSpinBox*>(w);
          QVERIFY(s != nullptr);
          QCOMPARE(s->minimum(), p.min);
          QCOMPARE(s->maximum(), p.max);
        }
        if (p.type == lathe::methods::ParamType::choice)
          QCOMPARE(qobject_cast<QComboBox*>(w)->count(), static_cast<int>(p.choices.size()));
        if (p.type == lathe::methods::ParamType::boolean)
          QVERIFY(qobject_cast<QCheckBox*>(w) != nullptr);
      }
    }
    // A changed parameter reaches the config.
    setup.findChild<QDoubleSpinBox*>("method.adamw.lr")->setValue(0.0025);
    setup.refreshNow();
    QCOMPARE(setup.currentConfig()->methods.at(0).at("lr").get<double>(), 0.0025);
  }

  void conflictingMethodsDisableLaunch() {
    SetupPanel setup;
    setup.show();
    auto* sgd = setup.findChild<QGroupBox*>("method.sgd");
    auto* conflict = setup.findChild<QLabel*>("MethodConflict");
    QVERIFY(sgd && conflict);
    sgd->setChecked(true);  // AdamW is checked by the example
    setup.refreshNow();
    QVERIFY(conflict->isVisible());
    QVERIFY(conflict->text().contains("one optimizer"));
    QVERIFY(!setup.canLaunch());
    QVERIFY(!setup.findChild<QPushButton*>("LaunchButton")->isEnabled());
    setup.findChild<QGroupBox*>("method.adamw")->setChecked(false);
    setup.refreshNow();
    QVERIFY(!conflict->isVisible());
    QVERIFY(setup.canLaunch());
    QCOMPARE(setup.currentConfig()->methods.at(0).at("name").get<std::string>(), "sgd");
  }

  void badModelFieldIsShownInline() {
    SetupPanel setup;
    auto* channels = setup.findChild<QLineEdit*>("model.lenet.channels");
    auto* error = setup.findChild<QLabel*>("ModelError");
    QVERIFY(channels && error);
    channels->setText("32, x");
    setup.refreshNow();
    QVERIFY(error->text().contains("model.channels"));
    QVERIFY(!setup.canLaunch());
    channels->setText("8, 16");
    setup.refreshNow();
    QVERIFY(error->text().isEmpty());
    QCOMPARE(setup.currentConfig()->model.at("channels"), nlohmann::json({8, 16}));
    // Another preset: its own fields, live figures.
    auto* preset = setup.findChild<QComboBox*>("ModelPreset");
    preset->setCurrentIndex(preset->findData("gpt"));
    setup.findChild<QSpinBox*>("model.gpt.n_head")->setValue(5);  // 128 % 5 != 0
    setup.refreshNow();
    QVERIFY(error->text().contains("n_head"));
    setup.findChild<QSpinBox*>("model.gpt.n_head")->setValue(8);
    setup.refreshNow();
    QVERIFY2(error->text().isEmpty(), qPrintable(error->text()));
    QVERIFY(setup.findChild<QLabel*>("ModelInfo")->text().contains("token"));
  }

  void datasetCardWritesTheSpec() {
    SetupPanel setup;
    auto* format = setup.findChild<QComboBox*>("DatasetFormat");
    format->setCurrentIndex(format->findData("csv"));
    setup.findChild<QLineEdit*>("DatasetPath")->setText("/nonexistent/x.csv");
    setup.findChild<QSpinBox*>("BatchSize")->setValue(7);
    setup.findChild<QSpinBox*>("Epochs")->setValue(3);
    setup.refreshNow();
    QVERIFY(setup.findChild<QLabel*>("DatasetStatus")->text().startsWith("Not found"));
    const nlohmann::json d = setup.draft();
    QCOMPARE(d["dataset"]["format"], "csv");
    QCOMPARE(d["dataset"]["path"], "/nonexistent/x.csv");
    QCOMPARE(d["training"]["batch_size"], 7);
    QCOMPARE(d["training"]["epochs"], 3);
  }
};

QTEST_MAIN(PanelsTest)
#include "PanelsTest.moc"
