// Runner: one run of a RunConfig on a background thread (or the caller's): build the data and
// the model, apply the methods, train, evaluate, measure, checkpoint, export, and record all of
// it in the RunStore. Subscribers get typed events on the runner's thread (the GUI's adapter
// turns them into queued signals). cancel() and pause() act between two steps. A run that
// throws ends as failed with its message and the process goes on; a cancelled run keeps a
// checkpoint and can be resumed, as can one whose process died (the store marks it
// interrupted).
//
// Files of run N live in <runs_dir>/<N>/: checkpoint.safetensors (resume state) and
// model.safetensors (the trained model, the artifact `lathe-cli export` copies).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/run/RunConfig.h"
#include "core/store/RunStore.h"

namespace lathe::run {

enum class EventType { status, step, eval, log, progress, summary };

struct RunEvent {
  EventType type = EventType::log;
  int64_t run_id = 0;
  store::Status status = store::Status::queued;        // status events
  std::string message;                                 // status (why) and log events
  train::StepMetrics step;                             // step events
  train::EvalMetrics eval;                             // eval events
  double progress = 0;                                 // progress: fraction of steps done
  double eta_s = -1;                                   // progress: seconds left (-1 unknown)
  std::map<std::string, store::SummaryValue> summary;  // summary event (the run's figures)
};

struct RunnerOptions {
  std::string db_path;   // empty: RunStore::defaultPath()
  std::string runs_dir;  // empty: "runs" next to the database
  std::string experiment = "default";
  int64_t metric_every = 1;  // store every k-th step's metrics
  bool save_model = true;    // write model.safetensors at the end
  int latency_repeats = 20;  // inference timings per batch size (median)
};

class Runner {
 public:
  // A new run: the store row is created now (status queued).
  Runner(RunConfig config, RunnerOptions options);
  // Continues run `run_id` of the store from its latest checkpoint (or from the start when it
  // has none). Throws when the run is unknown or already done.
  static std::unique_ptr<Runner> resume(int64_t run_id, RunnerOptions options);
  ~Runner();  // cancels and joins a running thread

  int64_t runId() const { return run_id_; }
  const RunConfig& config() const { return config_; }
  std::string runDir() const;

  // Subscribe before start(); callbacks run on the runner's thread.
  void subscribe(std::function<void(const RunEvent&)> fn);

  void start();    // on a background thread
  void runHere();  // on the calling thread (the CLI)
  void cancel();   // the run stops after the current step, keeping a checkpoint
  void pause();
  void unpause();
  store::Status wait();  // joins the thread; the final status
  store::Status status() const { return status_.load(); }

 private:
  Runner() = default;
  void execute();
  void emit(const RunEvent& e);
  void setStatus(store::RunStore& db, store::Status s, const std::string& message = "");

  RunConfig config_;
  RunnerOptions options_;
  int64_t run_id_ = 0;
  bool resuming_ = false;
  std::vector<std::function<void(const RunEvent&)>> subscribers_;
  std::thread thread_;
  std::atomic<store::Status> status_{store::Status::queued};
  std::atomic<bool> cancel_{false};
  std::mutex pause_mutex_;
  std::condition_variable pause_cv_;
  bool paused_ = false;
};

// Runs queued configs one after another on one background thread.
class RunQueue {
 public:
  explicit RunQueue(RunnerOptions options);
  ~RunQueue();
  // Adds a run (its store row is created as queued at once); returns its id.
  int64_t add(RunConfig config);
  void subscribe(std::function<void(const RunEvent&)> fn);
  void start();
  void cancelAll();  // the current run stops after its step; queued ones are cancelled
  void wait();       // until the queue is empty

 private:
  void loop();
  RunnerOptions options_;
  std::vector<std::function<void(const RunEvent&)>> subscribers_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Runner>> pending_;
  Runner* current_ = nullptr;
  bool stop_ = false, started_ = false;
  std::thread thread_;
};

// Median inference time in seconds of `model` on `batch` copies of one example of `input_shape`
// (a warm-up first), used for the latency figures.
double measureLatency(Module& model, const Shape& input_shape, bool integer_input, int64_t vocab,
                      int64_t batch, int repeats, Device device);

}  // namespace lathe::run
