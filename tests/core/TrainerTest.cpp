// The training loop: it learns, gradient accumulation equals a bigger batch, a run stopped and
// resumed from its checkpoint ends with the same weights bit for bit, and a checkpoint of another
// model is refused without touching the trainer.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/autograd/Autograd.h"
#include "core/base/Error.h"
#include "core/ops/Ops.h"
#include "core/tensor/Random.h"
#include "core/train/Trainer.h"

namespace lathe::train {
namespace {

namespace fs = std::filesystem;

// Two Gaussian blobs in 8-D, labels by which blob: a task an MLP learns in a few steps.
data::LoadedData blobs(int64_t n, uint64_t seed) {
  manualSeed(seed);
  NoGradGuard g;
  Tensor x = randn({n, 8});
  std::vector<int64_t> labels(static_cast<size_t>(n));
  Tensor shift = Tensor::zeros({n, 8});
  for (int64_t i = 0; i < n; ++i) {
    labels[static_cast<size_t>(i)] = i % 3;
    shift.slice(0, i, i + 1).slice(1, i % 3, i % 3 + 1).fill_(3.0);
  }
  x = add(x, shift);
  data::LoadedData d;
  auto all = std::make_shared<data::ArrayDataset>(x, Tensor::fromVector(labels, {n}));
  auto split = data::trainValSplit(all, 0.25, seed);
  d.train = split.train;
  d.val = split.val;
  d.task = data::TaskKind::classification;
  d.input_shape = {8};
  d.classes = 3;
  return d;
}

nlohmann::json mlpSpec(double dropout) {
  return {
      {"type", "mlp"}, {"input_dim", 8}, {"hidden", {16}}, {"classes", 3}, {"dropout", dropout}};
}

struct TrainRun {
  std::shared_ptr<Model> model;
  std::unique_ptr<Trainer> trainer;
};

TrainRun makeRun(const TrainOptions& o, double dropout, uint64_t init_seed, bool adamw = true) {
  TrainRun r;
  manualSeed(init_seed);
  r.model = buildModel(mlpSpec(dropout));
  std::unique_ptr<optim::Optimizer> opt;
  if (adamw) {
    optim::AdamWOptions a;
    a.lr = 1e-2;
    opt = optim::makeAdamW(*r.model, a);
  } else {
    optim::SgdOptions s;
    s.lr = 0.1;
    s.momentum = 0.9;
    opt = optim::makeSgd(*r.model, s);
  }
  optim::LrScheduleOptions so;
  so.kind = optim::ScheduleKind::cosine;
  so.warmup_steps = 3;
  so.total_steps = 40;
  const double lr = opt->lr();
  r.trainer = std::make_unique<Trainer>(r.model, std::move(opt), optim::LrSchedule(lr, so),
                                        blobs(96, 7), o);
  return r;
}

std::string tempPath(const std::string& name) {
  return (fs::path(testing::TempDir()) / ("lathe_trainer_" + name)).string();
}

void expectBitEqual(const Module& a, const Module& b) {
  auto sa = a.stateDict(), sb = b.stateDict();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    Tensor x = sa[i].second.contiguous(), y = sb[i].second.contiguous();
    ASSERT_EQ(x.shape(), y.shape()) << sa[i].first;
    EXPECT_EQ(std::memcmp(x.rawData(), y.rawData(), x.nbytes()), 0) << sa[i].first << " differs";
  }
}

TEST(Trainer, LearnsSeparableBlobsAndReportsMetrics) {
  TrainOptions o;
  o.batch_size = 16;
  o.epochs = 10;
  o.seed = 3;
  TrainRun r = makeRun(o, 0.0, 11);
  std::vector<StepMetrics> steps;
  std::vector<EvalMetrics> evals;
  r.trainer->hooks().on_step = [&](const StepMetrics& m) { steps.push_back(m); };
  r.trainer->hooks().on_eval = [&](const EvalMetrics& e) { evals.push_back(e); };
  EXPECT_TRUE(r.trainer->run());
  ASSERT_EQ(static_cast<int64_t>(steps.size()), r.trainer->totalSteps());
  EXPECT_EQ(steps.back().step, r.trainer->totalSteps());
  EXPECT_LT(steps.back().loss, steps.front().loss);
  EXPECT_GT(steps.back().samples_per_s, 0);
  EXPECT_GT(steps.back().grad_norm, 0);
  EXPECT_GT(steps.back().memory.tag_peak[static_cast<int>(MemoryTag::optimizer_state)], 0);
  EXPECT_DOUBLE_EQ(steps.back().epoch, 10.0);
  ASSERT_EQ(evals.size(), 10u);           // once per epoch
  EXPECT_GT(evals.back().accuracy, 0.8);  // chance is 1/3
  EXPECT_EQ(evals.back().examples, 24);
}

TEST(Trainer, GradientAccumulationMatchesTheLargerBatch) {
  TrainOptions big;
  big.batch_size = 24;
  big.max_steps = 4;
  big.shuffle = false;
  TrainOptions small = big;
  small.batch_size = 12;
  small.grad_accum = 2;
  TrainRun a = makeRun(big, 0.0, 5, /*adamw=*/false);
  TrainRun b = makeRun(small, 0.0, 5, /*adamw=*/false);
  a.trainer->run();
  b.trainer->run();
  auto sa = a.model->stateDict(), sb = b.model->stateDict();
  for (size_t i = 0; i < sa.size(); ++i) {
    Tensor d = abs(sub(sa[i].second, sb[i].second));
    EXPECT_LT(max(d).item(), 1e-5) << sa[i].first;
  }
}

TEST(Trainer, ResumedRunEndsBitIdenticalToAnUninterruptedOne) {
  TrainOptions o;
  o.batch_size = 10;  // 72 train examples: 7 batches, so checkpoints fall mid-epoch
  o.max_steps = 17;
  o.grad_accum = 2;
  o.clip_norm = 0.5;
  o.seed = 21;
  o.prefetch = 2;
  TrainRun full = makeRun(o, 0.2, 1);
  full.trainer->run();

  const std::string ckpt = tempPath("resume.safetensors");
  {
    TrainRun first = makeRun(o, 0.2, 1);
    for (int i = 0; i < 6; ++i) first.trainer->step();
    first.trainer->saveCheckpoint(ckpt);
    first.trainer->step();  // work after the checkpoint is lost, as in a kill -9
  }
  const CheckpointInfo info = readCheckpointInfo(ckpt);
  EXPECT_EQ(info.step, 6);
  EXPECT_EQ(info.position.epoch, 1);  // 12 batches of 7 per epoch: mid-way through epoch 2
  EXPECT_EQ(info.position.batch, 5);

  TrainRun resumed = makeRun(o, 0.2, 999);  // other initial weights: the checkpoint replaces them
  resumed.trainer->loadCheckpoint(ckpt);
  EXPECT_EQ(resumed.trainer->stepCount(), 6);
  resumed.trainer->run();
  EXPECT_EQ(resumed.trainer->stepCount(), 17);
  expectBitEqual(*full.model, *resumed.model);
  auto so = full.trainer->optimizer().stateDict(), sr = resumed.trainer->optimizer().stateDict();
  ASSERT_EQ(so.size(), sr.size());
  for (size_t i = 0; i < so.size(); ++i) {
    Tensor x = so[i].second.contiguous(), y = sr[i].second.contiguous();
    EXPECT_EQ(std::memcmp(x.rawData(), y.rawData(), x.nbytes()), 0) << so[i].first;
  }
  fs::remove(ckpt);
}

TEST(Trainer, PeriodicCheckpointsAreWrittenAndReported) {
  TrainOptions o;
  o.batch_size = 12;
  o.max_steps = 5;
  o.checkpoint_every = 2;
  o.checkpoint_path = tempPath("periodic.safetensors");
  TrainRun r = makeRun(o, 0.0, 2);
  std::vector<int64_t> sizes;
  r.trainer->hooks().on_checkpoint = [&](const std::string& p, int64_t bytes) {
    EXPECT_EQ(p, o.checkpoint_path);
    sizes.push_back(bytes);
  };
  r.trainer->run();
  EXPECT_EQ(sizes.size(), 3u);  // steps 2, 4 and the last
  EXPECT_GT(sizes.front(), 0);
  EXPECT_EQ(readCheckpointInfo(o.checkpoint_path).step, 5);
  fs::remove(o.checkpoint_path);
}

TEST(Trainer, ShouldStopEndsTheLoopBetweenSteps) {
  TrainOptions o;
  o.batch_size = 12;
  o.max_steps = 50;
  TrainRun r = makeRun(o, 0.0, 2);
  r.trainer->hooks().should_stop = [&] { return r.trainer->stepCount() >= 3; };
  EXPECT_FALSE(r.trainer->run());
  EXPECT_EQ(r.trainer->stepCount(), 3);
}

TEST(Trainer, CheckpointOfAnotherModelIsRefusedAndNothingChanges) {
  TrainOptions o;
  o.batch_size = 12;
  o.max_steps = 3;
  const std::string ckpt = tempPath("other.safetensors");
  {
    manualSeed(1);
    auto other = buildModel({{"type", "mlp"}, {"input_dim", 8}, {"hidden", {4}}, {"classes", 3}});
    auto opt = optim::makeAdamW(*other, {});
    Trainer t(other, std::move(opt), optim::LrSchedule(1e-3, {}), blobs(96, 7), o);
    t.step();
    t.saveCheckpoint(ckpt);
  }
  TrainRun r = makeRun(o, 0.0, 2);
  r.trainer->step();
  auto before = r.model->stateDict();
  std::vector<Tensor> copies;
  for (auto& [n, t] : before) copies.push_back(t.clone());
  EXPECT_THROW(r.trainer->loadCheckpoint(ckpt), Error);
  EXPECT_EQ(r.trainer->stepCount(), 1);
  auto after = r.model->stateDict();
  for (size_t i = 0; i < after.size(); ++i)
    EXPECT_EQ(max(abs(sub(after[i].second, copies[i]))).item(), 0.0) << after[i].first;

  std::ofstream(ckpt, std::ios::trunc) << "not a checkpoint";
  try {
    r.trainer->loadCheckpoint(ckpt);
    FAIL() << "a damaged checkpoint was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(ckpt), std::string::npos) << e.what();
  }
  fs::remove(ckpt);
}

TEST(Trainer, LanguageModelOnBytesLowersTheLoss) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "the quick brown fox jumps over the lazy dog. ";
  const std::string path = tempPath("corpus.txt");
  std::ofstream(path) << text;
  data::LoadedData d = data::loadDataset(
      {{"format", "text"}, {"path", path}, {"block_size", 16}, {"val_fraction", 0.1}}, 1);
  EXPECT_EQ(d.task, data::TaskKind::language_model);
  EXPECT_EQ(d.vocab_size, 256);
  manualSeed(4);
  auto model = buildModel({{"type", "gpt"},
                           {"vocab_size", 256},
                           {"block_size", 16},
                           {"n_layer", 1},
                           {"n_head", 2},
                           {"d_model", 32}});
  optim::AdamWOptions a;
  a.lr = 3e-3;
  TrainOptions o;
  o.batch_size = 8;
  o.max_steps = 30;
  o.eval_every = 30;
  Trainer t(model, optim::makeAdamW(*model, a), optim::LrSchedule(a.lr, {}), d, o);
  std::vector<StepMetrics> steps;
  std::vector<EvalMetrics> evals;
  t.hooks().on_step = [&](const StepMetrics& m) { steps.push_back(m); };
  t.hooks().on_eval = [&](const EvalMetrics& e) { evals.push_back(e); };
  t.run();
  EXPECT_LT(steps.back().loss, steps.front().loss - 1.0);
  EXPECT_GT(steps.back().tokens_per_s, 0);
  ASSERT_EQ(evals.size(), 1u);
  EXPECT_NEAR(evals[0].perplexity, std::exp(evals[0].loss), 1e-9);
  fs::remove(path);
}

}  // namespace
}  // namespace lathe::train
