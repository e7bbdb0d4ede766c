// Dataset and training card of the Setup tab: format, path (with a file or folder picker),
// validation fraction, batch size, epochs / step budget, learning-rate schedule and warmup. Fields
// the form does not show (normalize, augment, tokenizer, limits) are kept from the spec last set
// while the format stays the same.
#pragma once

#include <QGroupBox>
#include <nlohmann/json.hpp>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QSpinBox;

namespace lathe::ui {

class DatasetCard : public QGroupBox {
  Q_OBJECT

 public:
  explicit DatasetCard(QWidget* parent = nullptr);

  // The dataset and training objects of a run config.
  void setSpecs(const nlohmann::json& dataset, const nlohmann::json& training);
  nlohmann::json dataset() const;
  nlohmann::json training() const;

 Q_SIGNALS:
  void changed();

 private:
  void browse();
  void formatChanged();
  void updateStatus();

  QComboBox* format_ = nullptr;
  QLineEdit* path_ = nullptr;
  QLineEdit* targets_ = nullptr;  // npy only
  QLabel* targets_label_ = nullptr;
  QLabel* status_ = nullptr;
  QDoubleSpinBox* val_fraction_ = nullptr;
  QSpinBox* batch_size_ = nullptr;
  QSpinBox* epochs_ = nullptr;
  QSpinBox* max_steps_ = nullptr;
  QComboBox* schedule_ = nullptr;
  QSpinBox* warmup_ = nullptr;
  nlohmann::json base_dataset_ = nlohmann::json::object();
  nlohmann::json base_training_ = nlohmann::json::object();
};

}  // namespace lathe::ui
