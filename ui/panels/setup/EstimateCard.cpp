#include "ui/panels/setup/EstimateCard.h"

#include <QDoubleSpinBox>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLocale>
#include <QPushButton>
#include <QThread>
#include <QVBoxLayout>
#include <cmath>

#include "ui/FormatUtil.h"

namespace lathe::ui {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
const char* const kRed = "color: #c0392b; font-weight: bold;";
const char* const kGreen = "color: #1e8449; font-weight: bold;";

// What the worker thread hands back.
struct Outcome {
  std::optional<run::Estimate> estimate;
  QString error;
  bool cancelled = false;
};

const char* tagTitle(MemoryTag t) {
  switch (t) {
    case MemoryTag::parameters: return "Parameters:";
    case MemoryTag::gradients: return "Gradients:";
    case MemoryTag::optimizer_state: return "Optimizer state:";
    case MemoryTag::activations: return "Activations:";
    case MemoryTag::workspace: return "Workspace:";
    case MemoryTag::other: return "Other:";
  }
  return "?";
}

// 850 µs, 12.3 ms, 4.56 s, then formatSeconds' minutes and hours.
QString formatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return QStringLiteral("?");
  if (s < 1e-3) return QString("%1 µs").arg(s * 1e6, 0, 'f', 0);
  if (s < 1.0) return QString("%1 ms").arg(s * 1e3, 0, 'f', s < 0.01 ? 2 : 1);
  if (s < 60.0) return QString("%1 s").arg(s, 0, 'f', s < 10 ? 2 : 1);
  return formatSeconds(s);
}

}  // namespace

EstimateCard::EstimateCard(QWidget* parent) : QGroupBox(tr("Estimate"), parent) {
  setObjectName("EstimateCard");
  auto* layout = new QVBoxLayout(this);
  auto* top = new QHBoxLayout();
  button_ = new QPushButton(tr("Estimate"), this);
  button_->setObjectName("EstimateButton");
  button_->setToolTip(
      tr("Build the run, time a few steps at two small batch sizes and extrapolate its peak "
         "memory and time to the config's batch (a few seconds, off the GUI thread)"));
  capacity_ = new QDoubleSpinBox(this);
  capacity_->setObjectName("EstimateCapacityOverride");
  capacity_->setRange(0.0, 1e7);
  capacity_->setDecimals(3);
  capacity_->setSingleStep(1.0);
  capacity_->setSuffix(tr(" GiB"));
  capacity_->setSpecialValueText(tr("this device"));
  capacity_->setToolTip(tr("plan for a machine with this much memory instead of this one"));
  top->addWidget(button_);
  top->addStretch(1);
  top->addWidget(new QLabel(tr("Plan for:"), this));
  top->addWidget(capacity_);
  layout->addLayout(top);

  verdict_ = new QLabel(this);
  verdict_->setObjectName("EstimateVerdict");
  verdict_->setWordWrap(true);
  verdict_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(verdict_);
  status_ = new QLabel(this);
  status_->setObjectName("EstimateStatus");
  status_->setWordWrap(true);
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(status_);

  figures_ = new QWidget(this);
  figures_->setObjectName("EstimateFigures");
  // Peak and capacity first, the tags two per row, then the times: compact beside the config.
  auto* grid = new QGridLayout(figures_);
  grid->setContentsMargins(0, 0, 0, 0);
  grid->setColumnStretch(1, 1);
  grid->setColumnStretch(3, 1);
  auto label = [this](const QString& name) {
    auto* l = new QLabel(figures_);
    l->setObjectName(name);
    l->setTextInteractionFlags(Qt::TextSelectableByMouse);
    l->setWordWrap(true);
    return l;
  };
  int row = 0;
  auto wide = [&](const QString& title, QLabel* value) {
    grid->addWidget(new QLabel(title, figures_), row, 0);
    grid->addWidget(value, row++, 1, 1, 3);
  };
  peak_ = label("EstimatePeak");
  wide(tr("Peak memory:"), peak_);
  capacity_info_ = label("EstimateCapacity");
  wide(tr("Capacity:"), capacity_info_);
  for (int t = 0; t < kNumMemoryTags; ++t) {
    const auto tag = static_cast<MemoryTag>(t);
    tags_[static_cast<size_t>(t)] = label(QString("EstimateTag.%1").arg(memoryTagName(tag)));
    const int r = row + t / 2, c = 2 * (t % 2);
    grid->addWidget(new QLabel(tr(tagTitle(tag)), figures_), r, c);
    grid->addWidget(tags_[static_cast<size_t>(t)], r, c + 1);
  }
  row += (kNumMemoryTags + 1) / 2;
  step_ = label("EstimateStepTime");
  wide(tr("Step time:"), step_);
  total_ = label("EstimateTotalTime");
  wide(tr("Total time:"), total_);
  note_ = label("EstimateNote");
  grid->addWidget(note_, row, 0, 1, 4);
  layout->addWidget(figures_);

  auto_timer_.setSingleShot(true);
  auto_timer_.setInterval(kAutoDelayMs);
  retry_timer_.setSingleShot(true);
  retry_timer_.setInterval(200);
  connect(&auto_timer_, &QTimer::timeout, this, &EstimateCard::start);
  connect(&retry_timer_, &QTimer::timeout, this, &EstimateCard::start);
  connect(button_, &QPushButton::clicked, this, &EstimateCard::estimateNow);
  connect(capacity_, &QDoubleSpinBox::valueChanged, this, &EstimateCard::configChanged);
  render();
}

EstimateCard::~EstimateCard() {
  if (thread_ != nullptr) {
    cancel_->store(true);
    thread_->wait();
  }
}

int64_t EstimateCard::capacityOverride() const {
  return static_cast<int64_t>(std::llround(capacity_->value() * kGiB));
}

void EstimateCard::setConfig(const std::optional<run::RunConfig>& config, const QString& why) {
  config_ = config;
  why_ = why;
  configChanged();
}

void EstimateCard::configChanged() {
  const std::string key = config_ ? config_->canonical() + "\n" + config_->base_dir + "\n" +
                                        std::to_string(capacityOverride())
                                  : std::string();
  if (key == key_ && (config_.has_value() || state_ == State::invalid)) {
    render();  // the same config (another refresh of the page): the estimate stays
    return;
  }
  key_ = key;
  ++generation_;
  if (cancel_) cancel_->store(true);  // the estimate in flight is of another config
  estimate_.reset();
  error_.clear();
  auto_timer_.stop();
  retry_timer_.stop();
  wanted_ = config_.has_value() && auto_;
  if (wanted_) auto_timer_.start();
  setState(!config_ ? State::invalid : wanted_ ? State::scheduled : State::idle);
}

bool EstimateCard::estimateNow() {
  if (!config_) return false;
  wanted_ = true;
  auto_timer_.stop();
  start();
  return true;
}

void EstimateCard::setAutoEstimate(bool on) {
  auto_ = on;
  if (!on && auto_timer_.isActive()) {
    auto_timer_.stop();
    wanted_ = false;
    setState(config_ ? State::idle : State::invalid);
  }
}

void EstimateCard::setHeld(bool held) {
  if (held == held_) return;
  held_ = held;
  if (held) {
    auto_timer_.stop();
    retry_timer_.stop();
    if (thread_ != nullptr) {
      if (thread_generation_ == generation_) wanted_ = true;  // estimate it again afterwards
      cancel_->store(true);
      thread_->wait();  // finished() follows through the event loop and drops the result
    }
    if (wanted_) setState(State::scheduled);
    return;
  }
  if (wanted_) start();
}

void EstimateCard::start() {
  if (!config_ || !wanted_ || auto_timer_.isActive()) return;
  if (held_) {
    setState(State::scheduled);
    return;
  }
  if (thread_ != nullptr) {
    // One at a time: a stale one was cancelled and finished() starts this one; the current one
    // is already being estimated.
    if (thread_generation_ != generation_) setState(State::scheduled);
    return;
  }
  if (blocker_ && blocker_()) {
    retry_timer_.start();
    setState(State::scheduled);
    return;
  }
  wanted_ = false;
  estimate_.reset();
  error_.clear();
  cancel_ = std::make_shared<std::atomic<bool>>(false);
  run::EstimateOptions options = options_;
  options.override_capacity_bytes = capacityOverride();
  auto outcome = std::make_shared<Outcome>();
  QThread* thread = QThread::create([config = *config_, options, cancel = cancel_, outcome] {
    run::EstimateOptions o = options;
    o.cancel = cancel.get();
    try {
      outcome->estimate = run::estimateRun(config, o);
    } catch (const run::EstimateCancelled&) {
      outcome->cancelled = true;
    } catch (const std::exception& e) {  // lathe::Error, and std::bad_alloc of a huge model
      outcome->error = QString::fromUtf8(e.what());
    }
  });
  thread_ = thread;
  thread_generation_ = generation_;
  const int generation = generation_;
  connect(thread, &QThread::finished, thread, &QObject::deleteLater);
  connect(thread, &QThread::finished, this, [this, generation, outcome] {
    thread_ = nullptr;
    thread_generation_ = -1;
    cancel_.reset();
    Q_EMIT runningChanged(false);
    if (generation == generation_ && !outcome->cancelled) {
      estimate_ = outcome->estimate;
      error_ = outcome->error;
      setState(estimate_ ? State::done : State::failed);
      return;
    }
    if (generation == generation_) wanted_ = true;  // cancelled by a hold: again on release
    if (wanted_)
      start();
    else
      setState(config_ ? State::idle : State::invalid);
  });
  setState(State::running);
  Q_EMIT runningChanged(true);
  thread->start(QThread::LowPriority);
}

void EstimateCard::setState(State s) {
  state_ = s;
  render();
  Q_EMIT updated();
}

QString EstimateCard::verdictText() const {
  if (!estimate_) return {};
  const run::Estimate& e = *estimate_;
  const QString peak = (e.calibrated() ? QString() : tr("at least ")) +
                       formatBytes(static_cast<double>(e.peak_bytes));
  const QString source = QString::fromStdString(e.capacity_source);
  if (e.capacity_bytes <= 0)
    return tr("Peak %1; the capacity is %2, so whether it fits is not known.").arg(peak, source);
  const QString capacity = formatBytes(static_cast<double>(e.capacity_bytes));
  if (!e.fits)
    return tr("Does not fit: the peak of %1 exceeds the capacity of %2 (%3).")
        .arg(peak, capacity, source);
  const double share =
      100.0 * static_cast<double>(e.peak_bytes) / static_cast<double>(e.capacity_bytes);
  const QString percent =
      share < 0.1 ? QString("< 0.1") : QString::number(share, 'f', share < 10 ? 1 : 0);
  return tr("Fits: a peak of %1 is %2% of the capacity of %3 (%4).")
      .arg(peak, percent, capacity, source);
}

void EstimateCard::render() {
  button_->setEnabled(config_.has_value() && state_ != State::running);
  QString status;
  QString status_style = "color: palette(mid);";
  switch (state_) {
    case State::invalid: status = tr("Not estimated: the config has an error."); break;
    case State::idle:
      status = tr("Press Estimate to size this run (peak memory, step and total time).");
      break;
    case State::scheduled:
      status = held_ ? tr("The estimate waits for the running experiment to end (both would "
                          "count in the same memory figures).")
               : retry_timer_.isActive() ? tr("The estimate waits for the dataset preview.")
                                         : tr("Estimating shortly…");
      break;
    case State::running: status = tr("Estimating… (loading the data, timing a few steps)"); break;
    case State::done: break;
    case State::failed:
      status = tr("Cannot estimate: %1").arg(error_);
      status_style = "color: #c0392b;";
      break;
  }
  status_->setText(status);
  status_->setStyleSheet(status_style);
  status_->setVisible(!status.isEmpty());

  const bool shown = state_ == State::done && estimate_.has_value();
  figures_->setVisible(shown);
  verdict_->setVisible(shown);
  if (!shown) return;
  const run::Estimate& e = *estimate_;
  verdict_->setText(verdictText());
  verdict_->setStyleSheet(e.capacity_bytes <= 0 ? QString() : e.fits ? kGreen : kRed);
  peak_->setText(
      e.calibrated()
          ? formatBytes(static_cast<double>(e.peak_bytes))
          : tr("at least %1 (a lower bound)").arg(formatBytes(static_cast<double>(e.peak_bytes))));
  for (int t = 0; t < kNumMemoryTags; ++t) {
    const int64_t b = e.tag_bytes[static_cast<size_t>(t)];
    tags_[static_cast<size_t>(t)]->setText(e.calibrated() ? formatBytes(static_cast<double>(b))
                                           : b > 0
                                               ? tr("≥ %1").arg(formatBytes(static_cast<double>(b)))
                                               : tr("not counted"));
  }
  const QString source = QString::fromStdString(e.capacity_source);
  capacity_info_->setText(
      e.capacity_bytes > 0
          ? QString("%1 (%2)").arg(formatBytes(static_cast<double>(e.capacity_bytes)), source)
          : source);
  const QLocale loc;
  if (e.calibrated()) {
    const QString batch = e.grad_accum > 1
                              ? tr("batch %1 × %2 accumulated")
                                    .arg(loc.toString(qlonglong{e.batch_size}))
                                    .arg(e.grad_accum)
                              : tr("batch %1").arg(loc.toString(qlonglong{e.batch_size}));
    step_->setText(tr("%1 per optimizer step (%2)").arg(formatDuration(e.step_time_s), batch));
    total_->setText(
        tr("%1 for %2 steps (training only; evaluation not included)")
            .arg(formatDuration(e.total_time_s), loc.toString(qlonglong{e.planned_steps})));
    QStringList cal;
    for (const run::CalibrationPoint& p : e.calibration)
      cal << tr("batch %1: peak %2, %3 per step")
                 .arg(p.batch)
                 .arg(formatBytes(static_cast<double>(p.peak)), formatDuration(p.step_time_s));
    figures_->setToolTip(tr("Calibrated at %1; linear in the batch size.").arg(cal.join("; ")));
  } else {
    step_->setText(tr("not timed"));
    total_->setText(tr("not timed"));
    figures_->setToolTip({});
  }
  QString note = QString::fromStdString(e.note);
  if (!note.isEmpty()) note[0] = note[0].toUpper();
  note_->setText(note);
  note_->setVisible(!e.note.empty());
}

}  // namespace lathe::ui
