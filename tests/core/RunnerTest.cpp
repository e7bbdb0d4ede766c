// Run configs (validation messages, defaults, canonical hash), the method registry, and the
// runner end to end on a small CSV dataset: events, the store's records, failure, cancel and
// resume, the queue.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/base/Error.h"
#include "core/methods/Method.h"
#include "core/run/RunConfig.h"
#include "core/run/Runner.h"
#include "core/store/RunStore.h"

namespace lathe::run {
namespace {

namespace fs = std::filesystem;

class RunnerTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(testing::TempDir()) /
           ("lathe_runner_" + std::to_string(::getpid()) + "_" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // Three classes by which of three features is largest: learnable in a few epochs.
    std::mt19937 rng(5);
    std::normal_distribution<double> n(0.0, 1.0);
    std::ofstream csv(dir_ / "data.csv");
    csv << "a,b,c,label\n";
    for (int i = 0; i < 300; ++i) {
      double v[3] = {n(rng), n(rng), n(rng)};
      v[i % 3] += 2.5;
      csv << v[0] << "," << v[1] << "," << v[2] << "," << i % 3 << "\n";
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  nlohmann::json config(int64_t epochs = 5) const {
    return {{"name", "csv-mlp"},
            {"tags", {"test"}},
            {"seed", 3},
            {"model", {{"type", "mlp"}, {"input_dim", 3}, {"hidden", {16}}, {"classes", 3}}},
            {"dataset", {{"format", "csv"}, {"path", "data.csv"}, {"label_column", "label"}}},
            {"training", {{"epochs", epochs}, {"batch_size", 16}, {"checkpoint_every", 5}}},
            {"methods", {{{"name", "adamw"}, {"lr", 0.01}}}}};
  }
  RunnerOptions options() const {
    RunnerOptions o;
    o.db_path = (dir_ / "runs.db").string();
    o.latency_repeats = 3;
    return o;
  }
  fs::path dir_;
};

std::string errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RunConfig, ErrorsPointAtTheField) {
  nlohmann::json base = {{"model", {{"type", "mlp"}, {"input_dim", 4}, {"classes", 2}}},
                         {"dataset", {{"format", "csv"}, {"path", "x.csv"}}}};
  auto with = [&](const std::string& key, const nlohmann::json& v) {
    nlohmann::json j = base;
    j[key] = v;
    return errorOf([&] { RunConfig::parse(j); });
  };
  EXPECT_NE(with("methods", {{{"name", "sgd"}}, {{"name", "adamw"}, {"lr", "fast"}}})
                .find("methods[1].lr: expected a number in [0, 10], got \"fast\""),
            std::string::npos);
  EXPECT_NE(with("methods", {{{"name", "lora9"}}}).find("methods[0].name: unknown method 'lora9'"),
            std::string::npos);
  EXPECT_NE(with("methods", {{{"name", "sgd"}}, {{"name", "adamw"}}}).find("one optimizer"),
            std::string::npos);
  EXPECT_NE(with("methods", {{{"name", "sgd"}, {"momentun", 0.9}}}).find("methods[0].momentun"),
            std::string::npos);
  EXPECT_NE(with("training", {{"batch_size", 0}}).find("training.batch_size"), std::string::npos);
  EXPECT_NE(with("training", {{"epoch", 3}}).find("training: unknown field(s) epoch"),
            std::string::npos);
  EXPECT_NE(with("hardware", {{"device", "tpu"}}).find("hardware.device"), std::string::npos);
  EXPECT_NE(with("version", 99).find("config.version"), std::string::npos);
  nlohmann::json no_model = base;
  no_model.erase("model");
  EXPECT_NE(errorOf([&] { RunConfig::parse(no_model); }).find("model"), std::string::npos);
}

TEST(RunConfig, DefaultsCanonicalFormAndHash) {
  nlohmann::json a = {{"model", {{"type", "mlp"}, {"input_dim", 4}, {"classes", 2}}},
                      {"dataset", {{"format", "csv"}, {"path", "x.csv"}}}};
  nlohmann::json b = a;
  b["methods"] = {{{"name", "adamw"}, {"lr", 0.001}}};
  b["training"] = {{"epochs", 1}, {"batch_size", 64}};
  const RunConfig ca = RunConfig::parse(a), cb = RunConfig::parse(b);
  EXPECT_EQ(ca.canonical(), cb.canonical());
  EXPECT_EQ(ca.hash(), cb.hash());
  EXPECT_EQ(ca.optimizerMethod().at("name"), "adamw");
  EXPECT_EQ(ca.optimizerMethod().at("beta2"), 0.999);
  b["seed"] = 1;
  EXPECT_NE(RunConfig::parse(b).hash(), ca.hash());
  // The canonical form parses back to itself.
  EXPECT_EQ(RunConfig::parse(ca.toJson()).canonical(), ca.canonical());
}

TEST(RunConfig, ShippedExamplesAreValid) {
  for (const char* name : {"fashion_mlp.json", "fashion_cnn.json", "text_gpt_tiny.json"}) {
    const std::string path = std::string(LATHE_TEST_DATA_DIR) + "/../../resources/examples/" + name;
    EXPECT_NO_THROW(RunConfig::load(path)) << name;
  }
}

TEST(MethodRegistry, SchemaJsonListsOptimizersWithTheirParameters) {
  const nlohmann::json j = methods::MethodRegistry::instance().toJson();
  bool adamw = false;
  for (const auto& m : j.at("methods"))
    if (m.at("name") == "adamw") {
      adamw = true;
      EXPECT_EQ(m.at("category"), "optimizer");
      bool lr = false;
      for (const auto& p : m.at("params"))
        if (p.at("name") == "lr") {
          lr = true;
          EXPECT_EQ(p.at("type"), "number");
          EXPECT_EQ(p.at("default"), 1e-3);
          EXPECT_TRUE(p.at("log_scale").get<bool>());
        }
      EXPECT_TRUE(lr);
    }
  EXPECT_TRUE(adamw);
  EXPECT_FALSE(j.at("conflicts").empty());
}

TEST_F(RunnerTest, TrainsRecordsAndSummarisesARun) {
  Runner r(RunConfig::parse(config(), dir_.string()), options());
  std::vector<EventType> seen;
  int steps = 0, evals = 0;
  r.subscribe([&](const RunEvent& e) {
    seen.push_back(e.type);
    steps += e.type == EventType::step;
    evals += e.type == EventType::eval;
  });
  r.runHere();
  EXPECT_EQ(r.status(), store::Status::done);
  store::RunStore db(options().db_path);
  const auto rec = db.getRun(r.runId());
  EXPECT_EQ(rec.status, store::Status::done) << rec.message;
  EXPECT_EQ(rec.name, "csv-mlp");
  EXPECT_EQ(rec.tags, std::vector<std::string>{"test"});
  // 300 rows: 30 test, 27 val, 243 train -> 15 batches of 16 per epoch, 5 epochs.
  EXPECT_EQ(steps, 75);
  EXPECT_EQ(evals, 5);
  EXPECT_EQ(db.series(r.runId(), "loss").size(), 75u);
  EXPECT_EQ(db.series(r.runId(), "val_accuracy").size(), 5u);
  auto s = db.summaries(r.runId());
  for (const char* k : {"params", "trainable_params", "test_accuracy", "test_loss", "model_bytes",
                        "latency_b1_ms", "latency_b64_ms", "peak_memory_bytes", "train_time_s",
                        "samples_per_s", "optimizer_state_bytes", "total_time_s"})
    EXPECT_TRUE(s.count(k)) << "summary lacks " << k;
  EXPECT_GT(std::get<double>(s.at("test_accuracy")), 0.8);
  EXPECT_EQ(std::get<double>(s.at("params")), 3 * 16 + 16 + 16 * 3 + 3);
  bool model = false;
  for (const auto& a : db.artifacts(r.runId())) model |= a.kind == "model" && fs::exists(a.path);
  EXPECT_TRUE(model);
  ASSERT_TRUE(db.latestCheckpoint(r.runId()).has_value());
  EXPECT_EQ(db.latestCheckpoint(r.runId())->step, 75);
}

TEST_F(RunnerTest, AMissingDatasetFailsTheRunWithItsMessage) {
  nlohmann::json c = config();
  c["dataset"]["path"] = "nowhere.csv";
  Runner r(RunConfig::parse(c, dir_.string()), options());
  r.runHere();
  EXPECT_EQ(r.status(), store::Status::failed);
  store::RunStore db(options().db_path);
  const auto rec = db.getRun(r.runId());
  EXPECT_EQ(rec.status, store::Status::failed);
  EXPECT_NE(rec.message.find("nowhere.csv"), std::string::npos) << rec.message;
}

TEST_F(RunnerTest, CancelledRunResumesToTheSameEnd) {
  // Uninterrupted reference.
  Runner full(RunConfig::parse(config(), dir_.string()), options());
  full.runHere();
  ASSERT_EQ(full.status(), store::Status::done);

  Runner r(RunConfig::parse(config(), dir_.string()), options());
  r.subscribe([&](const RunEvent& e) {
    if (e.type == EventType::step && e.step.step == 23) r.cancel();
  });
  r.runHere();
  EXPECT_EQ(r.status(), store::Status::cancelled);
  auto resumed = Runner::resume(r.runId(), options());
  int first_step = -1;
  resumed->subscribe([&](const RunEvent& e) {
    if (e.type == EventType::step && first_step < 0) first_step = static_cast<int>(e.step.step);
  });
  resumed->runHere();
  EXPECT_EQ(resumed->status(), store::Status::done);
  EXPECT_EQ(first_step, 24);
  store::RunStore db(options().db_path);
  auto a = db.summaries(full.runId()), b = db.summaries(r.runId());
  EXPECT_EQ(std::get<double>(a.at("test_loss")), std::get<double>(b.at("test_loss")));
  EXPECT_THROW(Runner::resume(r.runId(), options()), Error);  // already done
}

TEST_F(RunnerTest, PauseHoldsBetweenStepsAndCancelEndsIt) {
  Runner r(RunConfig::parse(config(50), dir_.string()), options());
  std::atomic<int> paused{0};
  r.subscribe([&](const RunEvent& e) {
    if (e.type == EventType::step && e.step.step == 3) r.pause();
    if (e.type == EventType::status && e.status == store::Status::paused) paused = 1;
  });
  r.start();
  for (int i = 0; i < 2000 && paused == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(paused.load(), 1);
  EXPECT_EQ(r.status(), store::Status::paused);
  r.cancel();
  EXPECT_EQ(r.wait(), store::Status::cancelled);
}

TEST_F(RunnerTest, QueueRunsConfigsInOrder) {
  RunQueue q(options());
  std::vector<int64_t> order;
  std::mutex m;
  q.subscribe([&](const RunEvent& e) {
    if (e.type == EventType::status && e.status == store::Status::done) {
      std::lock_guard<std::mutex> l(m);
      order.push_back(e.run_id);
    }
  });
  const int64_t a = q.add(RunConfig::parse(config(1), dir_.string()));
  const int64_t b = q.add(RunConfig::parse(config(1), dir_.string()));
  q.start();
  q.wait();
  EXPECT_EQ(order, (std::vector<int64_t>{a, b}));
  // The queue serves again after it ran empty.
  nlohmann::json c = config(1);
  c["training"]["schedule"] = {{"kind", "cosine"}, {"warmup_steps", 1000}};  // longer than the run
  const int64_t d = q.add(RunConfig::parse(c, dir_.string()));
  q.start();
  q.wait();
  EXPECT_EQ(order, (std::vector<int64_t>{a, b, d}));
}

}  // namespace
}  // namespace lathe::run
