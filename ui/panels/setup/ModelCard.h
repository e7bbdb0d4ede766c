// Model card of the Setup tab: a preset (MLP, LeNet-style CNN, CIFAR ResNet, GPT) with its main
// fields as spin boxes and lists, and a live summary of parameters and FLOPs computed from the
// spec without building the model (analyzeModelSpec). Spec fields the form does not show (a
// kernel size, a norm kind, ...) are kept from the spec last set, so a loaded config survives.
// "Open model file…" reads a Lathe model file (safetensors with the architecture spec in its
// metadata: the preset and its fields are filled from it) or any safetensors file (its tensors,
// parameters and bytes are shown; the preset stays). A run trains that architecture from fresh
// weights: run configs take no initial weights.
#pragma once

#include <QGroupBox>
#include <array>
#include <nlohmann/json.hpp>

class QComboBox;
class QLabel;
class QStackedWidget;

namespace lathe::ui {

class ModelCard : public QGroupBox {
  Q_OBJECT

 public:
  explicit ModelCard(QWidget* parent = nullptr);

  void setSpec(const nlohmann::json& spec);  // picks the preset and fills its fields
  nlohmann::json spec() const;               // the model object of the run config
  bool isValid() const { return valid_; }    // the last analysis succeeded
  // Reads a model file as above; false with the error shown in the card.
  bool openModelFile(const QString& path);

 Q_SIGNALS:
  void changed();
  void fileOpened(const QString& path);  // a model file was read (for the recent files)

 private:
  static constexpr int kPresets = 4;  // mlp, lenet, resnet, gpt
  void analyze();
  void browse();
  void fillPage(int preset);  // the preset's widgets from base_
  QWidget* field(int preset, const char* key) const;

  QComboBox* preset_ = nullptr;
  QStackedWidget* pages_ = nullptr;
  QLabel* info_ = nullptr;
  QLabel* error_ = nullptr;
  QLabel* file_info_ = nullptr;
  std::array<nlohmann::json, kPresets> base_;
  bool valid_ = false;
};

}  // namespace lathe::ui
