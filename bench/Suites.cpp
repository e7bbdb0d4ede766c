#include "bench/Suites.h"

namespace lathe::bench {

int runOps(const Options& opts);  // bench/OpsBench.cpp

const std::vector<Suite>& suites() {
  static const std::vector<Suite> all = {
      {"ops", "matmul, conv2d, softmax, layer_norm, attention fwd+bwd vs PyTorch CPU", runOps},
  };
  return all;
}

}  // namespace lathe::bench
