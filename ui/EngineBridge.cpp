#include "ui/EngineBridge.h"

#include <QMetaObject>

#include "core/base/Error.h"

namespace lathe::ui {
namespace {

bool isFinal(store::Status s) {
  return s == store::Status::done || s == store::Status::failed || s == store::Status::cancelled ||
         s == store::Status::interrupted;
}

StepPoint toPoint(const train::StepMetrics& m) {
  StepPoint p;
  p.step = m.step;
  p.total_steps = m.total_steps;
  p.epoch = m.epoch;
  p.loss = m.loss;
  p.accuracy = m.accuracy;
  p.lr = m.lr;
  p.samples_per_s = m.samples_per_s;
  p.tokens_per_s = m.tokens_per_s;
  p.elapsed_s = m.elapsed_s;
  p.memory_mb = static_cast<double>(m.memory.current) / (1 << 20);
  p.peak_memory_mb = static_cast<double>(m.memory.peak) / (1 << 20);
  return p;
}

}  // namespace

EngineBridge::EngineBridge(run::RunnerOptions options, QObject* parent)
    : QObject(parent), options_(std::move(options)) {
  if (options_.db_path.empty()) options_.db_path = store::RunStore::defaultPath();
  qRegisterMetaType<StepPoint>();
  qRegisterMetaType<EvalPoint>();
}

EngineBridge::~EngineBridge() {
  // Queued runs never started: record them as cancelled so the store shows no stale rows.
  if (!queued_.empty()) {
    try {
      store::RunStore db(options_.db_path);
      for (auto& r : queued_)
        db.setStatus(r->runId(), store::Status::cancelled, "the workbench was closed");
    } catch (const std::exception&) {
      // The store is gone; the runs stay queued there, which resume can handle.
    }
  }
  queued_.clear();
  if (current_) {
    current_->cancel();
    current_->wait();
  }
}

qint64 EngineBridge::launch(const run::RunConfig& config) {
  auto runner = std::make_unique<run::Runner>(config, options_);
  runner->subscribe([this](const run::RunEvent& e) { onEngineEvent(e); });
  const qint64 id = runner->runId();
  queued_.push_back(std::move(runner));
  Q_EMIT runQueued(id);
  if (!current_) startNext();
  return id;
}

void EngineBridge::resumeRun(qint64 run_id) {
  if (isActive(run_id))
    throw Error("run " + std::to_string(run_id) + " is already queued or running");
  std::unique_ptr<run::Runner> runner = run::Runner::resume(run_id, options_);
  runner->subscribe([this](const run::RunEvent& e) { onEngineEvent(e); });
  {
    store::RunStore db(options_.db_path);
    db.setStatus(run_id, store::Status::queued, "resume queued");
  }
  queued_.push_back(std::move(runner));
  Q_EMIT runQueued(run_id);
  Q_EMIT statusChanged(run_id, "queued", tr("resume queued"));
  if (!current_) startNext();
}

bool EngineBridge::isActive(qint64 run_id) const {
  if (current_ && current_->runId() == run_id) return true;
  for (const auto& r : queued_)
    if (r->runId() == run_id) return true;
  return false;
}

qint64 EngineBridge::currentRunId() const {
  return current_ ? current_->runId() : 0;
}

bool EngineBridge::isPaused(qint64 run_id) const {
  return current_ && current_->runId() == run_id && current_->status() == store::Status::paused;
}

void EngineBridge::cancel(qint64 run_id) {
  if (current_ && current_->runId() == run_id) {
    current_->cancel();
    return;
  }
  for (auto it = queued_.begin(); it != queued_.end(); ++it) {
    if ((*it)->runId() != run_id) continue;
    queued_.erase(it);
    const QString why = tr("cancelled before it started");
    try {
      store::RunStore db(options_.db_path);
      db.setStatus(run_id, store::Status::cancelled, why.toStdString());
    } catch (const std::exception& e) {
      Q_EMIT logLine(run_id, tr("could not record the cancellation: %1").arg(e.what()));
    }
    Q_EMIT statusChanged(run_id, "cancelled", why);
    return;
  }
}

void EngineBridge::pause(qint64 run_id) {
  if (current_ && current_->runId() == run_id) current_->pause();
}

void EngineBridge::resume(qint64 run_id) {
  if (current_ && current_->runId() == run_id) current_->unpause();
}

void EngineBridge::cancelAll() {
  while (!queued_.empty()) cancel(queued_.back()->runId());
  if (current_) current_->cancel();
}

void EngineBridge::onEngineEvent(const run::RunEvent& e) {
  bool post = false;
  {
    std::lock_guard<std::mutex> l(mutex_);
    pending_.push_back(e);
    post = !drain_posted_;
    drain_posted_ = true;
  }
  if (post) QMetaObject::invokeMethod(this, &EngineBridge::drain, Qt::QueuedConnection);
}

void EngineBridge::drain() {
  std::vector<run::RunEvent> events;
  {
    std::lock_guard<std::mutex> l(mutex_);
    events.swap(pending_);
    drain_posted_ = false;
  }
  // Only the newest progress of a batch matters.
  int last_progress = -1;
  for (size_t i = 0; i < events.size(); ++i)
    if (events[i].type == run::EventType::progress) last_progress = static_cast<int>(i);
  for (size_t i = 0; i < events.size(); ++i) {
    const run::RunEvent& e = events[i];
    switch (e.type) {
      case run::EventType::step: Q_EMIT stepMetrics(e.run_id, toPoint(e.step)); break;
      case run::EventType::eval: {
        EvalPoint p;
        p.step = e.eval.step;
        p.split = QString::fromStdString(e.eval.split);
        p.loss = e.eval.loss;
        p.accuracy = e.eval.accuracy;
        p.perplexity = e.eval.perplexity;
        Q_EMIT evalMetrics(e.run_id, p);
        break;
      }
      case run::EventType::log: Q_EMIT logLine(e.run_id, QString::fromStdString(e.message)); break;
      case run::EventType::progress:
        if (static_cast<int>(i) == last_progress) Q_EMIT progress(e.run_id, e.progress, e.eta_s);
        break;
      case run::EventType::summary: Q_EMIT summaryReady(e.run_id); break;
      case run::EventType::status:
        Q_EMIT statusChanged(e.run_id, store::statusName(e.status),
                             QString::fromStdString(e.message));
        if (isFinal(e.status)) finish(e.run_id);
        break;
    }
  }
}

void EngineBridge::finish(qint64 run_id) {
  if (!current_ || current_->runId() != run_id) return;
  // The final status is the runner's last act; its thread is returning now.
  current_->wait();
  current_.reset();
  startNext();
  if (!current_) Q_EMIT idle();
}

void EngineBridge::startNext() {
  if (current_ || queued_.empty()) return;
  current_ = std::move(queued_.front());
  queued_.pop_front();
  current_->start();
}

}  // namespace lathe::ui
