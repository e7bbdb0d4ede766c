#include "ui/panels/setup/DatasetCard.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QPushButton>
#include <QSpinBox>
#include <algorithm>
#include <iterator>

namespace lathe::ui {
namespace {

const char* const kFormats[] = {"mnist", "cifar10", "csv", "npz", "npy", "text"};
const char* const kFormatTitles[] = {"MNIST / Fashion-MNIST (IDX)",
                                     "CIFAR-10 (binary)",
                                     "CSV table",
                                     "NumPy .npz",
                                     "NumPy .npy pair",
                                     "Text (language model)"};

bool wantsFolder(const QString& format) {
  return format == "mnist" || format == "cifar10";
}

}  // namespace

DatasetCard::DatasetCard(QWidget* parent) : QGroupBox(tr("Data and training"), parent) {
  setObjectName("DatasetCard");
  auto* form = new QFormLayout(this);
  format_ = new QComboBox(this);
  format_->setObjectName("DatasetFormat");
  for (size_t i = 0; i < std::size(kFormats); ++i)
    format_->addItem(tr(kFormatTitles[i]), kFormats[i]);
  form->addRow(tr("Format:"), format_);

  auto* path_row = new QHBoxLayout();
  path_ = new QLineEdit(this);
  path_->setObjectName("DatasetPath");
  auto* browse = new QPushButton(tr("Browse…"), this);
  browse->setObjectName("DatasetBrowse");
  path_row->addWidget(path_, 1);
  path_row->addWidget(browse);
  form->addRow(tr("Path:"), path_row);
  targets_ = new QLineEdit(this);
  targets_->setObjectName("DatasetTargets");
  targets_->setPlaceholderText(tr("targets .npy"));
  targets_label_ = new QLabel(tr("Targets:"), this);
  form->addRow(targets_label_, targets_);
  status_ = new QLabel(this);
  status_->setObjectName("DatasetStatus");
  status_->setWordWrap(true);
  form->addRow(QString(), status_);

  val_fraction_ = new QDoubleSpinBox(this);
  val_fraction_->setObjectName("ValFraction");
  val_fraction_->setRange(0.0, 0.9);
  val_fraction_->setSingleStep(0.05);
  val_fraction_->setDecimals(3);
  val_fraction_->setToolTip(tr("share of the training data held out for validation (seeded)"));
  form->addRow(tr("Validation fraction:"), val_fraction_);
  batch_size_ = new QSpinBox(this);
  batch_size_->setObjectName("BatchSize");
  batch_size_->setRange(1, 1 << 20);
  form->addRow(tr("Batch size:"), batch_size_);
  epochs_ = new QSpinBox(this);
  epochs_->setObjectName("Epochs");
  epochs_->setRange(0, 100000);
  epochs_->setSpecialValueText(tr("by steps"));
  form->addRow(tr("Epochs:"), epochs_);
  max_steps_ = new QSpinBox(this);
  max_steps_->setObjectName("MaxSteps");
  max_steps_->setRange(0, 1 << 30);
  max_steps_->setSpecialValueText(tr("by epochs"));
  max_steps_->setToolTip(tr("optimizer steps; overrides the epochs when set"));
  form->addRow(tr("Max steps:"), max_steps_);
  schedule_ = new QComboBox(this);
  schedule_->setObjectName("Schedule");
  for (const char* k : {"constant", "cosine", "linear", "step"}) schedule_->addItem(k, k);
  schedule_->setToolTip(tr("learning-rate schedule after the warmup"));
  form->addRow(tr("LR schedule:"), schedule_);
  warmup_ = new QSpinBox(this);
  warmup_->setObjectName("WarmupSteps");
  warmup_->setRange(0, 1 << 30);
  warmup_->setToolTip(tr("steps of linear warmup; must be fewer than the run's steps"));
  form->addRow(tr("Warmup steps:"), warmup_);
  connect(schedule_, &QComboBox::currentIndexChanged, this, &DatasetCard::changed);

  connect(browse, &QPushButton::clicked, this, &DatasetCard::browse);
  connect(format_, &QComboBox::currentIndexChanged, this, &DatasetCard::formatChanged);
  for (QLineEdit* e : {path_, targets_})
    connect(e, &QLineEdit::textChanged, this, [this] {
      updateStatus();
      Q_EMIT changed();
    });
  connect(val_fraction_, &QDoubleSpinBox::valueChanged, this, &DatasetCard::changed);
  for (QSpinBox* s : {batch_size_, epochs_, max_steps_, warmup_})
    connect(s, &QSpinBox::valueChanged, this, &DatasetCard::changed);
  updateStatus();
}

void DatasetCard::setSpecs(const nlohmann::json& dataset, const nlohmann::json& training) {
  base_dataset_ = dataset.is_object() ? dataset : nlohmann::json::object();
  base_training_ = training.is_object() ? training : nlohmann::json::object();
  const QSignalBlocker block(this);
  const int f = format_->findData(QString::fromStdString(base_dataset_.value("format", "mnist")));
  {
    QSignalBlocker b(format_);
    format_->setCurrentIndex(std::max(0, f));
  }
  const bool npy = format_->currentData().toString() == "npy";
  targets_->setVisible(npy);
  targets_label_->setVisible(npy);
  {
    QSignalBlocker b1(path_), b2(targets_);
    path_->setText(QString::fromStdString(base_dataset_.value(npy ? "inputs" : "path", "")));
    targets_->setText(QString::fromStdString(base_dataset_.value("targets", "")));
  }
  {
    QSignalBlocker b1(val_fraction_), b2(batch_size_), b3(epochs_), b4(max_steps_), b5(schedule_),
        b6(warmup_);
    const nlohmann::json sched = base_training_.value("schedule", nlohmann::json::object());
    schedule_->setCurrentIndex(
        std::max(0, schedule_->findData(QString::fromStdString(sched.value("kind", "constant")))));
    warmup_->setValue(sched.value("warmup_steps", 0));
    val_fraction_->setValue(base_dataset_.value("val_fraction", 0.1));
    batch_size_->setValue(base_training_.value("batch_size", 64));
    const int max_steps = base_training_.value("max_steps", 0);
    max_steps_->setValue(max_steps);
    epochs_->setValue(base_training_.value("epochs", max_steps > 0 ? 0 : 1));
  }
  updateStatus();
}

nlohmann::json DatasetCard::dataset() const {
  nlohmann::json d = base_dataset_;
  const QString format = format_->currentData().toString();
  d["format"] = format.toStdString();
  if (format == "npy") {
    d.erase("path");
    d["inputs"] = path_->text().trimmed().toStdString();
    d["targets"] = targets_->text().trimmed().toStdString();
  } else {
    d.erase("inputs");
    d.erase("targets");
    d["path"] = path_->text().trimmed().toStdString();
  }
  d["val_fraction"] = val_fraction_->value();
  return d;
}

nlohmann::json DatasetCard::training() const {
  nlohmann::json t = base_training_;
  t["batch_size"] = batch_size_->value();
  t.erase("epochs");
  t.erase("max_steps");
  if (max_steps_->value() > 0) t["max_steps"] = max_steps_->value();
  if (epochs_->value() > 0) t["epochs"] = epochs_->value();
  nlohmann::json sched = t.value("schedule", nlohmann::json::object());
  sched["kind"] = schedule_->currentData().toString().toStdString();
  sched["warmup_steps"] = warmup_->value();
  t["schedule"] = sched;
  return t;
}

void DatasetCard::formatChanged() {
  const QString format = format_->currentData().toString();
  // Format-specific fields do not carry over to another format.
  base_dataset_ = nlohmann::json::object();
  if (format == "text") base_dataset_ = {{"tokenizer", "bytes"}, {"block_size", 128}};
  const bool npy = format == "npy";
  targets_->setVisible(npy);
  targets_label_->setVisible(npy);
  updateStatus();
  Q_EMIT changed();
}

void DatasetCard::browse() {
  const QString format = format_->currentData().toString();
  const QString start = QFileInfo(path_->text()).absolutePath();
  QString picked;
  if (wantsFolder(format))
    picked = QFileDialog::getExistingDirectory(this, tr("Dataset folder"), path_->text());
  else if (format == "text")
    picked = QFileDialog::getOpenFileName(this, tr("Text file"), start);
  else
    picked =
        QFileDialog::getOpenFileName(this, tr("Dataset file"), start,
                                     format == "csv" ? tr("CSV (*.csv *.txt);;All files (*)")
                                                     : tr("NumPy (*.npz *.npy);;All files (*)"));
  if (!picked.isEmpty()) path_->setText(picked);
}

void DatasetCard::updateStatus() {
  const QString p = path_->text().trimmed();
  const QFileInfo info(p);
  const bool folder = wantsFolder(format_->currentData().toString());
  QString text;
  bool ok = true;
  if (p.isEmpty()) {
    text = tr("Choose the data's %1.").arg(folder ? tr("folder") : tr("file"));
    ok = false;
  } else if (!info.exists()) {
    text = tr("Not found: %1").arg(p);
    ok = false;
  } else if (folder && !info.isDir()) {
    text = tr("Expected a folder: %1").arg(p);
    ok = false;
  } else {
    text = info.isDir() ? tr("Folder found.")
                        : tr("File found (%1 bytes).").arg(QLocale().toString(info.size()));
  }
  status_->setText(text);
  status_->setStyleSheet(ok ? "color: palette(mid);" : "color: #c0392b;");
}

}  // namespace lathe::ui
