// The pre-launch estimate against a real run: an MLP on npy data and a small GPT on text, each
// estimated (calibrated at small batches, extrapolated to the config's batch) and then trained a
// few steps through the Runner; the estimated peak must be within 15% of the measured one, and
// the batch-independent tags must match exactly. A config that cannot run is an error. The
// spec-counted parameter footprint matches every built preset; a model larger than the capacity
// is answered "does not fit" from that count without being built; a capacity override and a
// cancel flag act.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/base/Error.h"
#include "core/data/Npy.h"
#include "core/nn/Presets.h"
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

// The spec-counted footprint is what buildModel allocates, for every preset and its options.
TEST(ParameterFootprintTest, MatchesTheBuiltModelOfEveryPreset) {
  auto gpt = [](nlohmann::json extra) {
    nlohmann::json s = {{"type", "gpt"}, {"vocab_size", 61}, {"block_size", 16},
                        {"n_layer", 2},  {"n_head", 4},      {"d_model", 32}};
    if (extra.is_object()) s.update(extra);  // {} is null
    return s;
  };
  const std::vector<nlohmann::json> specs = {
      {{"type", "mlp"}, {"input_dim", 20}, {"hidden", {16, 8}}, {"classes", 3}},
      {{"type", "mlp"}, {"input_dim", 7}, {"classes", 2}, {"bias", false}},
      {{"type", "lenet"}, {"in_channels", 1}, {"image_size", 28}, {"classes", 10}},
      {{"type", "cnn"},
       {"variant", "lenet"},
       {"in_channels", 3},
       {"image_size", 32},
       {"classes", 5},
       {"channels", {8, 16, 8}},
       {"kernel", 5},
       {"batch_norm", true},
       {"hidden", {32, 16}}},
      {{"type", "resnet"}, {"in_channels", 3}, {"image_size", 32}, {"classes", 10}},
      {{"type", "resnet"},
       {"in_channels", 1},
       {"image_size", 16},
       {"classes", 4},
       {"widths", {8, 16}},
       {"blocks", {1, 3}}},
      gpt({}),
      gpt({{"tie_embeddings", false}, {"bias", false}}),
      gpt({{"positions", "rope"}, {"norm", "rmsnorm"}, {"gated_mlp", true}, {"n_kv_head", 2}}),
      gpt({{"mlp_hidden", 40}, {"n_layer", 3}})};
  for (const nlohmann::json& spec : specs) {
    for (DType dtype : {DType::f32, DType::f64}) {
      ModuleOptions opt;
      opt.dtype = dtype;
      const std::shared_ptr<Model> model = buildModel(spec, opt);
      int64_t bytes = 0;
      for (const auto& [name, p] : model->namedParameters())
        bytes += p.numel() * static_cast<int64_t>(dtypeSize(p.dtype()));
      const ParameterFootprint f = parameterFootprint(spec, dtype);
      EXPECT_EQ(f.params, model->numParameters()) << spec.dump();
      EXPECT_EQ(f.trainable_params, model->numParameters(true)) << spec.dump();
      EXPECT_EQ(f.bytes, bytes) << spec.dump() << " " << dtypeName(dtype);
      EXPECT_EQ(f.dtype, dtype);
    }
  }
}

nlohmann::json gptConfig(int64_t n_layer, int64_t d_model, const std::string& optimizer) {
  return {
      {"name", "gpt"},
      {"model",
       {{"type", "gpt"},
        {"vocab_size", 256},
        {"block_size", 32},
        {"n_layer", n_layer},
        {"n_head", 4},
        {"d_model", d_model}}},
      {"dataset",
       {{"format", "text"}, {"path", "corpus.txt"}, {"tokenizer", "bytes"}, {"block_size", 32}}},
      {"training", {{"max_steps", 3}, {"batch_size", 8}, {"eval_batches", 1}}},
      {"methods", {{{"name", optimizer}}}}};
}

TEST_F(EstimateTest, AModelLargerThanTheCapacityIsAnsweredWithoutBuildingIt) {
  writeText(2000);
  // 96 layers of width 16384: about 310 G parameters, 1.2 TB in f32 before any gradient.
  const RunConfig config = RunConfig::parse(gptConfig(96, 16384, "adamw"), dir_.string());
  const ParameterFootprint f = parameterFootprint(config.model);
  ASSERT_GT(f.params, 300'000'000'000);
  const auto t0 = std::chrono::steady_clock::now();
  const Estimate e = estimateRun(config);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 0.5);
  ASSERT_GT(e.capacity_bytes, 0) << e.capacity_source;
  EXPECT_FALSE(e.fits);
  EXPECT_FALSE(e.calibrated());
  const auto tag = [&](MemoryTag t) { return e.tag_bytes[static_cast<size_t>(t)]; };
  EXPECT_EQ(tag(MemoryTag::parameters), 4 * f.params);
  EXPECT_EQ(tag(MemoryTag::gradients), 4 * f.params);
  EXPECT_EQ(tag(MemoryTag::optimizer_state), 8 * f.params);  // AdamW's two f32 moments
  EXPECT_EQ(tag(MemoryTag::activations), 0);
  EXPECT_EQ(e.peak_bytes, 16 * f.params);
  EXPECT_EQ(e.planned_steps, 3);
  EXPECT_EQ(e.step_time_s, 0);
  EXPECT_NE(e.note.find("not built"), std::string::npos) << e.note;
  EXPECT_NE(e.note.find("lower bound"), std::string::npos) << e.note;
  const nlohmann::json j = e.toJson();
  EXPECT_EQ(j.at("note"), e.note);
  EXPECT_EQ(j.at("fits"), false);
  EXPECT_TRUE(j.at("calibration").empty());
}

TEST_F(EstimateTest, TheLowerBoundCountsEachOptimizersStateAndStaysBelowTheRun) {
  writeText(20000);
  const int64_t params = parameterFootprint(gptConfig(1, 32, "adamw")["model"]).params;
  const std::pair<const char*, int64_t> per_param[] = {
      {"adamw", 8}, {"sophia", 8}, {"lion", 4}, {"sgd", 4}, {"adamw8bit", 2}, {"adafactor", 0}};
  for (const auto& [name, bytes] : per_param) {
    const RunConfig config = RunConfig::parse(gptConfig(1, 32, name), dir_.string());
    const auto bound = residentLowerBound(config);
    EXPECT_EQ(bound[static_cast<size_t>(MemoryTag::parameters)], 4 * params) << name;
    EXPECT_EQ(bound[static_cast<size_t>(MemoryTag::gradients)], 4 * params) << name;
    EXPECT_EQ(bound[static_cast<size_t>(MemoryTag::optimizer_state)], bytes * params) << name;
  }
  // SGD without momentum keeps no state.
  nlohmann::json plain = gptConfig(1, 32, "sgd");
  plain["methods"][0]["momentum"] = 0.0;
  EXPECT_EQ(residentLowerBound(RunConfig::parse(
                plain, dir_.string()))[static_cast<size_t>(MemoryTag::optimizer_state)],
            0);
  // A lower bound of what the built run holds, tag by tag.
  EstimateOptions fast;
  fast.warmup_steps = 0;
  fast.timed_steps = 1;
  for (const char* name : {"adamw", "lion", "adamw8bit"}) {
    const RunConfig config = RunConfig::parse(gptConfig(1, 32, name), dir_.string());
    const auto bound = residentLowerBound(config);
    const Estimate e = estimateRun(config, fast);
    ASSERT_TRUE(e.calibrated());
    for (int t = 0; t < kNumMemoryTags; ++t)
      EXPECT_LE(bound[static_cast<size_t>(t)], e.tag_bytes[static_cast<size_t>(t)])
          << name << " " << memoryTagName(static_cast<MemoryTag>(t));
  }
}

TEST_F(EstimateTest, ACapacityOverridePlansForASmallerMachine) {
  writeText(20000);
  const RunConfig config = RunConfig::parse(gptConfig(1, 32, "adamw"), dir_.string());
  EstimateOptions o;
  o.warmup_steps = 0;
  o.timed_steps = 1;
  o.override_capacity_bytes = int64_t{1} << 40;
  Estimate e = estimateRun(config, o);
  EXPECT_TRUE(e.fits);
  EXPECT_EQ(e.capacity_bytes, int64_t{1} << 40);
  EXPECT_EQ(e.capacity_source.rfind("override", 0), 0u) << e.capacity_source;
  // Above the lower bound, below the measured peak: built, calibrated, and does not fit.
  int64_t bound = 0;
  for (int64_t b : residentLowerBound(config)) bound += b;
  ASSERT_LT(bound + 1, e.peak_bytes);
  o.override_capacity_bytes = bound + 1;
  e = estimateRun(config, o);
  EXPECT_TRUE(e.calibrated());
  EXPECT_TRUE(e.note.empty()) << e.note;
  EXPECT_FALSE(e.fits);
  EXPECT_GT(e.peak_bytes, e.capacity_bytes);
  EXPECT_GT(e.step_time_s, 0);
  // At or below the lower bound: not built.
  o.override_capacity_bytes = bound - 1;
  e = estimateRun(config, o);
  EXPECT_FALSE(e.calibrated());
  EXPECT_FALSE(e.fits);
  EXPECT_EQ(e.peak_bytes, bound);
  o.override_capacity_bytes = -1;
  EXPECT_THROW(estimateRun(config, o), Error);
}

TEST_F(EstimateTest, ACancelledEstimateThrows) {
  writeText(20000);
  const RunConfig config = RunConfig::parse(gptConfig(1, 32, "adamw"), dir_.string());
  std::atomic<bool> cancel{true};
  EstimateOptions o;
  o.cancel = &cancel;
  EXPECT_THROW(estimateRun(config, o), EstimateCancelled);
}

}  // namespace
}  // namespace lathe::run
