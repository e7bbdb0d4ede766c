// lathe-bench store: RunStore at the scale of a long project, in a temporary database: creating
// 10,000 runs of 100 metric points and 8 summaries each, then opening the file, listing every
// run, comparing every run's summaries, loading 100 series, and the cost of one buffered
// appendMetric. There is no peer: the goals are the issue's (list + compare under 1 s; metric
// logging under 1% of the MLP example's step, about 1.4 ms on 2 cores).
#include <sqlite3.h>
#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>

#include "bench/Suites.h"
#include "bench/Timing.h"
#include "core/base/Error.h"
#include "core/store/RunStore.h"

namespace lathe::bench {
namespace {

namespace fs = std::filesystem;
using store::RunStore;

constexpr int kRuns = 10000;
constexpr int kPoints = 100;
constexpr int kExperiments = 10;

// Wall and CPU time of this thread: on a loaded machine the CPU time is the steadier figure
// (the store's work is this thread's, except the kernel's share of writes and fsyncs).
struct Times {
  double wall_ms = 0, cpu_ms = 0;
};

double cpuMs() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

Times once(const std::function<void()>& fn) {
  const double c0 = cpuMs();
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return {std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
          cpuMs() - c0};
}

// Medians of wall and CPU time over `repeats` calls after one warm-up call.
Times median(const std::function<void()>& fn, int repeats) {
  fn();
  std::vector<double> wall, cpu;
  for (int i = 0; i < std::max(repeats, 1); ++i) {
    const Times t = once(fn);
    wall.push_back(t.wall_ms);
    cpu.push_back(t.cpu_ms);
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return {wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

// A RunConfig of typical size (about 400 bytes).
std::string configFor(int i) {
  return R"({"version":1,"model":{"preset":"mlp","hidden":[512,256],"activation":"gelu"},)"
         R"("data":{"format":"mnist","path":"/data/mnist","batch_size":128,"shuffle_seed":)" +
         std::to_string(i) +
         R"(},"train":{"optimizer":"adamw","lr":0.001,"weight_decay":0.01,"epochs":10,)"
         R"("schedule":"cosine","warmup_steps":100},"methods":[{"name":"prune",)"
         R"("sparsity":0.5,"schedule":"gradual"}],"device":"cpu","checkpoint_every":500})";
}

// Fills `db` with kRuns runs; returns their ids.
std::vector<int64_t> populate(RunStore& db) {
  std::vector<int64_t> experiments;
  experiments.reserve(kExperiments);
  for (int e = 0; e < kExperiments; ++e)
    experiments.push_back(db.ensureExperiment("experiment-" + std::to_string(e)));
  std::vector<int64_t> ids;
  ids.reserve(kRuns);
  for (int i = 0; i < kRuns; ++i) {
    store::RunRecord r;
    r.experiment_id = experiments[static_cast<size_t>(i % kExperiments)];
    r.name = "run-" + std::to_string(i);
    r.config_json = configFor(i);
    r.config_hash = "sha256:" + std::to_string(i);
    r.device = i % 2 ? "cpu" : "cuda:0";
    r.tags = {"sweep", i % 3 ? "fp32" : "bf16"};
    const int64_t id = db.createRun(r);
    ids.push_back(id);
    for (int s = 0; s < kPoints; ++s)
      db.appendMetric(id, "loss", int64_t{10} * s, 2.3 / (1.0 + s), 1.7e9 + s);
    db.setSummaries(id, {{"accuracy", 0.9 + 1e-5 * i},
                         {"loss", 0.1},
                         {"peak_mb", 100.0 + i % 50},
                         {"latency_ms", 1.5},
                         {"params", 203530.0},
                         {"model_bytes", 814120.0},
                         {"samples_per_s", 25000.0},
                         {"method", std::string(i % 2 ? "prune" : "lora")}});
    db.setStatus(id, store::Status::done);
  }
  db.flush();
  return ids;
}

}  // namespace

int runStore(const Options& opts) {
  std::string templ = (fs::temp_directory_path() / "lathe-store-bench-XXXXXX").string();
  LATHE_CHECK(mkdtemp(templ.data()) != nullptr, "cannot create a temporary directory ", templ);
  const std::string path = (fs::path(templ) / "runs.db").string();
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{templ};

  std::cout << "lathe-bench store: SQLite " << sqlite3_libversion() << ", " << kRuns << " runs x "
            << kPoints << " points + 8 summaries in " << path << "; median of " << opts.repeats
            << " runs\n";
  Table table({"case", "wall ms", "cpu ms", "per item (wall)", "goal"});
  auto row = [&](const std::string& name, const Times& t, double items, const std::string& unit,
                 const std::string& goal = "") {
    table.add({name, fmt(t.wall_ms, 2), fmt(t.cpu_ms, 2),
               items > 0 ? fmt(t.wall_ms * 1000 / items, 2) + " us/" + unit : "", goal});
  };
  std::vector<int64_t> ids;
  {
    RunStore db(path);
    row("create 10k runs (createRun, 100 x appendMetric, setSummaries, setStatus)",
        once([&] { ids = populate(db); }), kRuns, "run");
  }
  const double file_mb = static_cast<double>(fs::file_size(path)) / (1 << 20);

  row("open read-write (schema check, interrupted-run scan)",
      median([&] { RunStore db(path); }, opts.repeats), 0, "");
  RunStore db(path, store::OpenMode::readOnly);
  size_t listed = 0, compared = 0;
  const Times list = median([&] { listed = db.listRuns().size(); }, opts.repeats);
  row("listRuns: all 10k", list, kRuns, "run");
  const Times cmp = median([&] { compared = db.compare(ids).runs.size(); }, opts.repeats);
  row("compare: all 10k (8 summaries each)", cmp, kRuns, "run");
  row("list + compare 10k", {list.wall_ms + cmp.wall_ms, list.cpu_ms + cmp.cpu_ms}, 0, "",
      "< 1000 ms");
  LATHE_CHECK(listed == kRuns && compared == kRuns, "store bench: listed ", listed,
              " and compared ", compared, " runs, expected ", kRuns);

  store::RunFilter filter;
  filter.tag = "bf16";
  filter.limit = 100;
  row("listRuns: tag filter, newest 100", median([&] { db.listRuns(filter); }, opts.repeats), 0,
      "");

  size_t points = 0;
  const Times series = median(
      [&] {
        points = 0;
        for (int i = 0; i < 100; ++i)
          points += db.series(ids[static_cast<size_t>(i) * (kRuns / 100)], "loss").size();
      },
      opts.repeats);
  LATHE_CHECK(points == size_t{100} * kPoints, "store bench: loaded ", points, " points");
  row("series: 100 runs x 100 points", series, 100, "series");

  // appendMetric as the runner calls it: 8 series per step, default flush policy.
  {
    RunStore w(path);
    store::RunRecord r;
    r.experiment_id = w.ensureExperiment("append-cost");
    r.name = "append";
    const int64_t id = w.createRun(r);
    const char* names[] = {"loss",    "accuracy",      "lr",      "grad_norm",
                           "step_ms", "samples_per_s", "peak_mb", "loss_scale"};
    constexpr int kSteps = 25000;
    const Times t = once([&] {
      for (int s = 0; s < kSteps; ++s)
        for (const char* n : names) w.appendMetric(id, n, s, 1.0 / (s + 1));
      w.flush();
    });
    row("appendMetric: 8 series per step for 25k steps, flushes included", t, kSteps, "step",
        "< 14 us/step (1% of 1.4 ms)");
  }
  table.print();
  std::cout << "database file: " << fmt(file_mb, 1) << " MiB\n";
  return 0;
}

}  // namespace lathe::bench
