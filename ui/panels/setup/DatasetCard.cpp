#include "ui/panels/setup/DatasetCard.h"

#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFontDatabase>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QLocale>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QStandardPaths>
#include <QThread>
#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>

#include "core/data/DatasetSpec.h"

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

struct Preview {
  QString error, sizes, snippet;
  QVector<QImage> images;
  QStringList labels;
};

QStringList classNames(const QString& format, const QString& path, int64_t classes) {
  QStringList names;
  if (format == "cifar10")
    names = {"airplane", "automobile", "bird",  "cat",  "deer",
             "dog",      "frog",       "horse", "ship", "truck"};
  else if (format == "mnist" && path.contains("fashion", Qt::CaseInsensitive))
    names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  if (names.size() != classes) names.clear();
  return names;
}

// One example's [C, H, W] input (C = 1 or 3) as an image, scaled to its own min..max so
// normalised inputs show too.
QImage toImage(const Tensor& input) {
  const Tensor x = input.contiguous().to(DType::f32);
  const int c = static_cast<int>(x.size(0)), h = static_cast<int>(x.size(1)),
            w = static_cast<int>(x.size(2));
  const float* d = x.data<float>();
  const auto [lo, hi] = std::minmax_element(d, d + x.numel());
  const float range = *hi > *lo ? *hi - *lo : 1.0f;
  QImage img(w, h, c == 1 ? QImage::Format_Grayscale8 : QImage::Format_RGB888);
  for (int y = 0; y < h; ++y) {
    uchar* line = img.scanLine(y);
    for (int xx = 0; xx < w; ++xx)
      for (int k = 0; k < c; ++k)
        line[xx * c + k] =
            static_cast<uchar>(std::lround(255.0f * (d[(k * h + y) * w + xx] - *lo) / range));
  }
  return img;
}

// The first few lines of a text or CSV file (the first file of a folder, by name).
QString fileHead(const QString& path, int max_chars) {
  QString file = path;
  if (QFileInfo(path).isDir()) {
    const QStringList files = QDir(path).entryList(QDir::Files, QDir::Name);
    if (files.isEmpty()) return {};
    file = QDir(path).filePath(files.first());
  }
  QFile f(file);
  if (!f.open(QIODevice::ReadOnly)) return {};
  QString text = QString::fromUtf8(f.read(max_chars * 4)).left(max_chars);
  return text;
}

// Runs on the worker thread: loads the data as a run would, then the figures and examples.
Preview loadPreview(const nlohmann::json& spec) {
  Preview out;
  try {
    const QString format = QString::fromStdString(spec.value("format", ""));
    const QString path = QString::fromStdString(spec.value("path", spec.value("inputs", "")));
    const data::LoadedData d = data::loadDataset(spec, 0);
    auto n = [](const data::DatasetPtr& p) { return p ? p->size() : int64_t{0}; };
    QStringList shape;
    for (int64_t s : d.input_shape) shape << QString::number(s);
    const QLocale loc;
    out.sizes = QObject::tr("%1 train / %2 validation / %3 test · input [%4]")
                    .arg(loc.toString(static_cast<qlonglong>(n(d.train))),
                         loc.toString(static_cast<qlonglong>(n(d.val))),
                         loc.toString(static_cast<qlonglong>(n(d.test))), shape.join(", "));
    if (d.task == data::TaskKind::classification)
      out.sizes += QObject::tr(" · %1 classes").arg(d.classes);
    else if (d.task == data::TaskKind::language_model)
      out.sizes += QObject::tr(" · vocabulary %1").arg(d.vocab_size);
    else
      out.sizes += QObject::tr(" · regression");
    if (format == "text") out.snippet = fileHead(path, 600);
    if (format == "csv") out.snippet = fileHead(path, 600);
    const bool images = d.task == data::TaskKind::classification && d.input_shape.size() == 3 &&
                        (d.input_shape[0] == 1 || d.input_shape[0] == 3);
    if (images && d.train) {
      const QStringList names = classNames(format, path, d.classes);
      for (int64_t i = 0; i < std::min<int64_t>(DatasetCard::kPreviewImages, d.train->size());
           ++i) {
        const data::Example ex = d.train->get(i);
        out.images << toImage(ex.input);
        const int64_t label = ex.target.contiguous().to(DType::i64).data<int64_t>()[0];
        out.labels << (label >= 0 && label < names.size() ? names[static_cast<int>(label)]
                                                          : QString::number(label));
      }
    }
  } catch (const std::exception& e) {
    out.error = QString::fromUtf8(e.what());
  }
  return out;
}

}  // namespace

QString DatasetCard::findFashionMnist() {
  QStringList candidates = {"/usr/share/datasets/fashion-mnist",
                            "/usr/local/share/datasets/fashion-mnist"};
  const QString xdg = qEnvironmentVariable("XDG_DATA_HOME");
  if (QDir::isAbsolutePath(xdg)) candidates << xdg + "/lathe/datasets/fashion-mnist";
  candidates << QDir::homePath() + "/.local/share/lathe/datasets/fashion-mnist";
  for (const QString& c : candidates) {
    const QDir dir(c);
    if (dir.exists("train-images-idx3-ubyte.gz") || dir.exists("train-images-idx3-ubyte")) return c;
  }
  return {};
}

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
  sizes_ = new QLabel(this);
  sizes_->setObjectName("DatasetSizes");
  sizes_->setWordWrap(true);
  form->addRow(tr("Sizes:"), sizes_);
  thumbnails_ = new QListWidget(this);
  thumbnails_->setObjectName("DatasetThumbnails");
  thumbnails_->setViewMode(QListView::IconMode);
  thumbnails_->setIconSize(QSize(48, 48));
  thumbnails_->setGridSize(QSize(76, 70));
  thumbnails_->setResizeMode(QListView::Adjust);
  thumbnails_->setMovement(QListView::Static);
  thumbnails_->setSelectionMode(QAbstractItemView::NoSelection);
  thumbnails_->setMinimumHeight(150);
  thumbnails_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);  // wraps instead
  thumbnails_->hide();
  form->addRow(thumbnails_);
  snippet_ = new QPlainTextEdit(this);
  snippet_->setObjectName("DatasetSnippet");
  snippet_->setReadOnly(true);
  snippet_->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  snippet_->setMaximumHeight(130);
  snippet_->hide();
  form->addRow(snippet_);

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

  preview_timer_.setSingleShot(true);
  preview_timer_.setInterval(250);
  connect(&preview_timer_, &QTimer::timeout, this, &DatasetCard::startPreview);
  connect(this, &DatasetCard::changed, this, [this] {
    // Training fields do not change the data; the spec does.
    if (dataset() != previewed_) schedulePreview();
  });
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

DatasetCard::~DatasetCard() {
  if (preview_thread_ != nullptr) preview_thread_->wait();
}

bool DatasetCard::previewPending() const {
  return preview_timer_.isActive() || preview_thread_ != nullptr;
}

void DatasetCard::schedulePreview() {
  preview_timer_.start();
}

void DatasetCard::setPreviewHeld(bool held, PreviewHold who) {
  const int bit = static_cast<int>(who);
  preview_holds_ = held ? (preview_holds_ | bit) : (preview_holds_ & ~bit);
  if (preview_holds_ == 0 && preview_waiting_) {
    preview_waiting_ = false;
    schedulePreview();
  }
}

void DatasetCard::startPreview() {
  // A load still in flight was asked for an older spec: its result must not be shown.
  ++preview_generation_;
  if (previewHeld()) {
    preview_waiting_ = true;
    sizes_->setStyleSheet({});
    sizes_->setText((preview_holds_ & static_cast<int>(PreviewHold::run)) != 0
                        ? tr("The preview waits for the running experiment to end (its memory "
                             "figures would count the preview's data).")
                        : tr("The preview waits for the estimate in flight (its memory figures "
                             "would count the preview's data)."));
    return;
  }
  if (preview_thread_ != nullptr) {  // one load at a time: try again when it is done
    sizes_->setText(tr("Loading…"));
    preview_timer_.start();
    return;
  }
  const nlohmann::json spec = dataset();
  previewed_ = spec;
  const int generation = preview_generation_;
  sizes_->setText(tr("Loading…"));
  sizes_->setStyleSheet({});
  auto result = std::make_shared<Preview>();
  QThread* thread = QThread::create([spec, result] { *result = loadPreview(spec); });
  preview_thread_ = thread;
  connect(thread, &QThread::finished, thread, &QObject::deleteLater);
  connect(thread, &QThread::finished, this, [this, result, generation] {
    preview_thread_ = nullptr;
    if (generation != preview_generation_) return;
    thumbnails_->clear();
    const Preview& p = *result;
    sizes_->setText(p.error.isEmpty() ? p.sizes : tr("Cannot load: %1").arg(p.error));
    sizes_->setStyleSheet(p.error.isEmpty() ? QString() : "color: #c0392b;");
    for (qsizetype i = 0; i < p.images.size(); ++i) {
      auto* item = new QListWidgetItem(
          QIcon(QPixmap::fromImage(p.images[i].scaled(48, 48, Qt::KeepAspectRatio))),
          p.labels.value(i), thumbnails_);
      item->setToolTip(tr("training example %1: %2").arg(i).arg(p.labels.value(i)));
    }
    thumbnails_->setVisible(!p.images.isEmpty());
    snippet_->setPlainText(p.snippet);
    snippet_->setVisible(!p.snippet.isEmpty());
  });
  thread->start(QThread::LowPriority);
}

void DatasetCard::autoFindFashionMnist() {
  if (format_->currentData().toString() != "mnist") return;
  // Only an empty path or a Fashion-MNIST folder that is not there (a config from another
  // machine) is replaced: a missing folder of other IDX data stays, and says it is missing.
  const QString p = path_->text().trimmed();
  if (!p.isEmpty() && (QFileInfo(p).isDir() || !p.contains("fashion", Qt::CaseInsensitive))) return;
  const QString found = findFashionMnist();
  if (found.isEmpty()) return;
  const QSignalBlocker b(path_);
  path_->setText(found);
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
  autoFindFashionMnist();
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
  schedulePreview();
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
  autoFindFashionMnist();
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
    if (format_->currentData().toString() == "mnist" &&
        QFileInfo(p).absoluteFilePath() == QFileInfo(findFashionMnist()).absoluteFilePath())
      text = tr("Fashion-MNIST found (installed at %1).").arg(p);
  }
  status_->setText(text);
  status_->setStyleSheet(ok ? "color: palette(mid);" : "color: #c0392b;");
}

}  // namespace lathe::ui
