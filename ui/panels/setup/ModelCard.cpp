#include "ui/panels/setup/ModelCard.h"

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
#include <QRegularExpression>
#include <QSpinBox>
#include <QStackedWidget>
#include <QVBoxLayout>
#include <optional>
#include <set>

#include "core/base/Error.h"
#include "core/io/ModelFile.h"
#include "core/io/Safetensors.h"
#include "core/nn/Presets.h"
#include "ui/FormatUtil.h"

namespace lathe::ui {
namespace {

enum class Kind { integer, number, list };
struct FieldSpec {
  const char* key;
  const char* label;
  Kind kind;
  double min, max;
};

struct PresetSpec {
  const char* id;
  const char* title;
  std::vector<FieldSpec> fields;
  const char* defaults;  // JSON
};

const std::array<PresetSpec, 4>& presets() {
  static const std::array<PresetSpec, 4> p{{
      {"mlp",
       "MLP",
       {{"input_dim", "Input features", Kind::integer, 1, 1 << 28},
        {"hidden", "Hidden sizes", Kind::list, 1, 1 << 20},
        {"classes", "Classes", Kind::integer, 1, 1 << 24},
        {"dropout", "Dropout", Kind::number, 0, 0.99}},
       R"({"type": "mlp", "input_dim": 784, "hidden": [256, 128], "classes": 10})"},
      {"lenet",
       "CNN (LeNet)",
       {{"in_channels", "Input channels", Kind::integer, 1, 1024},
        {"image_size", "Image size", Kind::integer, 4, 4096},
        {"classes", "Classes", Kind::integer, 1, 1 << 24},
        {"channels", "Conv channels", Kind::list, 1, 1 << 16},
        {"hidden", "Hidden sizes", Kind::list, 1, 1 << 20},
        {"dropout", "Dropout", Kind::number, 0, 0.99}},
       R"({"type": "cnn", "variant": "lenet", "in_channels": 1, "image_size": 28,
           "classes": 10, "channels": [32, 64], "hidden": [128]})"},
      {"resnet",
       "CNN (ResNet)",
       {{"in_channels", "Input channels", Kind::integer, 1, 1024},
        {"image_size", "Image size", Kind::integer, 4, 4096},
        {"classes", "Classes", Kind::integer, 1, 1 << 24},
        {"widths", "Stage widths", Kind::list, 1, 1 << 16},
        {"blocks", "Blocks per stage", Kind::list, 1, 1024}},
       R"({"type": "cnn", "variant": "resnet", "in_channels": 3, "image_size": 32,
           "classes": 10, "widths": [16, 32, 64], "blocks": [2, 2, 2]})"},
      {"gpt",
       "GPT (decoder transformer)",
       {{"vocab_size", "Vocabulary", Kind::integer, 2, 1 << 24},
        {"block_size", "Context length", Kind::integer, 1, 1 << 20},
        {"n_layer", "Layers", Kind::integer, 1, 1024},
        {"n_head", "Heads", Kind::integer, 1, 1024},
        {"d_model", "Model width", Kind::integer, 1, 1 << 16},
        {"dropout", "Dropout", Kind::number, 0, 0.99}},
       R"({"type": "gpt", "vocab_size": 256, "block_size": 128, "n_layer": 4, "n_head": 4,
           "d_model": 128})"},
  }};
  return p;
}

int presetOf(const nlohmann::json& spec) {
  const std::string type = spec.value("type", "");
  if (type == "mlp") return 0;
  if (type == "gpt") return 3;
  if (type == "resnet" || (type == "cnn" && spec.value("variant", "lenet") == "resnet")) return 2;
  if (type == "lenet" || type == "cnn") return 1;
  return -1;
}

QString listText(const nlohmann::json& v) {
  QStringList parts;
  if (v.is_array())
    for (const auto& x : v) parts << QString::fromStdString(x.dump());
  return parts.join(", ");
}

}  // namespace

ModelCard::ModelCard(QWidget* parent) : QGroupBox(tr("Model"), parent) {
  setObjectName("ModelCard");
  auto* layout = new QVBoxLayout(this);
  preset_ = new QComboBox(this);
  preset_->setObjectName("ModelPreset");
  pages_ = new QStackedWidget(this);
  for (int i = 0; i < kPresets; ++i) {
    const PresetSpec& p = presets()[static_cast<size_t>(i)];
    preset_->addItem(tr(p.title), QString(p.id));
    base_[static_cast<size_t>(i)] = nlohmann::json::parse(p.defaults);
    auto* page = new QWidget(pages_);
    auto* form = new QFormLayout(page);
    form->setContentsMargins(0, 0, 0, 0);
    for (const FieldSpec& f : p.fields) {
      QWidget* w = nullptr;
      const QString name = QString("model.%1.%2").arg(p.id, f.key);
      if (f.kind == Kind::integer) {
        auto* s = new QSpinBox(page);
        s->setRange(static_cast<int>(f.min), static_cast<int>(f.max));
        s->setGroupSeparatorShown(true);
        connect(s, &QSpinBox::valueChanged, this, &ModelCard::analyze);
        w = s;
      } else if (f.kind == Kind::number) {
        auto* s = new QDoubleSpinBox(page);
        s->setRange(f.min, f.max);
        s->setDecimals(3);
        s->setSingleStep(0.05);
        connect(s, &QDoubleSpinBox::valueChanged, this, &ModelCard::analyze);
        w = s;
      } else {
        auto* e = new QLineEdit(page);
        e->setPlaceholderText(tr("comma-separated, e.g. 256, 128"));
        connect(e, &QLineEdit::textChanged, this, &ModelCard::analyze);
        w = e;
      }
      w->setObjectName(name);
      form->addRow(tr(f.label) + ":", w);
    }
    pages_->addWidget(page);
  }
  connect(preset_, &QComboBox::currentIndexChanged, this, [this](int i) {
    pages_->setCurrentIndex(i);
    file_info_->hide();  // another architecture than the file's
    analyze();
  });
  auto* top = new QHBoxLayout();
  top->addWidget(new QLabel(tr("Preset:"), this));
  top->addWidget(preset_, 1);
  layout->addLayout(top);
  auto* file_row = new QHBoxLayout();
  auto* open = new QPushButton(tr("Open model file…"), this);
  open->setObjectName("ModelOpenFile");
  open->setToolTip(
      tr("A Lathe model file (.safetensors with the architecture spec) or any "
         "safetensors file"));
  connect(open, &QPushButton::clicked, this, &ModelCard::browse);
  file_row->addWidget(open);
  file_row->addStretch(1);
  layout->addLayout(file_row);
  layout->addWidget(pages_);
  info_ = new QLabel(this);
  info_->setObjectName("ModelInfo");
  info_->setWordWrap(true);
  info_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  error_ = new QLabel(this);
  error_->setObjectName("ModelError");
  error_->setWordWrap(true);
  error_->setStyleSheet("color: #c0392b;");
  file_info_ = new QLabel(this);
  file_info_->setObjectName("ModelFileInfo");
  file_info_->setWordWrap(true);
  file_info_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  file_info_->hide();
  layout->addWidget(info_);
  layout->addWidget(file_info_);
  layout->addWidget(error_);
  for (int i = 0; i < kPresets; ++i) fillPage(i);
  setSpec(base_[1]);
}

QWidget* ModelCard::field(int preset, const char* key) const {
  return pages_->widget(preset)->findChild<QWidget*>(
      QString("model.%1.%2").arg(presets()[static_cast<size_t>(preset)].id, key));
}

void ModelCard::fillPage(int i) {
  const nlohmann::json& b = base_[static_cast<size_t>(i)];
  for (const FieldSpec& f : presets()[static_cast<size_t>(i)].fields) {
    QWidget* w = field(i, f.key);
    nlohmann::json v = b.contains(f.key) ? b[f.key] : nlohmann::json();
    if (auto* s = qobject_cast<QSpinBox*>(w)) {
      QSignalBlocker sb(s);
      s->setValue(v.is_number() ? v.get<int>() : static_cast<int>(f.min));
    } else if (auto* d = qobject_cast<QDoubleSpinBox*>(w)) {
      QSignalBlocker sb(d);
      d->setValue(v.is_number() ? v.get<double>() : 0.0);
    } else if (auto* e = qobject_cast<QLineEdit*>(w)) {
      QSignalBlocker sb(e);
      e->setText(listText(v));
    }
  }
}

void ModelCard::setSpec(const nlohmann::json& spec) {
  int i = presetOf(spec);
  if (i < 0) {
    error_->setText(tr("Unknown model type in the config: %1")
                        .arg(QString::fromStdString(spec.value("type", "?"))));
    i = 0;
  } else {
    base_[static_cast<size_t>(i)] = spec;
  }
  fillPage(i);
  {
    QSignalBlocker sb(preset_);
    preset_->setCurrentIndex(i);
    pages_->setCurrentIndex(i);
  }
  analyze();
}

nlohmann::json ModelCard::spec() const {
  const int i = preset_->currentIndex();
  nlohmann::json s = base_[static_cast<size_t>(i)];
  const PresetSpec& p = presets()[static_cast<size_t>(i)];
  s["type"] = i == 0 ? "mlp" : i == 3 ? "gpt" : "cnn";
  if (i == 1) s["variant"] = "lenet";
  if (i == 2) s["variant"] = "resnet";
  for (const FieldSpec& f : p.fields) {
    QWidget* w = field(i, f.key);
    if (auto* sp = qobject_cast<QSpinBox*>(w)) {
      s[f.key] = sp->value();
    } else if (auto* d = qobject_cast<QDoubleSpinBox*>(w)) {
      s[f.key] = d->value();
    } else if (auto* e = qobject_cast<QLineEdit*>(w)) {
      // Kept as text when it is not a list of integers: the spec check then names the field.
      std::optional<nlohmann::json> list = parseIntList(e->text());
      s[f.key] = list ? *list : nlohmann::json(e->text().toStdString());
    }
  }
  return s;
}

void ModelCard::analyze() {
  try {
    const ModelInfo m = analyzeModelSpec(spec());
    valid_ = true;
    error_->clear();
    info_->setText(tr("%1 parameters (%2 trainable), %3 as f32\n"
                      "%4 per %5 forward, %6 per %5 in training")
                       .arg(formatCount(static_cast<double>(m.params)),
                            formatCount(static_cast<double>(m.trainable_params)),
                            formatBytes(4.0 * static_cast<double>(m.params)),
                            formatFlops(m.forward_flops), QString::fromStdString(m.flops_per),
                            formatFlops(m.train_flops)));
    info_->setToolTip(QString::fromStdString(m.flops_formula));
  } catch (const std::exception& e) {
    valid_ = false;
    info_->clear();
    error_->setText(QString::fromUtf8(e.what()));
  }
  Q_EMIT changed();
}

}  // namespace lathe::ui

namespace lathe::ui {

void ModelCard::browse() {
  auto* dialog = new QFileDialog(this, tr("Open model file"));
  dialog->setObjectName("ModelFileDialog");
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->setFileMode(QFileDialog::ExistingFile);
  dialog->setNameFilter(tr("Model files (*.safetensors);;All files (*)"));
  connect(dialog, &QFileDialog::fileSelected, this, &ModelCard::openModelFile);
  dialog->open();
}

bool ModelCard::openModelFile(const QString& path) {
  const QFileInfo fi(path);
  try {
    // The header only: the weights are not read, so a large file opens at once.
    const SafetensorsReader reader(path.toStdString());
    int64_t stored = 0;
    std::set<std::string> dtypes;
    for (const SafetensorsEntry& e : reader.entries()) {
      stored += shapeNumel(e.shape);
      dtypes.insert(e.dtype_name);
    }
    QStringList dtype_list;
    for (const std::string& d : dtypes) dtype_list << QString::fromStdString(d);
    const QString sizes = tr("%1 tensors, %2 parameters stored (%3), %4 on disk")
                              .arg(reader.entries().size())
                              .arg(formatCount(static_cast<double>(stored)), dtype_list.join(", "),
                                   formatBytes(static_cast<double>(fi.size())));
    QString text;
    if (reader.metadata().count(kModelSpecKey) != 0) {
      const nlohmann::json spec = readModelSpec(path.toStdString());
      if (presetOf(spec) < 0)
        throw Error(path.toStdString() + ": model type '" + spec.value("type", "?") +
                    "' has no preset in the workbench");
      setSpec(spec);
      QString check;
      if (valid_) {
        const ModelInfo m = analyzeModelSpec(spec);
        if (m.params != stored)
          check = tr(" The spec has %1 parameters: the file holds a changed model (a method's "
                     "factors or masks).")
                      .arg(formatCount(static_cast<double>(m.params)));
      }
      text = tr("<b>%1</b>: Lathe model, %2.%3 A run trains this architecture from fresh "
                "weights.")
                 .arg(fi.fileName().toHtmlEscaped(), sizes, check);
    } else {
      text = tr("<b>%1</b>: safetensors without a Lathe architecture spec: %2. Pick the matching "
                "preset to train this architecture.")
                 .arg(fi.fileName().toHtmlEscaped(), sizes);
    }
    file_info_->setText(text);
    file_info_->setToolTip(fi.absoluteFilePath());
    file_info_->show();
  } catch (const std::exception& e) {
    error_->setText(QString::fromUtf8(e.what()));
    file_info_->hide();
    return false;
  }
  Q_EMIT fileOpened(fi.absoluteFilePath());
  return true;
}

}  // namespace lathe::ui
