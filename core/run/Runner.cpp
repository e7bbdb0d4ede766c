#include "core/run/Runner.h"

#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/autograd/Autograd.h"
#include "core/backend/Backend.h"
#include "core/base/Error.h"
#include "core/data/DatasetSpec.h"
#include "core/io/ModelFile.h"
#include "core/methods/Method.h"
#include "core/ops/Ops.h"
#include "core/run/Build.h"
#include "core/tensor/Random.h"

namespace lathe::run {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string fileCrc32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uLong crc = crc32(0L, Z_NULL, 0);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = in.gcount();
    if (n > 0) crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(n));
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08lx", static_cast<unsigned long>(crc));
  return std::string("crc32:") + hex;
}

std::string resolvedDb(const RunnerOptions& o) {
  return o.db_path.empty() ? store::RunStore::defaultPath() : o.db_path;
}

}  // namespace

double measureLatency(Module& model, const Shape& input_shape, bool integer_input, int64_t vocab,
                      int64_t batch, int repeats, Device device) {
  NoGradGuard g;
  Shape shape = input_shape;
  shape.insert(shape.begin(), batch);
  Tensor x = integer_input ? randint(0, std::max<int64_t>(vocab, 1), shape, device)
                           : randn(shape, DType::f32, device);
  auto sync = [&] {
    if (device.type != DeviceType::cpu) backendFor(device.type).synchronize(device.index);
  };
  const bool was_training = model.isTraining();
  model.eval();
  model.forward(x);  // warm-up: allocator caches, oneDNN primitives
  sync();
  std::vector<double> times;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    const auto t0 = Clock::now();
    model.forward(x);
    sync();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  model.train(was_training);
  std::nth_element(times.begin(), times.begin() + static_cast<long>(times.size() / 2), times.end());
  return times[times.size() / 2];
}

Runner::Runner(RunConfig config, RunnerOptions options)
    : config_(std::move(config)), options_(std::move(options)) {
  store::RunStore db(resolvedDb(options_));
  store::RunRecord rec;
  rec.experiment_id = db.ensureExperiment(options_.experiment);
  rec.name = config_.name;
  rec.config_json = config_.canonical();
  rec.config_hash = config_.hash();
  rec.tags = config_.tags;
  rec.device = config_.device;
  rec.status = store::Status::queued;
  run_id_ = db.createRun(rec);
  // The base folder is not part of the canonical config; keep it for resume.
  if (!config_.base_dir.empty()) db.setSummary(run_id_, "config.base_dir", config_.base_dir);
}

std::unique_ptr<Runner> Runner::resume(int64_t run_id, RunnerOptions options) {
  store::RunStore db(resolvedDb(options));
  const store::RunRecord rec = db.getRun(run_id);
  if (rec.status == store::Status::done)
    throw Error("run " + std::to_string(run_id) + " is already done; nothing to resume");
  if (rec.status == store::Status::running)
    throw Error("run " + std::to_string(run_id) + " is running in process " +
                std::to_string(rec.owner_pid) + "; it cannot be resumed twice");
  auto sums = db.summaries(run_id);
  std::string base_dir;
  if (auto it = sums.find("config.base_dir"); it != sums.end())
    if (auto* s = std::get_if<std::string>(&it->second)) base_dir = *s;
  std::unique_ptr<Runner> r(new Runner());
  r->options_ = std::move(options);
  r->config_ = RunConfig::parse(nlohmann::json::parse(rec.config_json), base_dir);
  r->run_id_ = run_id;
  r->resuming_ = true;
  return r;
}

Runner::~Runner() {
  cancel();
  if (thread_.joinable()) thread_.join();
}

std::string Runner::runDir() const {
  fs::path base = options_.runs_dir.empty() ? fs::path(resolvedDb(options_)).parent_path() / "runs"
                                            : fs::path(options_.runs_dir);
  return (base / std::to_string(run_id_)).string();
}

void Runner::subscribe(std::function<void(const RunEvent&)> fn) {
  subscribers_.push_back(std::move(fn));
}

void Runner::emit(const RunEvent& e) {
  for (auto& fn : subscribers_) fn(e);
}

void Runner::setStatus(store::RunStore& db, store::Status s, const std::string& message) {
  db.flush();
  db.setStatus(run_id_, s, message);
  status_ = s;
  RunEvent e;
  e.type = EventType::status;
  e.run_id = run_id_;
  e.status = s;
  e.message = message;
  emit(e);
}

void Runner::start() {
  LATHE_CHECK(!thread_.joinable(), "run ", run_id_, " was already started");
  thread_ = std::thread([this] { execute(); });
}

void Runner::runHere() {
  execute();
}

void Runner::cancel() {
  cancel_ = true;
  unpause();
}

void Runner::pause() {
  std::lock_guard<std::mutex> l(pause_mutex_);
  paused_ = true;
}

void Runner::unpause() {
  {
    std::lock_guard<std::mutex> l(pause_mutex_);
    paused_ = false;
  }
  pause_cv_.notify_all();
}

store::Status Runner::wait() {
  if (thread_.joinable()) thread_.join();
  return status_.load();
}

void Runner::execute() {
  std::unique_ptr<store::RunStore> db;
  try {
    db = std::make_unique<store::RunStore>(resolvedDb(options_));
  } catch (const std::exception& e) {
    status_ = store::Status::failed;
    RunEvent ev;
    ev.type = EventType::status;
    ev.run_id = run_id_;
    ev.status = store::Status::failed;
    ev.message = e.what();
    emit(ev);
    return;
  }
  const auto t_start = Clock::now();
  auto log = [&](const std::string& line) {
    RunEvent e;
    e.type = EventType::log;
    e.run_id = run_id_;
    e.message = line;
    emit(e);
  };
  try {
    setStatus(*db, store::Status::running);
    fs::create_directories(runDir());
    const std::string ckpt = (fs::path(runDir()) / "checkpoint.safetensors").string();
    const Device device = Device::parse(config_.device);

    log("loading data: " + config_.dataset.dump());
    data::LoadedData data = data::loadDataset(config_.dataset, config_.seed, config_.base_dir);
    log(data.description);

    BuiltRun built = buildRun(config_, device);
    std::shared_ptr<Model> model = built.model;
    const int64_t params_initial = built.params_initial;
    std::vector<std::unique_ptr<methods::Method>>& active = built.methods;
    methods::Method* optimizer_method = built.optimizer_method;

    train::TrainOptions topt = trainOptionsFor(config_, built);
    topt.checkpoint_path = ckpt;
    if (topt.compute_dtype == DType::f8e4m3)
      log(std::string("mixed precision: fp8 linear layers (e4m3 forward, e5m2 gradients, delayed "
                      "scaling over ") +
          std::to_string(topt.fp8_history) + " steps), bf16 autocast elsewhere" +
          (device.isCpu() ? "; on the CPU fp8 is emulated by reference kernels (slow: use it "
                            "for accuracy, not speed)"
                          : ""));
    else if (topt.compute_dtype != DType::f32)
      log(std::string("mixed precision: ") + dtypeName(topt.compute_dtype) + " autocast" +
          (topt.loss_scaling ? ", dynamic loss scaling from " + std::to_string(topt.init_loss_scale)
                             : ""));
    const int64_t total = train::plannedSteps(topt, data.train->size());
    optim::LrSchedule schedule = scheduleFor(config_, built.lr, total, log);
    const ModelInfo info = model->info();
    const data::TaskKind task = data.task;
    const Shape input_shape = data.input_shape;
    const int64_t vocab = data.vocab_size;
    const bool has_test = data.test != nullptr;
    train::Trainer trainer(model, std::move(built.optimizer), schedule, std::move(data), topt);

    std::map<std::string, store::SummaryValue> summary;
    summary["params"] = static_cast<double>(model->numParameters());
    summary["trainable_params"] = static_cast<double>(model->numParameters(true));
    summary["params_before_methods"] = static_cast<double>(params_initial);
    for (const auto& m : active) {  // what each method changed, as it reports it
      const methods::MethodReport r = m->report();
      if (r.note.empty()) continue;
      summary["method." + m->info().name] = r.note;
      log(m->info().name + ": " + r.note);
    }
    summary["flops_" + info.flops_per] = info.train_flops;
    summary["optimizer"] = optimizer_method->info().name;
    summary["optimizer_state_bytes"] = static_cast<double>(trainer.optimizer().stateBytes());
    summary["total_steps"] = static_cast<double>(total);
    db->setSummaries(run_id_, summary);

    if (resuming_) {
      if (auto a = db->latestCheckpoint(run_id_); a && fs::exists(a->path)) {
        trainer.loadCheckpoint(a->path);
        log("resumed from " + a->path + " at step " + std::to_string(trainer.stepCount()));
      } else {
        log("no checkpoint to resume from: starting over");
      }
    }

    // Throughput over the steps after the first (warm-up): samples and tokens over step time
    // (the mean of per-step rates would overweight fast steps).
    double rate_samples = 0, rate_tokens = 0, rate_time_s = 0;
    int64_t skipped_steps = 0;
    std::optional<double> time_to_target;
    auto& hooks = trainer.hooks();
    hooks.on_log = log;
    hooks.on_step = [&](const train::StepMetrics& m) {
      if (options_.metric_every <= 1 || m.step % options_.metric_every == 0 || m.step == total) {
        db->appendMetric(run_id_, "loss", m.step, m.loss);
        db->appendMetric(run_id_, "lr", m.step, m.lr);
        db->appendMetric(run_id_, "grad_norm", m.step, m.grad_norm);
        db->appendMetric(run_id_, "step_time_ms", m.step, m.step_time_s * 1e3);
        db->appendMetric(run_id_, "samples_per_s", m.step, m.samples_per_s);
        if (m.tokens_per_s > 0) db->appendMetric(run_id_, "tokens_per_s", m.step, m.tokens_per_s);
        if (m.accuracy >= 0) db->appendMetric(run_id_, "train_accuracy", m.step, m.accuracy);
        db->appendMetric(run_id_, "memory_mb", m.step,
                         static_cast<double>(m.memory.current) / (1 << 20));
        if (m.loss_scale > 0) db->appendMetric(run_id_, "loss_scale", m.step, m.loss_scale);
      }
      if (m.step > 1) {  // the first step pays for warm-up
        rate_samples += m.samples_per_s * m.step_time_s;
        rate_tokens += m.tokens_per_s * m.step_time_s;
        rate_time_s += m.step_time_s;
      }
      skipped_steps = m.skipped_steps;
      RunEvent e;
      e.type = EventType::step;
      e.run_id = run_id_;
      e.step = m;
      emit(e);
      RunEvent p;
      p.type = EventType::progress;
      p.run_id = run_id_;
      p.progress = static_cast<double>(m.step) / static_cast<double>(total);
      p.eta_s = m.step > 0 ? m.elapsed_s / static_cast<double>(m.step) *
                                 static_cast<double>(total - m.step)
                           : -1;
      emit(p);
    };
    hooks.on_eval = [&](const train::EvalMetrics& ev) {
      db->appendMetric(run_id_, "val_loss", ev.step, ev.loss);
      if (ev.accuracy >= 0) db->appendMetric(run_id_, "val_accuracy", ev.step, ev.accuracy);
      if (ev.perplexity >= 0) db->appendMetric(run_id_, "val_perplexity", ev.step, ev.perplexity);
      if (config_.target_accuracy && !time_to_target && ev.accuracy >= *config_.target_accuracy) {
        time_to_target = trainer.elapsedSeconds();
        db->setSummary(run_id_, "time_to_target_s", *time_to_target);
        db->setSummary(run_id_, "steps_to_target", static_cast<double>(ev.step));
      }
      RunEvent e;
      e.type = EventType::eval;
      e.run_id = run_id_;
      e.eval = ev;
      emit(e);
    };
    hooks.on_checkpoint = [&](const std::string& path, int64_t bytes) {
      store::Artifact a;
      a.run_id = run_id_;
      a.kind = "checkpoint";
      a.path = path;
      a.bytes = bytes;
      a.hash = fileCrc32(path);
      a.step = trainer.stepCount();
      db->addArtifact(a);
    };
    hooks.should_stop = [&] {
      std::unique_lock<std::mutex> l(pause_mutex_);
      if (paused_ && !cancel_) {
        l.unlock();
        setStatus(*db, store::Status::paused);
        l.lock();
        pause_cv_.wait(l, [&] { return !paused_ || cancel_; });
        l.unlock();
        if (!cancel_) setStatus(*db, store::Status::running);
      }
      return cancel_.load();
    };

    const bool finished = trainer.run();
    if (!finished) {
      trainer.saveCheckpoint(ckpt);
      setStatus(*db, store::Status::cancelled,
                "cancelled at step " + std::to_string(trainer.stepCount()) + " of " +
                    std::to_string(total) + "; resume continues from the checkpoint");
      return;
    }

    // Final figures.
    summary.clear();
    summary["train_time_s"] = trainer.elapsedSeconds();
    if (rate_time_s > 0) {
      summary["samples_per_s"] = rate_samples / rate_time_s;
      if (rate_tokens > 0) summary["tokens_per_s"] = rate_tokens / rate_time_s;
    }
    summary["precision"] = topt.compute_dtype == DType::f32      ? "f32"
                           : topt.compute_dtype == DType::f8e4m3 ? "fp8"
                                                                 : dtypeName(topt.compute_dtype);
    if (const Fp8State* fp8 = trainer.fp8State()) {
      summary["fp8_linear_calls"] = static_cast<double>(fp8->fp8Linears());
      summary["fp8_bf16_fallback_calls"] = static_cast<double>(fp8->bf16Fallbacks());
    }
    summary["skipped_steps"] = static_cast<double>(skipped_steps);
    const MemoryStats mem = allocatorFor(device).stats();
    summary["peak_memory_bytes"] = static_cast<double>(mem.peak);
    for (int t = 0; t < kNumMemoryTags; ++t)
      summary[std::string("peak_") + memoryTagName(static_cast<MemoryTag>(t)) + "_bytes"] =
          static_cast<double>(mem.tag_peak[static_cast<size_t>(t)]);
    const char* final_split = has_test ? "test" : (trainer.data().val ? "val" : nullptr);
    if (final_split != nullptr) {
      const train::EvalMetrics ev = trainer.evaluate(final_split);
      const std::string k = final_split;
      summary[k + "_loss"] = ev.loss;
      if (ev.accuracy >= 0) summary[k + "_accuracy"] = ev.accuracy;
      if (ev.perplexity >= 0) summary[k + "_perplexity"] = ev.perplexity;
      log(k + " loss " + std::to_string(ev.loss) +
          (ev.accuracy >= 0 ? ", accuracy " + std::to_string(ev.accuracy) : std::string()));
    }
    for (auto& m : active) m->beforeExport(*model);
    if (options_.save_model) {
      const std::string path = (fs::path(runDir()) / "model.safetensors").string();
      saveModel(path, *model);
      store::Artifact a;
      a.run_id = run_id_;
      a.kind = "model";
      a.path = path;
      a.bytes = static_cast<int64_t>(fs::file_size(path));
      a.hash = fileCrc32(path);
      a.step = trainer.stepCount();
      db->addArtifact(a);
      summary["model_bytes"] = static_cast<double>(a.bytes);
    }
    const bool ids = task == data::TaskKind::language_model;
    summary["latency_b1_ms"] =
        1e3 * measureLatency(*model, input_shape, ids, vocab, 1, options_.latency_repeats, device);
    summary["latency_b64_ms"] =
        1e3 * measureLatency(*model, input_shape, ids, vocab, 64,
                             std::max(3, options_.latency_repeats / 4), device);
    summary["total_time_s"] = std::chrono::duration<double>(Clock::now() - t_start).count();
    db->setSummaries(run_id_, summary);
    RunEvent se;
    se.type = EventType::summary;
    se.run_id = run_id_;
    se.summary = db->summaries(run_id_);
    emit(se);
    setStatus(*db, store::Status::done);
  } catch (const std::exception& e) {
    try {
      setStatus(*db, store::Status::failed, e.what());
    } catch (const std::exception& e2) {
      status_ = store::Status::failed;
      log(std::string("could not record the failure: ") + e2.what());
    }
  }
}

// ---- RunQueue ----

RunQueue::RunQueue(RunnerOptions options) : options_(std::move(options)) {}

RunQueue::~RunQueue() {
  cancelAll();
  if (thread_.joinable()) thread_.join();
}

int64_t RunQueue::add(RunConfig config) {
  auto r = std::make_unique<Runner>(std::move(config), options_);
  const int64_t id = r->runId();
  {
    std::lock_guard<std::mutex> l(mutex_);
    for (auto& fn : subscribers_) r->subscribe(fn);
    pending_.push_back(std::move(r));
  }
  cv_.notify_all();
  return id;
}

void RunQueue::subscribe(std::function<void(const RunEvent&)> fn) {
  std::lock_guard<std::mutex> l(mutex_);
  subscribers_.push_back(fn);
  for (auto& r : pending_) r->subscribe(fn);
}

void RunQueue::start() {
  std::lock_guard<std::mutex> l(mutex_);
  if (started_) return;
  // A previous loop that emptied the queue has left its critical sections: join it.
  if (thread_.joinable()) thread_.join();
  started_ = true;
  thread_ = std::thread([this] { loop(); });
}

void RunQueue::loop() {
  for (;;) {
    std::unique_ptr<Runner> r;
    {
      std::unique_lock<std::mutex> l(mutex_);
      if (pending_.empty() || stop_) break;
      r = std::move(pending_.front());
      pending_.erase(pending_.begin());
      current_ = r.get();
    }
    r->runHere();
    std::lock_guard<std::mutex> l(mutex_);
    current_ = nullptr;
  }
  std::lock_guard<std::mutex> l(mutex_);
  if (stop_) {
    // Queued runs that never started are recorded as cancelled.
    if (!pending_.empty()) {
      store::RunStore db(resolvedDb(options_));
      for (auto& r : pending_)
        db.setStatus(r->runId(), store::Status::cancelled, "queue cancelled");
    }
    pending_.clear();
    stop_ = false;  // the queue can be used again
  }
  started_ = false;
  cv_.notify_all();
}

void RunQueue::cancelAll() {
  std::lock_guard<std::mutex> l(mutex_);
  stop_ = true;
  if (current_ != nullptr) current_->cancel();
}

void RunQueue::wait() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace lathe::run
