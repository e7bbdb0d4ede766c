// Setup tab: composes the model card, the data and training card, the method panels and the
// hardware card (the devices of the registered backends) into one RunConfig draft, shows its
// canonical JSON (RunConfig::parse) or the first error, and enables Launch only for a config that
// parses with no method conflict. The estimate card sizes the valid config before launch; when
// its estimate of the config on screen says "does not fit", Launch asks first
// (DoesNotFitDialog). An estimate and a dataset preview never run side by side (both count in
// the process-wide allocator's figures).
#pragma once

#include <QTimer>
#include <QWidget>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/run/RunConfig.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QPushButton;

namespace lathe::ui {

class DatasetCard;
class EstimateCard;
class MethodsCard;
class ModelCard;

class SetupPanel : public QWidget {
  Q_OBJECT

 public:
  explicit SetupPanel(QWidget* parent = nullptr);

  // Fills every card from a run config (JSON as in resources/examples); unknown pieces stay in
  // the draft as they are.
  void setConfig(const nlohmann::json& config);
  // The draft as the cards say it, before validation.
  nlohmann::json draft() const;
  // The validated config, or nullopt with the first error in `error`.
  std::optional<run::RunConfig> currentConfig(QString* error = nullptr) const;
  bool canLaunch() const;
  ModelCard* modelCard() const { return model_; }
  DatasetCard* datasetCard() const { return dataset_; }
  EstimateCard* estimateCard() const { return estimate_; }
  // The config of resources/examples/fashion_cnn.json (the first-start experiment).
  static nlohmann::json defaultConfig();

 Q_SIGNALS:
  // Launch was pressed for a valid config (and confirmed when its estimate does not fit).
  void launchRequested();

 public Q_SLOTS:
  void refreshNow();  // re-validates at once (otherwise debounced after each edit)

 private:
  void scheduleRefresh();
  void requestLaunch();

  QLineEdit* name_ = nullptr;
  QComboBox* device_ = nullptr;
  ModelCard* model_ = nullptr;
  DatasetCard* dataset_ = nullptr;
  MethodsCard* methods_ = nullptr;
  EstimateCard* estimate_ = nullptr;
  QPlainTextEdit* json_ = nullptr;
  QLabel* error_ = nullptr;
  QLabel* hw_info_ = nullptr;
  QPushButton* launch_ = nullptr;
  nlohmann::json base_ = nlohmann::json::object();
  QTimer refresh_timer_;
};

}  // namespace lathe::ui
