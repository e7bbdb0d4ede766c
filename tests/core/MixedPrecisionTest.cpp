// Mixed precision: which ops autocast runs low, in f32 or promoted; gradients reach f32 master
// weights; the Trainer trains under bf16 autocast close to f32; fp16 dynamic loss scaling skips
// an overflowing step (parameters untouched), halves the scale, grows it after clean steps, and
// resumes bit-exactly with its scaler state; the precision method sets the options.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/autograd/Autograd.h"
#include "core/base/Error.h"
#include "core/methods/Method.h"
#include "core/ops/Autocast.h"
#include "core/ops/Ops.h"
#include "core/tensor/Random.h"
#include "core/train/Trainer.h"

namespace lathe {
namespace {

namespace fs = std::filesystem;

double maxAbsDiff(const Tensor& a, const Tensor& b) {
  NoGradGuard g;
  return max(abs(sub(a.to(DType::f64), b.to(DType::f64)))).item();
}

TEST(Autocast, OpsRunLowInF32OrPromoted) {
  manualSeed(1);
  const Tensor x = randn({4, 8}), w = randn({6, 8}), b = randn({6});
  EXPECT_FALSE(autocastDType().has_value());
  {
    AutocastGuard guard(DType::bf16);
    ASSERT_EQ(autocastDType(), DType::bf16);
    const Tensor y = linear(x, w, b);
    EXPECT_EQ(y.dtype(), DType::bf16);
    EXPECT_EQ(matmul(x, w.transpose(0, 1)).dtype(), DType::bf16);
    EXPECT_EQ(softmax(y).dtype(), DType::f32);
    EXPECT_EQ(logSoftmax(y).dtype(), DType::f32);
    EXPECT_EQ(sum(y).dtype(), DType::f32);
    EXPECT_EQ(mean(y).dtype(), DType::f32);
    EXPECT_EQ(layerNorm(y, Tensor::ones({6}), Tensor::zeros({6})).dtype(), DType::f32);
    EXPECT_EQ(add(randn({4, 6}), y).dtype(), DType::f32);  // the residual stream stays f32
    EXPECT_EQ(relu(y).dtype(), DType::bf16);               // others keep their input's dtype
    EXPECT_EQ(crossEntropy(y, Tensor::fromVector(std::vector<int64_t>{0, 1, 2, 3}, {4})).dtype(),
              DType::f32);
    // f64 is never cast.
    EXPECT_EQ(linear(x.to(DType::f64), w.to(DType::f64)).dtype(), DType::f64);
    {
      AutocastGuard off(DType::f32);
      EXPECT_FALSE(autocastDType().has_value());
      EXPECT_EQ(linear(x, w).dtype(), DType::f32);
    }
    EXPECT_EQ(autocastDType(), DType::bf16);
    // Within bf16's precision of the f32 result.
    AutocastGuard off(DType::f32);
    EXPECT_LT(maxAbsDiff(y, linear(x, w, b)), 0.1);
  }
  EXPECT_FALSE(autocastDType().has_value());
  // Outside autocast mixed dtypes are an error, as everywhere.
  EXPECT_THROW(add(x, x.to(DType::bf16)), Error);
  EXPECT_THROW(AutocastGuard(DType::i64), Error);
}

TEST(Autocast, GradientsReachF32MasterWeights) {
  manualSeed(2);
  Tensor w = randn({5, 8});
  w.setRequiresGrad();
  const Tensor x = randn({16, 8});
  const Tensor t = Tensor::fromVector(std::vector<int64_t>(16, 1), {16});
  {
    AutocastGuard guard(DType::bf16);
    crossEntropy(linear(x, w), t).backward();
  }
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().dtype(), DType::f32);
  const Tensor low_grad = w.grad().clone();
  w.zeroGrad();
  crossEntropy(linear(x, w), t).backward();
  // bf16 keeps 8 bits of mantissa: gradients agree to about 1%.
  NoGradGuard g;
  const double scale = max(abs(w.grad())).item();
  EXPECT_LT(maxAbsDiff(low_grad, w.grad()), 0.03 * scale);
}

// Blobs in 8-D as in TrainerTest; `poison` examples get inputs of 1e6, which overflow f16
// (largest finite 65504) in the first matmul.
data::LoadedData blobs(int64_t n, const std::vector<int64_t>& poison = {}) {
  manualSeed(11);
  NoGradGuard g;
  Tensor x = randn({n, 8});
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    labels[static_cast<size_t>(i)] = i % 3;
    x.slice(0, i, i + 1)
        .slice(1, i % 3, i % 3 + 1)
        .copy_(add(x.slice(0, i, i + 1).slice(1, i % 3, i % 3 + 1), 3.0));
  }
  for (int64_t i : poison) x.slice(0, i, i + 1).fill_(1e6);
  data::LoadedData d;
  d.train = std::make_shared<data::ArrayDataset>(x, Tensor::fromVector(labels, {n}));
  d.task = data::TaskKind::classification;
  d.input_shape = {8};
  d.classes = 3;
  return d;
}

struct TrainRun {
  std::shared_ptr<Model> model;
  std::unique_ptr<train::Trainer> trainer;
};

TrainRun makeRun(const train::TrainOptions& o, data::LoadedData data) {
  TrainRun r;
  manualSeed(5);
  r.model = buildModel(
      nlohmann::json{{"type", "mlp"}, {"input_dim", 8}, {"hidden", {32}}, {"classes", 3}});
  optim::AdamWOptions a;
  a.lr = 1e-2;
  auto opt = optim::makeAdamW(*r.model, a);
  optim::LrScheduleOptions so;
  so.kind = optim::ScheduleKind::constant;
  so.total_steps = 1000;
  r.trainer = std::make_unique<train::Trainer>(r.model, std::move(opt), optim::LrSchedule(a.lr, so),
                                               std::move(data), o);
  return r;
}

train::TrainOptions options(int64_t steps) {
  train::TrainOptions o;
  o.max_steps = steps;
  o.batch_size = 16;
  o.shuffle = false;
  o.prefetch = 0;
  return o;
}

NamedTensors snapshot(Model& m) {
  NamedTensors out;
  for (const auto& [n, t] : m.stateDict()) out.emplace_back(n, t.clone());
  return out;
}

TEST(MixedPrecisionTrainer, Bf16TracksF32) {
  train::TrainOptions o = options(60);
  TrainRun f32 = makeRun(o, blobs(192));
  o.compute_dtype = DType::bf16;
  TrainRun bf16 = makeRun(o, blobs(192));
  double last32 = 0, last16 = 0;
  for (int s = 0; s < 60; ++s) {
    last32 = f32.trainer->step().loss;
    last16 = bf16.trainer->step().loss;
  }
  EXPECT_LT(last32, 0.2);
  EXPECT_LT(std::abs(last16 - last32), 0.05) << "f32 " << last32 << ", bf16 " << last16;
  for (const auto& [n, p] : bf16.model->namedParameters()) EXPECT_EQ(p.dtype(), DType::f32) << n;
}

TEST(MixedPrecisionTrainer, Fp16LossScalingSurvivesAnInjectedOverflow) {
  train::TrainOptions o = options(12);
  o.compute_dtype = DType::f16;
  o.loss_scaling = true;
  o.init_loss_scale = 1024;
  o.scale_growth_interval = 4;
  // Batch 3 (examples 48..63, no shuffle) holds a poisoned example.
  TrainRun r = makeRun(o, blobs(192, {50}));
  std::vector<train::StepMetrics> steps;
  for (int s = 0; s < 12; ++s) {
    const NamedTensors before = snapshot(*r.model);
    steps.push_back(r.trainer->step());
    const train::StepMetrics& m = steps.back();
    if (s == 3) {
      EXPECT_TRUE(m.skipped);
      for (size_t i = 0; i < before.size(); ++i)
        EXPECT_EQ(maxAbsDiff(before[i].second, r.model->stateDict()[i].second), 0.0)
            << "the skipped step changed " << before[i].first;
    } else {
      EXPECT_FALSE(m.skipped) << "step " << s + 1;
      EXPECT_TRUE(std::isfinite(m.loss)) << "step " << s + 1;
    }
  }
  // 1024: x2 after steps 1-3? No: 4 clean steps are needed; steps 1-3 clean, step 4 overflows
  // (x0.5 -> 512, count reset), steps 5-8 clean (x2 -> 1024), steps 9-12 clean (x2 -> 2048).
  EXPECT_DOUBLE_EQ(steps[2].loss_scale, 1024);
  EXPECT_DOUBLE_EQ(steps[3].loss_scale, 512);
  EXPECT_DOUBLE_EQ(steps[7].loss_scale, 1024);
  EXPECT_DOUBLE_EQ(steps[11].loss_scale, 2048);
  EXPECT_EQ(steps[11].skipped_steps, 1);
  EXPECT_LT(steps[11].loss, steps[0].loss);
}

TEST(MixedPrecisionTrainer, ScalerStateResumesBitExactly) {
  const std::string ckpt = (fs::path(testing::TempDir()) / "lathe_mp_ckpt.safetensors").string();
  train::TrainOptions o = options(10);
  o.compute_dtype = DType::f16;
  o.loss_scaling = true;
  o.init_loss_scale = 256;
  o.scale_growth_interval = 3;
  TrainRun full = makeRun(o, blobs(192, {50}));
  full.trainer->run();
  TrainRun first = makeRun(o, blobs(192, {50}));
  for (int s = 0; s < 5; ++s) first.trainer->step();
  first.trainer->saveCheckpoint(ckpt);
  TrainRun second = makeRun(o, blobs(192, {50}));
  second.trainer->loadCheckpoint(ckpt);
  train::StepMetrics last;
  while (!second.trainer->finished()) last = second.trainer->step();
  EXPECT_EQ(last.skipped_steps, 1);
  const NamedTensors a = full.model->stateDict(), b = second.model->stateDict();
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(maxAbsDiff(a[i].second, b[i].second), 0.0) << a[i].first;
  fs::remove(ckpt);
}

// fp8 runs (emulated on the CPU) checkpoint their amax histories: a resumed run quantizes with
// the same delayed scales and ends bit-identical to an uninterrupted one. The MLP's 32x32 layer
// runs in fp8 (8 inputs and 3 classes are not multiples of 16: those layers stay bf16).
TEST(MixedPrecisionTrainer, Fp8ScalingStateResumesBitExactly) {
  const std::string ckpt = (fs::path(testing::TempDir()) / "lathe_fp8_ckpt.safetensors").string();
  train::TrainOptions o = options(8);
  o.compute_dtype = DType::f8e4m3;
  o.fp8_history = 4;
  auto make = [&] {
    TrainRun r;
    manualSeed(5);
    r.model = buildModel(
        nlohmann::json{{"type", "mlp"}, {"input_dim", 8}, {"hidden", {32, 32}}, {"classes", 3}});
    optim::AdamWOptions a;
    a.lr = 1e-2;
    auto opt = optim::makeAdamW(*r.model, a);
    r.trainer = std::make_unique<train::Trainer>(r.model, std::move(opt),
                                                 optim::LrSchedule(a.lr, {}), blobs(192), o);
    return r;
  };
  TrainRun full = make();
  full.trainer->run();
  ASSERT_NE(full.trainer->fp8State(), nullptr);
  EXPECT_EQ(full.trainer->fp8State()->layers(), 1);
  EXPECT_GT(full.trainer->fp8State()->fp8Linears(), 0);
  EXPECT_GT(full.trainer->fp8State()->bf16Fallbacks(), 0);
  TrainRun first = make();
  for (int s = 0; s < 5; ++s) first.trainer->step();  // past one turn of the 4-use history
  first.trainer->saveCheckpoint(ckpt);
  TrainRun second = make();
  second.trainer->loadCheckpoint(ckpt);
  while (!second.trainer->finished()) second.trainer->step();
  const NamedTensors a = full.model->stateDict(), b = second.model->stateDict();
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(maxAbsDiff(a[i].second, b[i].second), 0.0) << a[i].first;
  // The state belongs to fp8 runs: a bf16 run refuses it, naming the cause.
  train::TrainOptions bf = o;
  bf.compute_dtype = DType::bf16;
  manualSeed(5);
  auto model = buildModel(
      nlohmann::json{{"type", "mlp"}, {"input_dim", 8}, {"hidden", {32, 32}}, {"classes", 3}});
  train::Trainer other(model, optim::makeAdamW(*model, {}), optim::LrSchedule(1e-3, {}), blobs(192),
                       bf);
  try {
    other.loadCheckpoint(ckpt);
    ADD_FAILURE() << "a bf16 run loaded an fp8 checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fp8"), std::string::npos) << e.what();
  }
  fs::remove(ckpt);
}

TEST(PrecisionMethod, SetsTheTrainerOptions) {
  auto& reg = methods::MethodRegistry::instance();
  ASSERT_TRUE(reg.contains("precision"));
  auto m = reg.create("precision");
  m->configure(reg.validate({{"name", "precision"}, {"dtype", "fp16"}}, "methods[1]"));
  train::TrainOptions o;
  m->configureTraining(o);
  EXPECT_EQ(o.compute_dtype, DType::f16);
  EXPECT_TRUE(o.loss_scaling);
  EXPECT_DOUBLE_EQ(o.init_loss_scale, 65536);
  EXPECT_EQ(o.scale_growth_interval, 2000);
  m->configure(reg.validate({{"name", "precision"}}, "methods[1]"));
  train::TrainOptions b;
  m->configureTraining(b);
  EXPECT_EQ(b.compute_dtype, DType::bf16);
  EXPECT_FALSE(b.loss_scaling);
  m->configure(
      reg.validate({{"name", "precision"}, {"dtype", "fp8"}, {"fp8_history", 32}}, "methods[1]"));
  train::TrainOptions c;
  m->configureTraining(c);
  EXPECT_EQ(c.compute_dtype, DType::f8e4m3);
  EXPECT_EQ(c.fp8_history, 32);
  EXPECT_FALSE(c.loss_scaling);
  EXPECT_THROW(reg.validate({{"name", "precision"}, {"dtype", "fp4"}}, "methods[1]"), Error);
}

}  // namespace
}  // namespace lathe
