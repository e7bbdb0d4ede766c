// Estimate card of the Setup tab: the pre-launch estimate (run::estimateRun) of the config on
// screen: peak memory by tag against the device's capacity (or a smaller one the user plans
// for), the step and total time, and a fits / "does not fit" verdict. Estimates start from the
// Estimate button, and by themselves kAutoDelayMs after the last edit of a valid config.
//
// Threading: one estimate at a time, on a worker thread (it loads the data and times steps: a
// few seconds). Each change of the config on screen or of the planned capacity bumps a
// generation, cancels the estimate in flight (EstimateOptions::cancel) and clears the shown
// one; a result whose generation is not the current one is dropped, so the card never shows the
// estimate of a config that is no longer on screen. The GUI never waits for an estimate, except
// setHeld(true) and the destructor, for one already cancelled (at most one training step).
#pragma once

#include <QGroupBox>
#include <QPointer>
#include <QTimer>
#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/run/Estimate.h"
#include "core/run/RunConfig.h"

class QDoubleSpinBox;
class QLabel;
class QPushButton;
class QThread;

namespace lathe::ui {

class EstimateCard : public QGroupBox {
  Q_OBJECT

 public:
  static constexpr int kAutoDelayMs = 1000;
  enum class State {
    invalid,    // the config on screen does not validate: nothing to estimate
    idle,       // valid, not estimated (auto estimates off, or not asked yet)
    scheduled,  // an estimate will start (debounce, or waiting for a hold or the preview)
    running,    // the estimate of the config on screen is being computed
    done,       // estimate() is the config on screen's
    failed,     // the estimate threw; errorText() says why
  };

  explicit EstimateCard(QWidget* parent = nullptr);
  ~EstimateCard() override;  // cancels an estimate in flight and joins its thread

  // The config on screen; nullopt when it does not validate (`why` is shown). Another config
  // than the last one makes the shown estimate stale and, with auto estimates on, schedules one.
  void setConfig(const std::optional<run::RunConfig>& config, const QString& why = {});
  // Estimates the config on screen as soon as possible (the Estimate button); false when the
  // config is invalid.
  bool estimateNow();

  State state() const { return state_; }
  // The estimate of the config on screen (state done), else nullopt.
  const std::optional<run::Estimate>& estimate() const { return estimate_; }
  // The last estimate of the config on screen says it does not fit.
  bool doesNotFit() const { return estimate_.has_value() && !estimate_->fits; }
  QString errorText() const { return error_; }
  // A sentence naming the peak and the capacity (the verdict's text); empty before an estimate.
  QString verdictText() const;

  void setAutoEstimate(bool on);
  bool autoEstimate() const { return auto_; }
  // The capacity planned for in bytes (the spin box, in GiB); 0: the device's memory.
  int64_t capacityOverride() const;
  // While held (a run trains) no estimate starts: the CPU allocator's counters are process-wide
  // and the estimate resets their peaks, so a run and an estimate side by side would spoil each
  // other's memory figures. Holding cancels an estimate in flight and waits for its thread; on
  // release an estimate asked for meanwhile starts.
  void setHeld(bool held);
  bool held() const { return held_; }
  // While `blocker` answers true, an estimate waits to start (the dataset preview is loading).
  void setStartBlocker(std::function<bool()> blocker) { blocker_ = std::move(blocker); }
  // Calibration options for the next estimates (tests make them short); the capacity and the
  // cancel flag are the card's own.
  void setOptions(const run::EstimateOptions& options) { options_ = options; }

 Q_SIGNALS:
  void runningChanged(bool running);  // the worker thread started / ended
  void updated();                     // state() or estimate() changed

 private:
  void configChanged();
  void start();
  void render();  // the widgets from state_, estimate_, error_
  void setState(State s);

  QDoubleSpinBox* capacity_ = nullptr;
  QPushButton* button_ = nullptr;
  QLabel* status_ = nullptr;
  QLabel* verdict_ = nullptr;
  QWidget* figures_ = nullptr;
  std::array<QLabel*, kNumMemoryTags> tags_{};
  QLabel* peak_ = nullptr;
  QLabel* capacity_info_ = nullptr;
  QLabel* step_ = nullptr;
  QLabel* total_ = nullptr;
  QLabel* note_ = nullptr;

  std::optional<run::RunConfig> config_;
  std::string key_;  // canonical config, base folder and planned capacity
  QString why_;      // why the config is invalid
  State state_ = State::invalid;
  std::optional<run::Estimate> estimate_;
  QString error_;
  bool auto_ = true, held_ = false, wanted_ = false;
  int generation_ = 0;
  QTimer auto_timer_, retry_timer_;
  QPointer<QThread> thread_;
  int thread_generation_ = -1;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::function<bool()> blocker_;
  run::EstimateOptions options_;
};

}  // namespace lathe::ui
