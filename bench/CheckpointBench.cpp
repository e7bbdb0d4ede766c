// lathe-bench checkpoint: activation checkpointing on a 12-layer GPT (d_model 256, T 256,
// batch 8, vocab 256; CPU-sized) for none / selective / full: peak activation bytes of a
// training step (MemoryTag::activations, above what was live before it) and median step time
// (forward + backward + an SGD update), with ratios against none. --device cuda:0 runs the same
// model on the GPU.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/Suites.h"
#include "core/autograd/Autograd.h"
#include "core/nn/Gpt.h"
#include "core/ops/Ops.h"
#include "core/tensor/Allocator.h"
#include "core/tensor/Random.h"

namespace lathe::bench {

int runCheckpoint(const Options& opts) {
  const int64_t L = 12, C = 256, T = 256, B = 8, V = 256;
  const int steps = std::max(2, std::min(opts.repeats, 4));
  manualSeed(1);
  const nlohmann::json spec = {{"type", "gpt"}, {"vocab_size", V}, {"block_size", T},
                               {"n_layer", L},  {"n_head", 4},     {"d_model", C}};
  const Device device = Device::parse(opts.device);
  if (device.type != DeviceType::cpu && !hasBackend(device.type)) {
    std::printf("checkpoint: no %s in this build or on this machine; skipped\n",
                device.str().c_str());
    return 0;
  }
  auto model = std::dynamic_pointer_cast<GptModel>(buildModel(spec));
  model->to(device);
  const Tensor ids = randint(0, V, {B, T}).to(device), targets = randint(0, V, {B, T}).to(device);
  const size_t tag = static_cast<size_t>(MemoryTag::activations);
  std::printf(
      "checkpoint on %s: GPT L=%lld d_model=%lld T=%lld batch=%lld vocab=%lld, %d timed steps\n",
      device.str().c_str(), static_cast<long long>(L), static_cast<long long>(C),
      static_cast<long long>(T), static_cast<long long>(B), static_cast<long long>(V), steps);
  std::printf("%-10s %14s %10s %12s %10s\n", "mode", "act peak", "vs none", "step ms", "vs none");
  double base_mem = 0, base_ms = 0;
  for (CheckpointMode mode :
       {CheckpointMode::none, CheckpointMode::selective, CheckpointMode::full}) {
    model->setCheckpointing(mode, 1);
    std::vector<double> ms;
    int64_t peak = 0;
    for (int s = 0; s <= steps; ++s) {  // step 0 warms up
      model->zeroGrad(true);
      Allocator& a = allocatorFor(device);
      const int64_t before = a.stats().tag_current[tag];
      a.resetPeaks();
      const auto t0 = std::chrono::steady_clock::now();
      {
        const Tensor logits = model->forward(ids);
        crossEntropy(logits.reshape({-1, V}), targets.reshape({-1})).backward();
      }
      {
        NoGradGuard g;
        for (Tensor& p : model->parameters()) p.copy_(sub(p, mul(p.grad(), 1e-3)));
      }
      backendFor(device.type).synchronize(device.index);
      const auto t1 = std::chrono::steady_clock::now();
      peak = std::max(peak, a.stats().tag_peak[tag] - before);
      if (s > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    if (mode == CheckpointMode::none) {
      base_mem = static_cast<double>(peak);
      base_ms = med;
    }
    std::printf("%-10s %14s %9.2fx %12.1f %9.2fx\n", checkpointModeName(mode),
                formatBytes(peak).c_str(), base_mem / static_cast<double>(peak), med,
                med / base_ms);
  }
  std::printf("(memory column: none / mode, higher is better; time column: mode / none)\n");
  return 0;
}

}  // namespace lathe::bench
