// EngineBridge: the Qt adapter over the run engine (core/run). It owns the Runners of this
// session and runs them one after another, each on its own engine thread. Engine callbacks
// only append to a locked buffer and post one drain per batch, so a fast run cannot flood the
// GUI's event loop; the drain (GUI thread) re-emits the events as signals. Nothing here blocks
// the GUI thread on training: a run's thread is joined only after its final status arrived.
//
// Why not run::RunQueue: it has no per-run pause/cancel, and cannot be restarted once it drained
// or after cancelAll(); this bridge keeps its own FIFO of Runners instead (reported to core).
#pragma once

#include <QMetaType>
#include <QObject>
#include <QString>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "core/run/Runner.h"

namespace lathe::ui {

// One training step as the charts need it.
struct StepPoint {
  qint64 step = 0, total_steps = 0;
  double epoch = 0, loss = 0, accuracy = -1, lr = 0;
  double samples_per_s = 0, tokens_per_s = 0, elapsed_s = 0;
  double memory_mb = 0, peak_memory_mb = 0;
};

struct EvalPoint {
  qint64 step = 0;
  QString split;
  double loss = 0, accuracy = -1, perplexity = -1;
};

class EngineBridge : public QObject {
  Q_OBJECT

 public:
  explicit EngineBridge(run::RunnerOptions options, QObject* parent = nullptr);
  ~EngineBridge() override;  // cancels every run, marks queued ones cancelled, joins

  const run::RunnerOptions& options() const { return options_; }

  // Creates the run's store row (status queued) and queues it; starts it when nothing runs.
  // Returns the run id. Throws lathe::Error when the store cannot be written.
  qint64 launch(const run::RunConfig& config);
  // Queues run `run_id` of the store to continue from its latest checkpoint, as `lathe-cli
  // resume` does (run::Runner::resume); its store status is queued until it starts. Throws
  // lathe::Error for a run that is unknown, done, or active in this session.
  void resumeRun(qint64 run_id);

  bool isActive(qint64 run_id) const;  // queued or running in this session
  qint64 currentRunId() const;         // the run on the engine thread; 0 when idle
  bool isPaused(qint64 run_id) const;

 public Q_SLOTS:
  void cancel(qint64 run_id);  // running: stops after its step; queued: cancelled at once
  void pause(qint64 run_id);
  void resume(qint64 run_id);
  void cancelAll();

 Q_SIGNALS:
  void runQueued(qint64 run_id);
  // status: store::statusName ("running", "done", ...); message: why (failed, cancelled).
  void statusChanged(qint64 run_id, const QString& status, const QString& message);
  void stepMetrics(qint64 run_id, const lathe::ui::StepPoint& point);
  void evalMetrics(qint64 run_id, const lathe::ui::EvalPoint& point);
  void logLine(qint64 run_id, const QString& line);
  void progress(qint64 run_id, double fraction, double eta_s);
  void summaryReady(qint64 run_id);
  void idle();  // the last queued run ended

 private:
  void onEngineEvent(const run::RunEvent& e);  // engine thread
  void drain();                                // GUI thread
  void startNext();
  void finish(qint64 run_id);

  run::RunnerOptions options_;
  std::deque<std::unique_ptr<run::Runner>> queued_;
  std::unique_ptr<run::Runner> current_;

  std::mutex mutex_;  // guards pending_ and drain_posted_
  std::vector<run::RunEvent> pending_;
  bool drain_posted_ = false;
};

}  // namespace lathe::ui

Q_DECLARE_METATYPE(lathe::ui::StepPoint)
Q_DECLARE_METATYPE(lathe::ui::EvalPoint)
