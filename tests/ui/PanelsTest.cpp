// The panels on their own: chart downsampling and the Pareto front, bar charts, the Setup tab's
// default experiment, schema-generated method panels, conflicts and inline model errors, model
// files opened through the file dialog, the dataset preview (thumbnails, text, sizes, Fashion-MNIST
// found where installed), the hardware card, and the settings file.
#include <QCheckBox>
#include <QComboBox>
#include <QFileDialog>
#include <QGroupBox>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <cmath>

#include "core/backend/Backend.h"
#include "core/io/ModelFile.h"
#include "core/io/Safetensors.h"
#include "core/methods/Method.h"
#include "kernels/Backends.h"
#include "tests/ui/UiTestUtil.h"
#include "ui/FormatUtil.h"
#include "ui/Settings.h"
#include "ui/charts/BarChart.h"
#include "ui/charts/Downsample.h"
#include "ui/charts/MetricChart.h"
#include "ui/charts/ParetoChart.h"
#include "ui/panels/setup/DatasetCard.h"
#include "ui/panels/setup/ModelCard.h"
#include "ui/panels/setup/SetupPanel.h"

using namespace lathe::ui;

namespace {

using lathe::ui::test::acceptFileDialog;

// IDX files (MNIST layout) of `n` 28x28 images whose pixels encode the label, labels i % 10.
void writeIdx(const QString& dir, const QString& prefix, int n) {
  auto be32 = [](QByteArray& b, quint32 v) {
    for (int s = 24; s >= 0; s -= 8) b.append(static_cast<char>((v >> s) & 0xff));
  };
  QByteArray images, labels;
  be32(images, 0x00000803);
  be32(images, static_cast<quint32>(n));
  be32(images, 28);
  be32(images, 28);
  be32(labels, 0x00000801);
  be32(labels, static_cast<quint32>(n));
  for (int i = 0; i < n; ++i) {
    for (int p = 0; p < 28 * 28; ++p) images.append(static_cast<char>((p * (i % 10 + 1)) % 256));
    labels.append(static_cast<char>(i % 10));
  }
  QFile fi(dir + "/" + prefix + "-images-idx3-ubyte"),
      fl(dir + "/" + prefix + "-labels-idx1-ubyte");
  QVERIFY(fi.open(QIODevice::WriteOnly) && fl.open(QIODevice::WriteOnly));
  fi.write(images);
  fl.write(labels);
}

}  // namespace

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

  void barChartHoldsItsData() {
    BarChart bars("memory");
    bars.setData({"parameters", "activations"}, {"#1 a", "#2 b", "#3 c"}, {{1, 2}, {3, 4}, {5, 0}},
                 "MiB");
    QCOMPARE(bars.setCount(), 3);
    QCOMPARE(bars.categoryCount(), 2);
    QCOMPARE(bars.value(1, 1), 4.0);
    QCOMPARE(bars.value(7, 0), 0.0);  // out of range: nothing
    bars.setData({}, {}, {}, "MiB");
    QCOMPARE(bars.setCount(), 0);
    MetricChart curves("curves", "value");
    curves.addSeries("1", "#1");
    curves.addSeries("2", "#2");
    curves.setPoints("1", {{0, 1}, {1, 2}});
    QCOMPARE(curves.seriesCount(), 2);
    curves.removeAllSeries();
    QCOMPARE(curves.seriesCount(), 0);
    QCOMPARE(curves.pointCount("1"), qsizetype{0});
  }

  void settingsRoundTripThroughAnIniFile() {
    QTemporaryDir dir;
    const QString ini = dir.filePath("lathe.ini");
    WorkbenchSettings s = WorkbenchSettings::loadFrom(ini);
    QVERIFY(s.isPersistent());
    QVERIFY(s.db_path.isEmpty() && s.recent_files.isEmpty());
    s.db_path = dir.filePath("a.db");
    s.db_override = dir.filePath("not-saved.db");
    for (int i = 0; i < 12; ++i) s.addRecentFile(dir.filePath(QString("c%1.json").arg(i)));
    s.addRecentFile(dir.filePath("c5.json"));  // again: moves to the front, once
    QCOMPARE(s.recent_files.size(), WorkbenchSettings::kMaxRecentFiles);
    QCOMPARE(s.recent_files.front(), dir.filePath("c5.json"));
    QCOMPARE(s.recent_files.count(dir.filePath("c5.json")), 1);
    s.geometry = "geometry-bytes";
    QVERIFY(s.save());
    const WorkbenchSettings back = WorkbenchSettings::loadFrom(ini);
    QCOMPARE(back.db_path, s.db_path);
    QVERIFY(back.db_override.isEmpty());
    QCOMPARE(back.recent_files, s.recent_files);
    QCOMPARE(back.geometry, QByteArray("geometry-bytes"));
    QCOMPARE(back.resolvedDbPath(), s.db_path);
    // A settings object that was not loaded is never written.
    WorkbenchSettings loose;
    QVERIFY(!loose.isPersistent());
    QVERIFY(!loose.save());
  }

  void modelCardOpensModelFiles() {
    QTemporaryDir dir;
    const QString lathe_file = dir.filePath("mlp.safetensors");
    const nlohmann::json spec = {
        {"type", "mlp"}, {"input_dim", 12}, {"hidden", {24, 8}}, {"classes", 5}};
    lathe::saveModel(lathe_file.toStdString(), *lathe::buildModel(spec));
    SetupPanel setup;
    setup.show();
    auto* info = setup.findChild<QLabel*>("ModelFileInfo");
    auto* error = setup.findChild<QLabel*>("ModelError");
    QVERIFY(info && error);
    QVERIFY(!info->isVisible());
    QTest::mouseClick(setup.findChild<QPushButton*>("ModelOpenFile"), Qt::LeftButton);
    QVERIFY(acceptFileDialog(&setup, "ModelFileDialog", lathe_file));
    QTRY_VERIFY(info->isVisible());
    // The preset and its fields come from the file's spec; the figures follow.
    QCOMPARE(setup.findChild<QComboBox*>("ModelPreset")->currentData().toString(), QString("mlp"));
    QCOMPARE(setup.findChild<QSpinBox*>("model.mlp.input_dim")->value(), 12);
    QCOMPARE(setup.findChild<QLineEdit*>("model.mlp.hidden")->text(), QString("24, 8"));
    const int params = 12 * 24 + 24 + 24 * 8 + 8 + 8 * 5 + 5;  // 557
    QVERIFY2(info->text().contains("Lathe model") && info->text().contains(QString::number(params)),
             qPrintable(info->text()));
    QVERIFY(info->text().contains("F32"));
    QVERIFY(setup.findChild<QLabel*>("ModelInfo")->text().contains("FLOP"));
    QVERIFY(error->text().isEmpty());
    setup.refreshNow();
    QCOMPARE(setup.currentConfig()->model.at("hidden"), nlohmann::json({24, 8}));

    // Any safetensors file: its sizes, and the preset stays.
    const QString plain = dir.filePath("plain.safetensors");
    lathe::writeSafetensors(plain.toStdString(),
                            {{"w", lathe::Tensor::zeros({3, 4}, lathe::DType::f32)}});
    QVERIFY(setup.modelCard()->openModelFile(plain));
    QVERIFY(info->text().contains("without a Lathe architecture spec"));
    QVERIFY(info->text().contains("12 parameters"));
    QCOMPARE(setup.findChild<QComboBox*>("ModelPreset")->currentData().toString(), QString("mlp"));

    // Not a model file: the card says why, naming the file.
    const QString junk = dir.filePath("junk.safetensors");
    QFile f(junk);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("definitely not safetensors");
    f.close();
    QVERIFY(!setup.modelCard()->openModelFile(junk));
    QVERIFY(error->text().contains("junk.safetensors"));
    QVERIFY(!info->isVisible());
  }

  void datasetPreviewShowsThumbnailsAndText() {
    QTemporaryDir dir;
    writeIdx(dir.path(), "train", 40);
    writeIdx(dir.path(), "t10k", 10);
    SetupPanel setup;
    setup.show();
    auto* format = setup.findChild<QComboBox*>("DatasetFormat");
    auto* path = setup.findChild<QLineEdit*>("DatasetPath");
    auto* thumbs = setup.findChild<QListWidget*>("DatasetThumbnails");
    auto* sizes = setup.findChild<QLabel*>("DatasetSizes");
    auto* snippet = setup.findChild<QPlainTextEdit*>("DatasetSnippet");
    QVERIFY(format && path && thumbs && sizes && snippet);
    format->setCurrentIndex(format->findData("mnist"));
    path->setText(dir.path());
    setup.findChild<QDoubleSpinBox*>("ValFraction")->setValue(0.25);
    QTRY_VERIFY_WITH_TIMEOUT(sizes->text().contains("30 train"), 10000);
    QVERIFY2(sizes->text().contains("10 validation") && sizes->text().contains("10 test") &&
                 sizes->text().contains("[1, 28, 28]") && sizes->text().contains("10 classes"),
             qPrintable(sizes->text()));
    QCOMPARE(thumbs->count(), DatasetCard::kPreviewImages);
    QVERIFY(thumbs->isVisible());
    QVERIFY(!thumbs->item(0)->icon().isNull());
    for (int i = 0; i < thumbs->count(); ++i) {  // labels are digits 0..9 (seeded split)
      bool ok = false;
      const int label = thumbs->item(i)->text().toInt(&ok);
      QVERIFY(ok && label >= 0 && label < 10);
    }
    QVERIFY(!snippet->isVisible());

    // Text: a snippet of the file, the token sizes; no thumbnails.
    const QString text = dir.filePath("story.txt");
    QFile f(text);
    QVERIFY(f.open(QIODevice::WriteOnly));
    for (int i = 0; i < 200; ++i) f.write("Once upon a time the lathe turned a tiny model. ");
    f.close();
    format->setCurrentIndex(format->findData("text"));
    path->setText(text);
    QTRY_VERIFY_WITH_TIMEOUT(snippet->isVisible(), 10000);
    QVERIFY(snippet->toPlainText().startsWith("Once upon a time"));
    QVERIFY2(sizes->text().contains("vocabulary 256"), qPrintable(sizes->text()));
    QVERIFY(!thumbs->isVisible());

    // A bad path: the load's error, naming the path.
    path->setText(dir.filePath("nope.txt"));
    QTRY_VERIFY_WITH_TIMEOUT(sizes->text().startsWith("Cannot load"), 10000);
    QVERIFY(sizes->text().contains("nope.txt"));
    const QString shots = qEnvironmentVariable("LATHE_TEST_ARTIFACTS");
    if (!shots.isEmpty()) {
      QDir().mkpath(shots);
      format->setCurrentIndex(format->findData("mnist"));
      path->setText(dir.path());
      QTRY_VERIFY_WITH_TIMEOUT(thumbs->count() == DatasetCard::kPreviewImages, 10000);
      setup.resize(1400, 1000);
      QVERIFY(setup.grab().save(shots + "/setup_dataset_preview.png"));
    }
  }

  void fashionMnistIsFoundWhereInstalled() {
    const QString found = DatasetCard::findFashionMnist();
    if (found.isEmpty()) QSKIP("Fashion-MNIST is not installed in any of the usual places");
    SetupPanel setup;
    auto* format = setup.findChild<QComboBox*>("DatasetFormat");
    auto* path = setup.findChild<QLineEdit*>("DatasetPath");
    format->setCurrentIndex(format->findData("csv"));
    path->clear();
    format->setCurrentIndex(format->findData("mnist"));  // no path: found
    QCOMPARE(path->text(), found);
    // A missing folder of other IDX data stays (and is reported); a missing Fashion-MNIST one is
    // replaced by the installed copy.
    format->setCurrentIndex(format->findData("csv"));
    path->setText("/nonexistent/digits");
    format->setCurrentIndex(format->findData("mnist"));
    QCOMPARE(path->text(), QString("/nonexistent/digits"));
    QVERIFY(setup.findChild<QLabel*>("DatasetStatus")->text().startsWith("Not found"));
    format->setCurrentIndex(format->findData("csv"));
    path->setText("/elsewhere/Fashion-MNIST");
    format->setCurrentIndex(format->findData("mnist"));
    QCOMPARE(path->text(), found);
    QVERIFY(setup.findChild<QLabel*>("DatasetStatus")->text().contains("Fashion-MNIST found"));
    auto* thumbs = setup.findChild<QListWidget*>("DatasetThumbnails");
    QTRY_VERIFY_WITH_TIMEOUT(thumbs->count() == DatasetCard::kPreviewImages, 30000);
    const QStringList fashion = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    for (int i = 0; i < thumbs->count(); ++i) QVERIFY(fashion.contains(thumbs->item(i)->text()));
    const QString sizes = setup.findChild<QLabel*>("DatasetSizes")->text();
    QVERIFY2(sizes.contains(QRegularExpression("10.?000 test")), qPrintable(sizes));
  }

  void hardwareCardListsTheDevices() {
    SetupPanel setup;
    QVERIFY(setup.findChild<QGroupBox*>("HardwareCard") != nullptr);
    auto* device = setup.findChild<QComboBox*>("Device");
    const QString info = setup.findChild<QLabel*>("HardwareInfo")->text();
    QCOMPARE(device->itemData(0).toString(), QString("cpu"));
    QVERIFY(info.contains("CPU:"));
    QVERIFY(info.contains("oneDNN"));
    if (lathe::hasBackend(lathe::DeviceType::cuda)) {
      const int n = lathe::backendFor(lathe::DeviceType::cuda).deviceCount();
      QCOMPARE(device->count(), 1 + n);
      if (n > 0) QCOMPARE(device->itemData(1).toString(), QString("cuda:0"));
    } else {
      QCOMPARE(device->count(), 1);
      QVERIFY(info.contains("No GPU"));
    }
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
