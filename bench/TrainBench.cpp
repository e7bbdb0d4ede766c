// lathe-bench train: training throughput of resources/examples/fashion_{mlp,cnn}.json and
// text_gpt_tiny.json through
// train::Trainer (the loop lathe-cli run drives, without the run store) against PyTorch CPU
// (bench/peers/torch_train.py) at the same batch size, schedule and thread count. Rounds
// alternate Lathe and PyTorch per model, so a load change on the machine hits both sides; each
// side's figure is the median over rounds. Samples/s are steady state: the first step (warm-up:
// allocator, oneDNN primitives, loader thread) is excluded on both sides.
//   default               a few hundred steps of the 5-epoch schedule per model and round
//   LATHE_BENCH_FULL=1    one round of each whole run (5 epochs; the GPT's 1000 steps), with
//                         the test accuracy (image models) or the validation loss over the
//                         whole validation split (GPT)
//   LATHE_BENCH_TRAIN_STEPS=S, LATHE_BENCH_TRAIN_ROUNDS=R   override the quick mode's sizes
//   --filter mlp|cnn|gpt  one model only
#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "bench/Suites.h"
#include "bench/Timing.h"
#include "core/data/DatasetSpec.h"
#include "core/methods/Method.h"
#include "core/run/Build.h"
#include "core/run/RunConfig.h"
#include "core/tensor/Random.h"
#include "kernels/cpu/CpuBackend.h"

namespace lathe::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct ModelCase {
  std::string name;    // the peer's model name
  std::string config;  // relative to the source tree
  int64_t quick_steps;
  bool language_model = false;  // reports the validation loss instead of the test accuracy
};

const std::vector<ModelCase> kModels = {
    {"mlp", "resources/examples/fashion_mlp.json", 300},
    {"cnn", "resources/examples/fashion_cnn.json", 120},
    {"gpt", "resources/examples/text_gpt_tiny.json", 12, true},
};

struct SideResult {
  double samples_per_s = 0;
  double step_ms = 0;
  double test_accuracy = -1;
  double val_loss = -1;
};

// Trains `cfg` the way run::Runner does (same seed, model, optimizer method, schedule over the
// planned steps, options). steps > 0: times that many steps of the schedule; 0: the whole run,
// then the test accuracy (or, for a language model, the loss over the whole validation split).
SideResult trainLathe(const run::RunConfig& cfg, const data::LoadedData& data, int64_t steps,
                      bool language_model) {
  run::BuiltRun built = run::buildRun(cfg, Device::cpu());
  train::TrainOptions topt = run::trainOptionsFor(cfg, built);
  const int64_t total = train::plannedSteps(topt, data.train->size());
  const optim::LrSchedule schedule = run::scheduleFor(cfg, built.lr, total);
  train::Trainer trainer(built.model, std::move(built.optimizer), schedule, data, topt);

  SideResult r;
  double timed_s = 0;
  int64_t timed_samples = 0;
  if (steps > 0) {
    steps = std::min(steps, total);
    trainer.step();  // warm-up
    const auto t0 = Clock::now();
    for (int64_t s = 1; s < steps; ++s) trainer.step();
    timed_s = std::chrono::duration<double>(Clock::now() - t0).count();
    timed_samples = (steps - 1) * topt.batch_size;
  } else {
    trainer.hooks().on_step = [&](const train::StepMetrics& m) {
      if (m.step <= 1) return;
      timed_s += m.step_time_s;
      timed_samples += topt.batch_size;
    };
    trainer.run();
    if (language_model)
      r.val_loss = trainer.evaluate("val").loss;
    else
      r.test_accuracy = trainer.evaluate("test").accuracy;
  }
  const int64_t timed_steps = timed_samples / std::max<int64_t>(topt.batch_size, 1);
  r.samples_per_s = timed_s > 0 ? static_cast<double>(timed_samples) / timed_s : 0;
  r.step_ms = timed_steps > 0 ? 1e3 * timed_s / static_cast<double>(timed_steps) : 0;
  return r;
}

SideResult trainPeer(const std::string& model, int threads, int64_t steps, std::string& why) {
  const auto out = runPeer(
      "torch_train.py",
      {"--threads", std::to_string(threads), "--models", model, "--steps", std::to_string(steps)},
      why);
  SideResult r;
  auto get = [&](const std::string& key, double fallback) {
    auto it = out.find(model + "." + key);
    return it != out.end() ? it->second : fallback;
  };
  r.samples_per_s = get("samples_per_s", 0);
  r.step_ms = get("step_ms", 0);
  r.test_accuracy = get("test_accuracy", -1);
  r.val_loss = get("val_loss", -1);
  return r;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The quality figure of a whole run: test accuracy, or validation loss for a language model.
std::string quality(const SideResult& r) {
  if (r.val_loss >= 0) return "val loss " + fmt(r.val_loss, 4);
  return r.test_accuracy >= 0 ? "test acc " + fmt(100.0 * r.test_accuracy, 2) + "%" : "-";
}

}  // namespace

int runTrain(const Options& opts) {
  if (opts.threads > 0) cpu::setNumThreads(opts.threads);
  const int threads = cpu::numThreads();
  const bool full = envInt("LATHE_BENCH_FULL", 0) != 0;
  const int64_t rounds = full ? 1 : std::max<int64_t>(1, envInt("LATHE_BENCH_TRAIN_ROUNDS", 3));
  const int64_t steps_override = envInt("LATHE_BENCH_TRAIN_STEPS", 0);

  std::cout << "lathe-bench train: " << (full ? "full 5-epoch runs" : "quick throughput runs")
            << ", the examples' batch sizes (64; GPT 32), " << threads << " thread(s), " << rounds
            << " round(s) alternating Lathe and PyTorch (median); ratio = Lathe samples/s / "
               "PyTorch samples/s (goal >= 1.0); the GPT's samples are windows of 128 tokens\n";
  std::vector<std::string> header = {
      "model", "steps",         "lathe samples/s", "pytorch samples/s",
      "ratio", "lathe ms/step", "pytorch ms/step"};
  if (full) {
    header.push_back("lathe result");
    header.push_back("pytorch result");
  }
  Table table(header);
  std::string why = "skipped (--no-peer)";
  bool peer_failed = false;
  for (const ModelCase& mc : kModels) {
    if (!opts.filter.empty() && mc.name.find(opts.filter) == std::string::npos) continue;
    const run::RunConfig cfg =
        run::RunConfig::load(std::string(LATHE_SOURCE_DIR) + "/" + mc.config);
    const data::LoadedData data = data::loadDataset(cfg.dataset, cfg.seed, cfg.base_dir);
    const int64_t steps = full ? 0 : (steps_override > 0 ? steps_override : mc.quick_steps);
    std::vector<double> lathe_rate, lathe_ms, peer_rate, peer_ms;
    SideResult lathe_last, peer_last;
    for (int64_t r = 0; r < rounds; ++r) {
      lathe_last = trainLathe(cfg, data, steps, mc.language_model);
      lathe_rate.push_back(lathe_last.samples_per_s);
      lathe_ms.push_back(lathe_last.step_ms);
      std::cerr << "  " << mc.name << " round " << r + 1 << ": lathe "
                << fmt(lathe_last.samples_per_s, 0) << " samples/s";
      if (!opts.no_peer) {
        peer_last = trainPeer(mc.name, threads, steps, why);
        peer_failed = peer_last.samples_per_s <= 0;
        if (!peer_failed) {
          peer_rate.push_back(peer_last.samples_per_s);
          peer_ms.push_back(peer_last.step_ms);
          std::cerr << ", pytorch " << fmt(peer_last.samples_per_s, 0) << " samples/s";
        }
      }
      std::cerr << "\n";
    }
    const double lr = median(lathe_rate), pr = median(peer_rate);
    std::vector<std::string> row = {mc.name,
                                    full ? "whole run" : std::to_string(steps),
                                    fmt(lr, 0),
                                    pr > 0 ? fmt(pr, 0) : "-",
                                    pr > 0 ? fmt(lr / pr, 2) : "-",
                                    fmt(median(lathe_ms), 2),
                                    pr > 0 ? fmt(median(peer_ms), 2) : "-"};
    if (full) {
      row.push_back(quality(lathe_last));
      row.push_back(quality(peer_last));
    }
    table.add(row);
  }
  if (opts.no_peer || peer_failed) std::cout << "PyTorch peer: " << why << "\n";
  table.print();
  return 0;
}

}  // namespace lathe::bench
