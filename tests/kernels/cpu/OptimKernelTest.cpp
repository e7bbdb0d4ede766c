// Fused optimizer step kernels against the textbook recurrences (torch.optim's AdamW and SGD)
// written out in double on plain vectors.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

TEST(OptimKernels, AdamWMatchesRecurrence) {
  manualSeed(1);
  const int64_t n = 1000;
  Tensor p = test::uniform({n}, -1, 1, DType::f64), m = Tensor::zeros({n}, DType::f64),
         v = Tensor::zeros({n}, DType::f64);
  std::vector<double> P = p.toDoubles(), M(n, 0.0), V(n, 0.0);
  AdamWStep s;
  s.lr = 0.01;
  s.weight_decay = 0.1;
  for (int step = 1; step <= 5; ++step) {
    Tensor g = test::uniform({n}, -1, 1, DType::f64);
    const std::vector<double> G = g.toDoubles();
    s.step = step;
    backendFor(DeviceType::cpu).adamwStep(p, g, m, v, s);
    const double bc1 = 1 - std::pow(s.beta1, step), bc2 = 1 - std::pow(s.beta2, step);
    for (int64_t i = 0; i < n; ++i) {
      P[static_cast<size_t>(i)] *= 1 - s.lr * s.weight_decay;
      M[static_cast<size_t>(i)] =
          s.beta1 * M[static_cast<size_t>(i)] + (1 - s.beta1) * G[static_cast<size_t>(i)];
      V[static_cast<size_t>(i)] =
          s.beta2 * V[static_cast<size_t>(i)] +
          (1 - s.beta2) * G[static_cast<size_t>(i)] * G[static_cast<size_t>(i)];
      P[static_cast<size_t>(i)] -= s.lr / bc1 * M[static_cast<size_t>(i)] /
                                   (std::sqrt(V[static_cast<size_t>(i)]) / std::sqrt(bc2) + s.eps);
    }
  }
  test::expectClose(p, Tensor::fromVector(P, {n}, DType::f64), 1e-12, 1e-10, "adamw");
}

TEST(OptimKernels, SgdNesterovMatchesRecurrence) {
  manualSeed(2);
  const int64_t n = 257;
  Tensor p = test::uniform({n}, -1, 1, DType::f64), buf = Tensor::zeros({n}, DType::f64);
  std::vector<double> P = p.toDoubles(), B(n, 0.0);
  SgdStep s;
  s.lr = 0.1;
  s.momentum = 0.9;
  s.weight_decay = 1e-3;
  s.nesterov = true;
  for (int step = 0; step < 4; ++step) {
    Tensor g = test::uniform({n}, -1, 1, DType::f64);
    const std::vector<double> G = g.toDoubles();
    s.first_step = step == 0;
    backendFor(DeviceType::cpu).sgdStep(p, g, buf, s);
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
      double d = G[i] + s.weight_decay * P[i];
      B[i] = step == 0 ? d : s.momentum * B[i] + d;
      d = d + s.momentum * B[i];
      P[i] -= s.lr * d;
    }
  }
  test::expectClose(p, Tensor::fromVector(P, {n}, DType::f64), 1e-12, 1e-10, "sgd");
}

TEST(OptimKernels, SgdWithMomentumNeedsBuffer) {
  Tensor p = Tensor::zeros({3}), g = Tensor::zeros({3});
  SgdStep s;
  s.momentum = 0.9;
  EXPECT_THROW(backendFor(DeviceType::cpu).sgdStep(p, g, Tensor(), s), Error);
}

}  // namespace
}  // namespace lathe
