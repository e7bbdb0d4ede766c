#include "bench/Suites.h"

namespace lathe::bench {

int runOps(const Options& opts);    // bench/OpsBench.cpp
int runGpu(const Options& opts);    // bench/GpuBench.cpp
int runStore(const Options& opts);  // bench/StoreBench.cpp
int runTrain(const Options& opts);  // bench/TrainBench.cpp

int runCheckpoint(const Options& opts);  // bench/CheckpointBench.cpp
int runMethods(const Options& opts);     // bench/MethodsBench.cpp

const std::vector<Suite>& suites() {
  static const std::vector<Suite> all = {
      {"ops", "matmul, conv2d, softmax, layer_norm, attention fwd+bwd vs PyTorch CPU", runOps},
      {"gpu", "GEMM, attention fwd+bwd, memory-bound kernels on cuda:0 vs PyTorch", runGpu, true},
      {"store", "RunStore: 10k runs created, listed and compared; series loads; appendMetric",
       runStore},
      {"train", "fashion MLP and CNN training samples/s (and accuracy) vs PyTorch CPU", runTrain},
      {"checkpoint", "activation checkpointing none/selective/full: 12-layer GPT memory, time",
       runCheckpoint},
      {"methods",
       "every efficiency method vs f32 AdamW on the GPT and CNN examples: step time, peak memory, "
       "loss, test metric (--model, --device)",
       runMethods},
  };
  return all;
}

}  // namespace lathe::bench
