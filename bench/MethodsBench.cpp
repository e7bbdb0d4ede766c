// lathe-bench methods: every registered efficiency method against the example's f32 AdamW, on
// the same model, data, seed and number of steps, one markdown table per model. Each row is a
// run built the way run::Runner builds it (run::buildRun, the methods' training options, the
// schedule over the row's steps) from the example with its "methods" list replaced; a row that
// throws shows the message and the others still run.
//   step ms      median Trainer step time after the warm-up steps (forward, backward, update)
//   samples/s    timed samples / timed seconds, so periodic extra work (Sophia's Hessian pass
//                every k steps) counts here but not in the median
//   peak MB      the device allocator's peak during training above what was live before the
//                model was built (the resident dataset on the CPU), less buffers the backend
//                keeps for the process after the row (see runRow); by tag in a second table
//   opt state    Optimizer::stateBytes()
//   final loss   mean training loss of the last 10% of steps (at least 3)
//   metric       test accuracy (classifiers) or test loss (GPT) after the last step
//   default             a short run per model (GPT at batch 8; the schedule compressed to it:
//                       cosine over the steps, warm-up at most a tenth), a few test batches;
//                       LATHE_BENCH_METHODS_STEPS=N overrides the steps
//   LATHE_BENCH_FULL=1  the example's whole schedule, evaluated on the whole test split
//   --model gpt|cnn|mlp|all (default gpt and cnn), --device cpu|cuda:N, --filter NAME (rows)
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <limits>

#include "bench/Suites.h"
#include "bench/Timing.h"
#include "core/backend/Backend.h"
#include "core/base/Error.h"
#include "core/data/DatasetSpec.h"
#include "core/run/Build.h"
#include "core/run/RunConfig.h"
#include "core/tensor/Allocator.h"
#include "kernels/Backends.h"
#include "kernels/cpu/CpuBackend.h"

namespace lathe::bench {
namespace {

struct ModelCase {
  std::string name;
  std::string config;  // relative to the source tree
  int64_t quick_steps;
  int64_t quick_batch;         // 0: the example's batch size
  int64_t quick_eval_batches;  // 0: the whole test split
  bool checkpointable;         // activation checkpointing applies (gpt, cnn presets)
};

const std::vector<ModelCase> kModels = {
    {"gpt", "resources/examples/text_gpt_tiny.json", 16, 8, 8, true},
    {"cnn", "resources/examples/fashion_cnn.json", 40, 0, 20, true},
    {"mlp", "resources/examples/fashion_mlp.json", 200, 0, 0, false},
};

// One row: the methods that replace the example's list.
struct Variant {
  std::string label;
  std::vector<nlohmann::json> methods;
  bool device_dependent = false;  // a failure reads "not supported on this device" (fp8)
};

struct RowResult {
  std::string error;  // non-empty: the row failed with this message
  double step_ms = 0;
  double samples_per_s = 0;
  int64_t peak = 0;
  std::array<int64_t, kNumMemoryTags> tag_peak{};
  int64_t state_bytes = 0;
  double final_loss = 0;
  double metric = 0;
  int64_t skipped_steps = 0;
  int64_t kept = 0;  // bytes the backend still held after the row (first-use workspaces)
};

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

// The smallest matrix (dim >= 2) of the example's model, so that adamw8bit quantizes every
// matrix and only vectors (biases, norms) smaller than it keep f32 moments.
int64_t smallestMatrix(const run::RunConfig& cfg) {
  const std::shared_ptr<Model> model = buildModel(cfg.model);
  int64_t n = std::numeric_limits<int64_t>::max();
  for (const Tensor& p : model->parameters())
    if (p.dim() >= 2) n = std::min(n, p.numel());
  return n == std::numeric_limits<int64_t>::max() ? 4096 : n;
}

// The baseline and one variant per method, each optimizer at the settings its help suggests
// relative to the example's AdamW (lr, weight decay).
std::vector<Variant> variantsFor(const run::RunConfig& cfg, const ModelCase& mc, Device device) {
  const nlohmann::json base = cfg.optimizerMethod();
  LATHE_CHECK(base.at("name") == "adamw", mc.config, ": the methods benchmark expects an adamw ",
              "baseline, got ", base.at("name").get<std::string>());
  const double lr = base.at("lr").get<double>();
  const double wd = base.at("weight_decay").get<double>();
  std::vector<Variant> v;
  v.push_back({"adamw f32 (baseline)", {base}});
  const double sgd_lr = 30 * lr;
  v.push_back({"sgd (lr " + num(sgd_lr) + ", Nesterov momentum 0.9, wd 5e-4)",
               {{{"name", "sgd"},
                 {"lr", sgd_lr},
                 {"momentum", 0.9},
                 {"nesterov", true},
                 {"weight_decay", 5e-4}}}});
  v.push_back({"lion (lr " + num(lr / 3) + ", wd " + num(wd * 3) + ")",
               {{{"name", "lion"}, {"lr", lr / 3}, {"weight_decay", wd * 3}}}});
  v.push_back({"sophia-G (lr " + num(lr / 2) + ", gamma 0.05, k 10)",
               {{{"name", "sophia"},
                 {"estimator", "gnb"},
                 {"lr", lr / 2},
                 {"gamma", 0.05},
                 {"hessian_every", 10},
                 {"weight_decay", wd}}}});
  v.push_back({"adafactor (lr " + num(lr) + ", beta1 0)",
               {{{"name", "adafactor"}, {"lr", lr}, {"weight_decay", wd}}}});
  const int64_t min8 = smallestMatrix(cfg);
  nlohmann::json a8 = base;
  a8["name"] = "adamw8bit";
  a8["min_8bit_size"] = min8;
  v.push_back({"adamw8bit (min_8bit_size " + std::to_string(min8) + ")", {a8}});
  const nlohmann::json bf16 = {{"name", "precision"}, {"dtype", "bf16"}};
  const nlohmann::json fp16 = {{"name", "precision"}, {"dtype", "fp16"}};
  v.push_back({"precision bf16", {base, bf16}});
  v.push_back({"precision fp16", {base, fp16}});
  if (device.isCuda())
    v.push_back({"precision fp8", {base, {{"name", "precision"}, {"dtype", "fp8"}}}, true});
  if (mc.checkpointable) {
    v.push_back(
        {"checkpointing full", {base, {{"name", "activation_checkpointing"}, {"mode", "full"}}}});
    v.push_back({"checkpointing selective",
                 {base, {{"name", "activation_checkpointing"}, {"mode", "selective"}}}});
  }
  return v;
}

// The example with `methods`, `steps` optimizer steps (the schedule compressed to them), `batch`
// (0: the example's) and the device; validated as a config file would be.
run::RunConfig variantConfig(const run::RunConfig& cfg, const std::vector<nlohmann::json>& methods,
                             int64_t steps, int64_t batch, Device device) {
  nlohmann::json j = cfg.toJson();
  if (batch > 0) j["training"]["batch_size"] = batch;
  j["methods"] = methods;
  j["hardware"]["device"] = device.str();
  j["training"]["max_steps"] = steps;
  j["training"]["checkpoint_every"] = 0;
  auto& sched = j["training"]["schedule"];
  if (sched.contains("warmup_steps"))
    sched["warmup_steps"] = std::min(sched["warmup_steps"].get<int64_t>(), steps / 10);
  return run::RunConfig::parse(j, cfg.base_dir);
}

// A message fit for one markdown table cell.
std::string oneLine(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '|', '/');
  return s;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Trains and evaluates one row; the memory figures are the allocator's raw peaks (runRow makes
// them relative).
RowResult trainRow(const run::RunConfig& cfg, const data::LoadedData& data, Device device,
                   int64_t eval_batches, bool language_model) {
  RowResult r;
  run::BuiltRun built = run::buildRun(cfg, device);
  const train::TrainOptions topt = run::trainOptionsFor(cfg, built);
  const int64_t total = train::plannedSteps(topt, data.train->size());
  const optim::LrSchedule schedule = run::scheduleFor(cfg, built.lr, total);
  // The Trainer resets the allocator's peaks; what is live then (model, gradients, state)
  // counts towards them.
  train::Trainer trainer(built.model, std::move(built.optimizer), schedule, data, topt);
  r.state_bytes = trainer.optimizer().stateBytes();
  const int64_t warmup = std::clamp<int64_t>(total / 10, 1, 5);
  const int64_t tail = std::max<int64_t>(total / 10, std::min<int64_t>(total, 3));
  std::vector<double> times;
  double timed_s = 0, tail_loss = 0;
  int64_t timed_samples = 0;
  MemoryStats mem;
  for (int64_t s = 0; s < total; ++s) {
    const train::StepMetrics m = trainer.step();
    if (s >= warmup || total <= warmup) {
      times.push_back(m.step_time_s);
      timed_s += m.step_time_s;
      timed_samples += topt.batch_size * topt.grad_accum;
    }
    if (s >= total - tail) tail_loss += m.loss;
    mem = m.memory;
    r.skipped_steps = m.skipped_steps;
  }
  r.step_ms = 1e3 * median(times);
  r.samples_per_s = timed_s > 0 ? static_cast<double>(timed_samples) / timed_s : 0;
  r.peak = mem.peak;
  r.tag_peak = mem.tag_peak;
  r.final_loss = tail_loss / static_cast<double>(tail);
  const train::EvalMetrics e = trainer.evaluate("test", eval_batches);
  r.metric = language_model ? e.loss : e.accuracy;
  return r;
}

// The row's peaks above what was live before it (the resident data on the CPU), less what the
// backend kept once the row's objects were gone: process-wide buffers made on first use (the
// CUDA matmul workspace, 32 MiB) would otherwise count against whichever row ran first.
RowResult runRow(const run::RunConfig& cfg, const data::LoadedData& data, Device device,
                 int64_t eval_batches, bool language_model) {
  Allocator& alloc = allocatorFor(device);
  const MemoryStats before = alloc.stats();
  RowResult r = trainRow(cfg, data, device, eval_batches, language_model);
  const MemoryStats after = alloc.stats();
  r.kept = std::max<int64_t>(0, after.current - before.current);
  r.peak -= before.current + r.kept;
  for (size_t t = 0; t < r.tag_peak.size(); ++t)
    r.tag_peak[t] -=
        before.tag_current[t] + std::max<int64_t>(0, after.tag_current[t] - before.tag_current[t]);
  return r;
}

std::string mb(int64_t bytes) {
  return fmt(static_cast<double>(bytes) / (1024.0 * 1024.0), 2);
}
std::string ratio(double v, double base) {
  if (!(base > 0) || !std::isfinite(v)) return "-";
  const double r = v / base;
  return fmt(r, r > 0 && r < 0.1 ? 3 : 2) + "x";
}

void printModel(const std::vector<Variant>& variants, const std::vector<RowResult>& rows,
                bool language_model) {
  const RowResult& b = rows.front();
  const bool base_ok = b.error.empty();
  Table main({"method", "step ms", "x base", "samples/s", "peak MB", "x base", "opt state MB",
              "x base", "final loss", language_model ? "test loss" : "test acc %",
              language_model ? "Δ loss" : "Δ acc pp", "note"});
  Table tags({"method", "parameters", "gradients", "optimizer state", "activations", "workspace",
              "other", "total peak"});
  for (size_t i = 0; i < rows.size(); ++i) {
    const RowResult& r = rows[i];
    if (!r.error.empty()) {
      main.add({variants[i].label, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", r.error});
      continue;
    }
    const double metric = language_model ? r.metric : 100.0 * r.metric;
    const double base_metric = language_model ? b.metric : 100.0 * b.metric;
    std::string note;
    if (!std::isfinite(r.final_loss)) note = "diverged";
    if (r.skipped_steps > 0)
      note += (note.empty() ? "" : "; ") + std::to_string(r.skipped_steps) + " step(s) skipped";
    if (r.kept > 0)
      note += (note.empty() ? "" : "; ") + mb(r.kept) + " MB kept by the backend (not counted)";
    std::string delta = "-";
    if (base_ok && i > 0)
      delta =
          (metric >= base_metric ? "+" : "") + fmt(metric - base_metric, language_model ? 3 : 2);
    main.add({variants[i].label, fmt(r.step_ms, 1), base_ok ? ratio(r.step_ms, b.step_ms) : "-",
              fmt(r.samples_per_s, 0), mb(r.peak),
              base_ok ? ratio(static_cast<double>(r.peak), static_cast<double>(b.peak)) : "-",
              mb(r.state_bytes),
              base_ok
                  ? ratio(static_cast<double>(r.state_bytes), static_cast<double>(b.state_bytes))
                  : "-",
              fmt(r.final_loss, 4), fmt(metric, language_model ? 4 : 2), delta, note});
    std::vector<std::string> t = {variants[i].label};
    for (int tag = 0; tag < kNumMemoryTags; ++tag)
      t.push_back(mb(r.tag_peak[static_cast<size_t>(tag)]));
    t.push_back(mb(r.peak));
    tags.add(t);
  }
  main.print();
  std::cout
      << "\nPeak MB by memory tag (each tag's own peak; the total peak is not their sum):\n\n";
  tags.print();
}

}  // namespace

int runMethods(const Options& opts) {
  const Device device = Device::parse(opts.device);
  if (device.isCuda()) {
    const bool present =
        hasBackend(DeviceType::cuda) && device.index < backendFor(DeviceType::cuda).deviceCount();
    if (!present) {
      std::cout << "lathe-bench methods: skipped, --device " << device.str()
                << " is not available: "
                << (builtWithCuda() ? "no such GPU on this machine"
                                    : "this build has no CUDA backend (configure with "
                                      "-DLATHE_CUDA=ON on a machine with the CUDA toolkit)")
                << "\n";
      return 0;
    }
  }
  if (opts.threads > 0) cpu::setNumThreads(opts.threads);
  const bool full = envInt("LATHE_BENCH_FULL", 0) != 0;
  const int64_t steps_override = envInt("LATHE_BENCH_METHODS_STEPS", 0);
  const std::string which = opts.model.empty() ? "gpt,cnn" : opts.model;
  std::cout << "lathe-bench methods: each efficiency method against the example's f32 AdamW on "
            << device.str()
            << (device.isCpu() ? " (" + std::to_string(cpu::numThreads()) + " threads)" : "")
            << "; " << (full ? "the examples' whole schedules" : "quick runs")
            << "; same model, data, seed and steps per row. step ms: median after warm-up; "
               "samples/s: over all timed steps; peak MB: allocator peak above the resident "
               "data, less buffers the backend keeps for the process; final loss: mean of the last "
               "10% of steps (at least 3); the schedule (warm-up, "
               "cosine) is compressed to the steps\n";
  for (const ModelCase& mc : kModels) {
    if (which != "all" && which.find(mc.name) == std::string::npos) continue;
    const run::RunConfig cfg =
        run::RunConfig::load(std::string(LATHE_SOURCE_DIR) + "/" + mc.config);
    const data::LoadedData data = data::loadDataset(cfg.dataset, cfg.seed, cfg.base_dir);
    const bool lm = data.task == data::TaskKind::language_model;
    const train::TrainOptions example = cfg.trainOptions();
    const int64_t steps = full                 ? train::plannedSteps(example, data.train->size())
                          : steps_override > 0 ? steps_override
                                               : mc.quick_steps;
    const int64_t eval_batches = full ? 0 : mc.quick_eval_batches;
    const int64_t batch = full ? 0 : mc.quick_batch;
    std::cout << "\n## " << mc.name << ": " << mc.config << ", " << steps << " steps of batch "
              << (batch > 0 ? std::to_string(batch) + " (the example's " +
                                  std::to_string(example.batch_size) + ", cut for the quick run)"
                            : std::to_string(example.batch_size))
              << ", seed " << cfg.seed << ", " << (lm ? "test loss over " : "test accuracy over ")
              << (eval_batches > 0 ? std::to_string(eval_batches) + " test batches"
                                   : "the whole test split")
              << "\n\n"
              << std::flush;
    std::vector<Variant> variants;
    for (Variant& v : variantsFor(cfg, mc, device))  // the baseline always runs
      if (variants.empty() || v.label.find(opts.filter) != std::string::npos)
        variants.push_back(std::move(v));
    std::vector<RowResult> rows;
    for (const Variant& v : variants) {
      RowResult r;
      try {
        const run::RunConfig vc = variantConfig(cfg, v.methods, steps, batch, device);
        r = runRow(vc, data, device, eval_batches, lm);
      } catch (const std::exception& e) {
        r = RowResult{};
        r.error =
            (v.device_dependent ? "not supported on this device: " : "error: ") + oneLine(e.what());
      }
      std::cerr << "  " << mc.name << " / " << v.label << ": "
                << (r.error.empty()
                        ? fmt(r.step_ms, 1) + " ms/step, final loss " + fmt(r.final_loss, 4)
                        : r.error)
                << "\n";
      rows.push_back(std::move(r));
    }
    printModel(variants, rows, lm);
    std::cout << std::flush;
  }
  return 0;
}

}  // namespace lathe::bench
