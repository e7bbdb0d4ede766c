// The pre-launch estimate against a real run: an MLP on npy data and a small GPT on text, each
// estimated (calibrated at small batches, extrapolated to the config's batch) and then trained a
// few steps through the Runner; the estimated peak must be within 15% of the measured one, and
// the batch-independent tags must match exactly. A config that cannot run is an error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/base/Error.h"
#include "core/data/Npy.h"
#include "core/ops/Ops.h"
#include "core/run/Estimate.h"
#include "core/run/Runner.h"
#include "core/store/RunStore.h"
#include "core/tensor/Random.h"

namespace lathe::run {
namespace {

namespace fs = std::filesystem;

class EstimateTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(testing::TempDir()) /
           ("lathe_estimate_" + std::to_string(::getpid()) + "_" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void writeNpyData(int64_t n, int64_t features, int64_t classes) const {
    manualSeed(11);
    data::saveNpy((dir_ / "x.npy").string(), randn({n, features}));
    data::saveNpy((dir_ / "y.npy").string(), randint(0, classes, {n}));
  }
  void writeText(size_t bytes) const {
    std::mt19937 rng(3);
    const std::string words[] = {"the ", "lathe ", "turns ", "wood ", "and ", "metal ", "\n"};
    std::ofstream out(dir_ / "corpus.txt");
    for (size_t written = 0; written < bytes;) {
      const std::string& w = words[rng() % 7];
      out << w;
      written += w.size();
    }
  }

  // Trains `config` for a few steps through the Runner; the run's summary.
  std::map<std::string, store::SummaryValue> runFor(const nlohmann::json& config) const {
    RunnerOptions o;
    o.db_path = (dir_ / "runs.db").string();
    o.save_model = false;
    o.latency_repeats = 1;
    Runner r(RunConfig::parse(config, dir_.string()), o);
    r.runHere();
    store::RunStore db(o.db_path);
    EXPECT_EQ(db.getRun(r.runId()).status, store::Status::done) << db.getRun(r.runId()).message;
    return db.summaries(r.runId());
  }

  static void expectClose(const Estimate& e, const std::map<std::string, store::SummaryValue>& s) {
    const double measured = std::get<double>(s.at("peak_memory_bytes"));
    const auto estimated = static_cast<double>(e.peak_bytes);
    EXPECT_LE(std::abs(estimated - measured), 0.15 * measured)
        << "estimated " << formatBytes(e.peak_bytes) << ", measured "
        << formatBytes(static_cast<int64_t>(measured));
    // Exact up to the checkpoint the Runner writes at the end (its step and lr scalars are
    // optimizer state): a few bytes.
    for (MemoryTag tag : {MemoryTag::parameters, MemoryTag::gradients, MemoryTag::optimizer_state})
      EXPECT_NEAR(static_cast<double>(e.tag_bytes[static_cast<size_t>(tag)]),
                  std::get<double>(s.at(std::string("peak_") + memoryTagName(tag) + "_bytes")), 64)
          << memoryTagName(tag);
    RecordProperty("estimated_peak_bytes", std::to_string(e.peak_bytes));
    RecordProperty("measured_peak_bytes", std::to_string(static_cast<int64_t>(measured)));
  }

  fs::path dir_;
};

TEST_F(EstimateTest, MlpPeakIsWithin15PercentOfTheRun) {
  writeNpyData(2000, 64, 4);
  const nlohmann::json config = {
      {"name", "npy-mlp"},
      {"model", {{"type", "mlp"}, {"input_dim", 64}, {"hidden", {256, 256}}, {"classes", 4}}},
      {"dataset", {{"format", "npy"}, {"inputs", "x.npy"}, {"targets", "y.npy"}}},
      {"training", {{"max_steps", 3}, {"batch_size", 128}, {"eval_batches", 1}}},
      {"methods", {{{"name", "adamw"}, {"lr", 0.001}}}}};
  const Estimate e = estimateRun(RunConfig::parse(config, dir_.string()));
  ASSERT_EQ(e.calibration.size(), 2u);
  EXPECT_EQ(e.calibration[0].batch, 4);
  EXPECT_EQ(e.calibration[1].batch, 16);
  EXPECT_EQ(e.planned_steps, 3);
  EXPECT_GT(e.step_time_s, 0);
  EXPECT_GT(e.capacity_bytes, 0);
  EXPECT_TRUE(e.fits);
  // Adam keeps two moments per parameter: twice the parameter bytes.
  EXPECT_EQ(e.tag_bytes[static_cast<size_t>(MemoryTag::optimizer_state)],
            2 * e.tag_bytes[static_cast<size_t>(MemoryTag::parameters)]);
  expectClose(e, runFor(config));
}

TEST_F(EstimateTest, GptPeakIsWithin15PercentOfTheRun) {
  writeText(60000);
  const nlohmann::json config = {
      {"name", "text-gpt"},
      {"model",
       {{"type", "gpt"},
        {"vocab_size", 256},
        {"block_size", 32},
        {"n_layer", 2},
        {"n_head", 2},
        {"d_model", 64}}},
      {"dataset",
       {{"format", "text"}, {"path", "corpus.txt"}, {"tokenizer", "bytes"}, {"block_size", 32}}},
      {"training", {{"max_steps", 3}, {"batch_size", 32}, {"eval_batches", 1}}},
      {"methods", {{{"name", "adamw"}, {"lr", 0.001}}}}};
  const Estimate e = estimateRun(RunConfig::parse(config, dir_.string()));
  EXPECT_GT(e.tag_bytes[static_cast<size_t>(MemoryTag::activations)], 0);
  expectClose(e, runFor(config));
}

TEST_F(EstimateTest, ABatchLargerThanTheTrainingSetIsAnError) {
  writeNpyData(40, 8, 2);
  const nlohmann::json config = {
      {"name", "too-big"},
      {"model", {{"type", "mlp"}, {"input_dim", 8}, {"hidden", {8}}, {"classes", 2}}},
      {"dataset", {{"format", "npy"}, {"inputs", "x.npy"}, {"targets", "y.npy"}}},
      {"training", {{"max_steps", 3}, {"batch_size", 512}}},
      {"methods", {{{"name", "adamw"}, {"lr", 0.001}}}}};
  try {
    estimateRun(RunConfig::parse(config, dir_.string()));
    FAIL() << "expected an error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("training.batch_size: 512 is larger than"),
              std::string::npos)
        << err.what();
  }
}

}  // namespace
}  // namespace lathe::run
