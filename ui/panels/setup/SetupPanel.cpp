#include "ui/panels/setup/SetupPanel.h"

#include <QComboBox>
#include <QFile>
#include <QFontDatabase>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollArea>
#include <QSysInfo>
#include <QThread>
#include <QVBoxLayout>

#include "core/backend/Backend.h"
#include "core/base/BuildInfo.h"
#include "ui/panels/setup/DatasetCard.h"
#include "ui/panels/setup/EstimateCard.h"
#include "ui/panels/setup/MethodsCard.h"
#include "ui/panels/setup/ModelCard.h"

// The Qt resources live in the static lathe_ui library; nothing references them by symbol, so
// they are registered explicitly (outside any namespace, as Q_INIT_RESOURCE requires).
static void initLatheResources() {
  Q_INIT_RESOURCE(lathe);
}

namespace lathe::ui {
namespace {

// "CPU: <model>, N logical cores" from /proc/cpuinfo where there is one.
QString cpuLine() {
  QString model;
  QFile f("/proc/cpuinfo");
  if (f.open(QIODevice::ReadOnly | QIODevice::Text)) {
    while (!f.atEnd()) {
      const QString line = QString::fromUtf8(f.readLine());
      if (line.startsWith("model name")) {
        model = line.section(':', 1).trimmed();
        break;
      }
    }
  }
  if (model.isEmpty()) model = QSysInfo::currentCpuArchitecture();
  return QObject::tr("CPU: %1, %2 logical cores").arg(model).arg(QThread::idealThreadCount());
}

QScrollArea* scrolled(QWidget* content) {
  auto* area = new QScrollArea();
  area->setWidget(content);
  area->setWidgetResizable(true);
  area->setFrameShape(QFrame::NoFrame);
  return area;
}

}  // namespace

nlohmann::json SetupPanel::defaultConfig() {
  initLatheResources();
  QFile f(":/lathe/examples/fashion_cnn.json");
  if (f.open(QIODevice::ReadOnly)) {
    try {
      return nlohmann::json::parse(f.readAll().toStdString());
    } catch (const std::exception&) {
      // Fall through to the built-in minimum.
    }
  }
  return {{"name", "run"},
          {"model", {{"type", "mlp"}, {"input_dim", 784}, {"hidden", {128}}, {"classes", 10}}},
          {"dataset", {{"format", "mnist"}, {"path", "/usr/share/datasets/fashion-mnist"}}}};
}

SetupPanel::SetupPanel(QWidget* parent) : QWidget(parent) {
  setObjectName("SetupPanel");
  auto* outer = new QHBoxLayout(this);

  // Left column: run, model, data, hardware.
  auto* left = new QWidget();
  auto* left_layout = new QVBoxLayout(left);
  auto* run_box = new QGroupBox(tr("Run"), left);
  auto* run_form = new QFormLayout(run_box);
  name_ = new QLineEdit(run_box);
  name_->setObjectName("RunName");
  run_form->addRow(tr("Name:"), name_);
  left_layout->addWidget(run_box);
  model_ = new ModelCard(left);
  left_layout->addWidget(model_);
  dataset_ = new DatasetCard(left);
  left_layout->addWidget(dataset_);

  // Hardware: the devices of the registered backends (CUDA only when the build has it).
  auto* hw_box = new QGroupBox(tr("Hardware"), left);
  hw_box->setObjectName("HardwareCard");
  auto* hw_form = new QFormLayout(hw_box);
  device_ = new QComboBox(hw_box);
  device_->setObjectName("Device");
  device_->addItem(tr("CPU (%1)").arg(QString::fromStdString(backendFor(DeviceType::cpu).name())),
                   "cpu");
  QStringList info = {cpuLine()};
  if (hasBackend(DeviceType::cuda)) {
    Backend& gpu = backendFor(DeviceType::cuda);
    const int n = gpu.deviceCount();
    for (int i = 0; i < n; ++i) {
      const QString name = QString::fromStdString(gpu.deviceName(i));
      const DeviceMemory mem = gpu.deviceMemory(i);
      device_->addItem(QString("GPU cuda:%1 (%2)").arg(i).arg(name), QString("cuda:%1").arg(i));
      info << tr("cuda:%1: %2, %3 GiB")
                  .arg(i)
                  .arg(name)
                  .arg(static_cast<double>(mem.total_bytes) / (1024.0 * 1024.0 * 1024.0), 0, 'f',
                       1);
    }
    info << (n > 0 ? tr("%n GPU(s) visible to the CUDA backend", "", n)
                   : tr("CUDA backend built in, but no GPU is visible"));
  } else {
    info << tr("No GPU: this build has no CUDA backend");
  }
  for (const auto& [name, value] : capabilities())
    info << QString("%1: %2").arg(QString::fromStdString(name), QString::fromStdString(value));
  hw_form->addRow(tr("Device:"), device_);
  hw_info_ = new QLabel(info.join('\n'), hw_box);
  hw_info_->setObjectName("HardwareInfo");
  hw_info_->setWordWrap(true);
  hw_info_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  hw_form->addRow(hw_info_);
  left_layout->addWidget(hw_box);
  left_layout->addStretch(1);
  outer->addWidget(scrolled(left), 3);

  // Middle column: the method panels.
  auto* methods_box = new QGroupBox(tr("Efficiency methods"));
  auto* methods_layout = new QVBoxLayout(methods_box);
  methods_ = new MethodsCard(methods_box);
  methods_layout->addWidget(methods_);
  outer->addWidget(scrolled(methods_box), 3);

  // Right column: the config being built, and Launch.
  auto* right = new QGroupBox(tr("Run config"));
  auto* right_layout = new QVBoxLayout(right);
  json_ = new QPlainTextEdit(right);
  json_->setObjectName("ConfigJson");
  json_->setReadOnly(true);
  json_->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  json_->setLineWrapMode(QPlainTextEdit::NoWrap);
  json_->setMinimumHeight(120);
  right_layout->addWidget(json_, 1);
  error_ = new QLabel(right);
  error_->setObjectName("ConfigError");
  error_->setWordWrap(true);
  error_->setStyleSheet("color: #c0392b;");
  right_layout->addWidget(error_);
  estimate_ = new EstimateCard(right);
  right_layout->addWidget(estimate_);
  launch_ = new QPushButton(tr("Launch"), right);
  launch_->setObjectName("LaunchButton");
  launch_->setDefault(true);
  launch_->setMinimumHeight(36);
  right_layout->addWidget(launch_);
  outer->addWidget(right, 3);

  refresh_timer_.setSingleShot(true);
  refresh_timer_.setInterval(60);
  connect(&refresh_timer_, &QTimer::timeout, this, &SetupPanel::refreshNow);
  connect(model_, &ModelCard::changed, this, &SetupPanel::scheduleRefresh);
  connect(dataset_, &DatasetCard::changed, this, &SetupPanel::scheduleRefresh);
  connect(methods_, &MethodsCard::changed, this, &SetupPanel::scheduleRefresh);
  connect(name_, &QLineEdit::textChanged, this, &SetupPanel::scheduleRefresh);
  connect(device_, &QComboBox::currentIndexChanged, this, &SetupPanel::scheduleRefresh);
  connect(launch_, &QPushButton::clicked, this, &SetupPanel::requestLaunch);
  // An estimate waits for a preview load, and holds the next one back while it runs.
  estimate_->setStartBlocker([this] { return dataset_->previewPending(); });
  connect(estimate_, &EstimateCard::runningChanged, this, [this](bool running) {
    dataset_->setPreviewHeld(running, DatasetCard::PreviewHold::estimate);
  });

  setConfig(defaultConfig());
}

void SetupPanel::setConfig(const nlohmann::json& config) {
  base_ = config.is_object() ? config : nlohmann::json::object();
  {
    const QSignalBlocker b1(name_), b2(device_);
    name_->setText(QString::fromStdString(base_.value("name", "run")));
    const std::string device =
        base_.contains("hardware") ? base_["hardware"].value("device", "cpu") : "cpu";
    const int i = device_->findData(QString::fromStdString(device));
    device_->setCurrentIndex(std::max(0, i));
  }
  model_->setSpec(base_.value("model", nlohmann::json::object()));
  dataset_->setSpecs(base_.value("dataset", nlohmann::json::object()),
                     base_.value("training", nlohmann::json::object()));
  methods_->setMethods(base_.value("methods", nlohmann::json::array()));
  refreshNow();
}

nlohmann::json SetupPanel::draft() const {
  nlohmann::json j = base_;
  j["version"] = run::kRunConfigVersion;
  j["name"] = name_->text().trimmed().toStdString();
  j["model"] = model_->spec();
  j["dataset"] = dataset_->dataset();
  j["training"] = dataset_->training();
  j["methods"] = methods_->methods();
  j["hardware"] = {{"device", device_->currentData().toString().toStdString()}};
  return j;
}

std::optional<run::RunConfig> SetupPanel::currentConfig(QString* error) const {
  try {
    return run::RunConfig::parse(draft());
  } catch (const std::exception& e) {
    if (error != nullptr) *error = QString::fromUtf8(e.what());
    return std::nullopt;
  }
}

bool SetupPanel::canLaunch() const {
  return launch_->isEnabled();
}

void SetupPanel::scheduleRefresh() {
  refresh_timer_.start();
}

void SetupPanel::refreshNow() {
  refresh_timer_.stop();
  QString error;
  const std::optional<run::RunConfig> config = currentConfig(&error);
  const QString conflict = methods_->conflict();
  if (config)
    json_->setPlainText(QString::fromStdString(config->toJson().dump(2)));
  else
    json_->setPlainText(QString::fromStdString(draft().dump(2)));
  // A conflict is the clearer message of the two when both apply.
  error_->setText(!conflict.isEmpty() ? QString() : error);
  launch_->setEnabled(config.has_value() && conflict.isEmpty());
  estimate_->setConfig(launch_->isEnabled() ? config : std::nullopt,
                       conflict.isEmpty() ? error : conflict);
  launch_->setToolTip(launch_->isEnabled() ? tr("Queue this run")
                                           : (conflict.isEmpty() ? error : conflict));
}

void SetupPanel::requestLaunch() {
  refreshNow();
  if (!canLaunch()) return;
  if (!estimate_->doesNotFit()) {
    Q_EMIT launchRequested();
    return;
  }
  // The estimate is of this very config (another one would have cleared it): ask first.
  auto* box = new QMessageBox(QMessageBox::Warning, tr("Launch a run that does not fit?"),
                              tr("%1\n\nThe run will most likely fail when it runs out of "
                                 "memory. Launch it anyway?")
                                  .arg(estimate_->verdictText()),
                              QMessageBox::Cancel, this);
  box->setObjectName("DoesNotFitDialog");
  QPushButton* anyway = box->addButton(tr("Launch anyway"), QMessageBox::AcceptRole);
  anyway->setObjectName("LaunchAnyway");
  box->setDefaultButton(QMessageBox::Cancel);
  box->setAttribute(Qt::WA_DeleteOnClose);
  connect(box, &QMessageBox::finished, this, [this, box, anyway] {
    if (box->clickedButton() == anyway && canLaunch()) Q_EMIT launchRequested();
  });
  box->open();
}

}  // namespace lathe::ui
