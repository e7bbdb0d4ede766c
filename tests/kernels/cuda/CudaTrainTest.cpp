// Training on cuda:0 through the real Trainer and optimizers: an MLP and a small GPT train 100
// steps from the same initial weights and data as on the CPU, and the loss curves agree within
// f32 tolerance (TF32 is off unless LATHE_ALLOW_TF32 is set). The steady-state steps make no
// cudaMalloc. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <tuple>

#include "core/autograd/Autograd.h"
#include "core/backend/Backend.h"
#include "core/data/TextDataset.h"
#include "core/ops/Ops.h"
#include "core/tensor/Random.h"
#include "core/train/Trainer.h"

namespace lathe {
namespace {

const Device kGpu = Device::cuda(0);

data::LoadedData classification(int64_t n, int64_t features, int64_t classes) {
  manualSeed(17);
  NoGradGuard g;
  Tensor x = randn({n, features});
  Tensor w = randn({features, classes});
  Tensor y = argmax(matmul(x, w), 1);  // a learnable labelling
  data::LoadedData d;
  d.train = std::make_shared<data::ArrayDataset>(x, y);
  d.task = data::TaskKind::classification;
  d.input_shape = {features};
  d.classes = classes;
  return d;
}

data::LoadedData tokens(int64_t n_tokens, int64_t block) {
  std::vector<int32_t> t(static_cast<size_t>(n_tokens));
  for (int64_t i = 0; i < n_tokens; ++i)  // a periodic stream with some structure to learn
    t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7 + (i / 13) * 3) % 64);
  data::LoadedData d;
  d.train = std::make_shared<data::TokenWindowDataset>(std::move(t), block);
  d.task = data::TaskKind::language_model;
  d.input_shape = {block};
  d.vocab_size = 64;
  return d;
}

using MakeOptimizer = std::function<std::unique_ptr<optim::Optimizer>(Module&)>;

std::unique_ptr<optim::Optimizer> adamw(Module& m) {
  optim::AdamWOptions a;
  a.lr = 2e-3;
  return optim::makeAdamW(m, a);
}

std::vector<double> trainLosses(const nlohmann::json& spec, const data::LoadedData& data,
                                Device device, int64_t steps, int64_t batch,
                                DType compute = DType::f32, const MakeOptimizer& make = adamw,
                                CheckpointMode checkpointing = CheckpointMode::none) {
  manualSeed(5);
  auto model = buildModel(spec);  // initialised on the CPU: the same weights for both runs
  model->to(device);
  if (checkpointing != CheckpointMode::none) model->setCheckpointing(checkpointing, 1);
  train::TrainOptions o;
  o.batch_size = batch;
  o.max_steps = steps;
  o.clip_norm = 1.0;
  o.device = device;
  o.prefetch = 0;
  o.compute_dtype = compute;
  auto opt = make(*model);
  const double lr = opt->lr();
  train::Trainer t(model, std::move(opt), optim::LrSchedule(lr, {}), data, o);
  std::vector<double> losses;
  int64_t mallocs_warm = -1;
  t.hooks().on_step = [&](const train::StepMetrics& m) {
    losses.push_back(m.loss);
    // Steady state: after the first epoch (32 batches), when every size class has been seen.
    if (m.step == 40) mallocs_warm = allocatorFor(device).stats().system_allocations;
  };
  t.run();
  if (device.type == DeviceType::cuda) {
    EXPECT_EQ(allocatorFor(device).stats().system_allocations, mallocs_warm)
        << "cudaMalloc in steady-state training steps";
  }
  return losses;
}

void expectSameCurve(const std::vector<double>& cpu, const std::vector<double>& gpu, double rtol) {
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i)
    EXPECT_NEAR(gpu[i], cpu[i], rtol * std::max(1.0, std::abs(cpu[i]))) << "step " << i + 1;
  EXPECT_LT(cpu.back(), cpu.front());
}

TEST(CudaTrain, MlpMatchesTheCpuFor100Steps) {
  if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no GPU: CUDA tests skipped";
  const nlohmann::json spec = {
      {"type", "mlp"}, {"input_dim", 32}, {"hidden", {64, 64}}, {"classes", 5}};
  auto data = classification(2048, 32, 5);
  const auto cpu = trainLosses(spec, data, Device::cpu(), 100, 64);
  const auto gpu = trainLosses(spec, data, kGpu, 100, 64);
  expectSameCurve(cpu, gpu, 2e-3);
}

TEST(CudaTrain, SmallGptMatchesTheCpuFor100Steps) {
  if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no GPU: CUDA tests skipped";
  const nlohmann::json spec = {{"type", "gpt"}, {"vocab_size", 64}, {"block_size", 32},
                               {"n_layer", 2},  {"n_head", 4},      {"d_model", 64}};
  auto data = tokens(40000, 32);
  const auto cpu = trainLosses(spec, data, Device::cpu(), 100, 16);
  const auto gpu = trainLosses(spec, data, kGpu, 100, 16);
  expectSameCurve(cpu, gpu, 5e-3);
}

// Mixed precision on the GPU: bf16 autocast (cuBLASLt bf16 GEMMs, flash attention in bf16,
// f32 norms and losses, f32 master weights) follows the f32 CPU curve within bf16's precision
// and ends within 2% of its loss.
TEST(CudaTrain, SmallGptBf16AutocastTracksTheF32Cpu) {
  if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no GPU: CUDA tests skipped";
  const nlohmann::json spec = {{"type", "gpt"}, {"vocab_size", 64}, {"block_size", 32},
                               {"n_layer", 2},  {"n_head", 4},      {"d_model", 64}};
  auto data = tokens(40000, 32);
  const auto cpu = trainLosses(spec, data, Device::cpu(), 100, 16);
  const auto gpu = trainLosses(spec, data, kGpu, 100, 16, DType::bf16);
  expectSameCurve(cpu, gpu, 5e-2);
  EXPECT_LT(std::abs(gpu.back() - cpu.back()), 0.02 * cpu.back())
      << "f32 CPU " << cpu.back() << ", bf16 GPU " << gpu.back();
}

// fp8 training on the GPU (e4m3/e5m2 linears through cuBLASLt with delayed scaling, bf16
// elsewhere) follows the f32 CPU curve and ends within 3% of its loss.
TEST(CudaTrain, SmallGptFp8TracksTheF32Cpu) {
  if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no GPU: CUDA tests skipped";
  const nlohmann::json spec = {{"type", "gpt"}, {"vocab_size", 64}, {"block_size", 32},
                               {"n_layer", 2},  {"n_head", 4},      {"d_model", 64}};
  auto data = tokens(40000, 32);
  const auto cpu = trainLosses(spec, data, Device::cpu(), 100, 16);
  const auto gpu = trainLosses(spec, data, kGpu, 100, 16, DType::f8e4m3);
  expectSameCurve(cpu, gpu, 1e-1);
  EXPECT_LT(std::abs(gpu.back() - cpu.back()), 0.03 * cpu.back())
      << "f32 CPU " << cpu.back() << ", fp8 GPU " << gpu.back();
}

// The optimizers built from tensor ops (Lion, Sophia-G with its curvature pass, Adafactor) and
// 8-bit AdamW's fused kernel train on the GPU as on the CPU. 8-bit AdamW's codes may differ by
// one where f32 rounding moves a moment across a code boundary, so its tolerance is looser.
TEST(CudaTrain, EveryOptimizerMatchesTheCpu) {
  if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no GPU: CUDA tests skipped";
  const nlohmann::json spec = {
      {"type", "mlp"}, {"input_dim", 32}, {"hidden", {64, 64}}, {"classes", 5}};
  auto data = classification(2048, 32, 5);
  const std::vector<std::tuple<std::string, MakeOptimizer, double>> cases = {
      {"sgd",
       [](Module& m) {
         optim::SgdOptions o;
         o.lr = 0.05;
         o.momentum = 0.9;
         return optim::makeSgd(m, o);
       },
       2e-3},
      {"lion",
       [](Module& m) {
         optim::LionOptions o;
         o.lr = 3e-4;
         return optim::makeLion(m, o);
       },
       2e-3},
      {"sophia-g",
       [](Module& m) {
         optim::SophiaOptions o;
         o.lr = 3e-4;
         return optim::makeSophia(m, o);
       },
       5e-3},
      {"adafactor", [](Module& m) { return optim::makeAdafactor(m, {}); }, 2e-3},
      {"adamw8bit",
       [](Module& m) {
         optim::AdamW8bitOptions o;
         o.lr = 2e-3;
         o.min_8bit_size = 256;  // the 64x64 and 32x64 matrices quantized
         o.block_size = 256;
         return optim::makeAdamW8bit(m, o);
       },
       2e-2}};
  for (const auto& [name, make, rtol] : cases) {
    SCOPED_TRACE(name);
    const auto cpu = trainLosses(spec, data, Device::cpu(), 60, 64, DType::f32, make);
    const auto gpu = trainLosses(spec, data, kGpu, 60, 64, DType::f32, make);
    expectSameCurve(cpu, gpu, rtol);
  }
}

// Activation checkpointing on the GPU: recomputing the blocks in backward gives the same losses
// as keeping the activations (the same kernels run on the same inputs).
TEST(CudaTrain, CheckpointedGptMatchesTheUncheckpointedOne) {
  if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no GPU: CUDA tests skipped";
  const nlohmann::json spec = {{"type", "gpt"}, {"vocab_size", 64}, {"block_size", 32},
                               {"n_layer", 2},  {"n_head", 4},      {"d_model", 64}};
  auto data = tokens(40000, 32);
  const auto plain = trainLosses(spec, data, kGpu, 40, 16);
  for (CheckpointMode mode : {CheckpointMode::full, CheckpointMode::selective}) {
    const auto ck = trainLosses(spec, data, kGpu, 40, 16, DType::f32, adamw, mode);
    expectSameCurve(plain, ck, 1e-5);
  }
}

}  // namespace
}  // namespace lathe
