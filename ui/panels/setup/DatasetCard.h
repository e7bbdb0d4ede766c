// Dataset and training card of the Setup tab: format, path (with a file or folder picker),
// validation fraction, batch size, epochs / step budget, learning-rate schedule and warmup. Fields
// the form does not show (normalize, augment, tokenizer, limits) are kept from the spec last set
// while the format stays the same.
//
// Preview: after each change (debounced) the data set is loaded on a worker thread exactly as a
// run would load it (data::loadDataset) and the card shows the split sizes, the input shape and
// classes, thumbnails with labels of the first kPreviewImages training images, or a snippet of
// the file for text and CSV. A newer request supersedes an older one; the GUI never waits for a
// load, except the destructor for one in flight. Fashion-MNIST is found where it is installed
// (findFashionMnist) when the MNIST format has no path, or a Fashion-MNIST path that is missing.
#pragma once

#include <QGroupBox>
#include <QPointer>
#include <QTimer>
#include <nlohmann/json.hpp>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QPlainTextEdit;
class QSpinBox;
class QThread;

namespace lathe::ui {

class DatasetCard : public QGroupBox {
  Q_OBJECT

 public:
  static constexpr int kPreviewImages = 16;

  explicit DatasetCard(QWidget* parent = nullptr);
  ~DatasetCard() override;

  // The first Fashion-MNIST folder (train-images-idx3-ubyte[.gz] inside) among the usual places:
  // /usr/share/datasets/fashion-mnist, /usr/local/share/datasets/fashion-mnist,
  // $XDG_DATA_HOME/lathe/datasets/fashion-mnist, ~/.local/share/lathe/datasets/fashion-mnist;
  // empty when none.
  static QString findFashionMnist();
  // Whether a preview load is scheduled or running.
  bool previewPending() const;
  // Who holds the previews back (see setPreviewHeld).
  enum class PreviewHold { run = 1, estimate = 2 };
  // While held by anyone, no preview load starts (one asked for waits until every hold is
  // released): the CPU allocator's byte counters are process-wide, so a preview loaded during a
  // run or a pre-launch estimate would show in its memory figures. The main window holds
  // previews while the engine runs, the Setup tab while an estimate runs.
  void setPreviewHeld(bool held, PreviewHold who = PreviewHold::run);
  bool previewHeld() const { return preview_holds_ != 0; }

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
  void schedulePreview();
  void startPreview();
  void autoFindFashionMnist();

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
  QLabel* sizes_ = nullptr;
  QListWidget* thumbnails_ = nullptr;
  QPlainTextEdit* snippet_ = nullptr;
  QTimer preview_timer_;
  QPointer<QThread> preview_thread_;
  int preview_generation_ = 0;
  int preview_holds_ = 0;  // PreviewHold bits
  bool preview_waiting_ = false;
  nlohmann::json previewed_;  // the spec of the last preview started
  nlohmann::json base_dataset_ = nlohmann::json::object();
  nlohmann::json base_training_ = nlohmann::json::object();
};

}  // namespace lathe::ui
