// Fused optimizer step kernels against the textbook recurrences (torch.optim's AdamW and SGD)
// written out in double on plain vectors; the fused 8-bit AdamW step against the same step
// composed from the block-wise quantization tensor ops.
#include <gtest/gtest.h>

#include <cmath>

#include "core/optim/Quantize8bit.h"
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

// The fused 8-bit AdamW kernel against its oracle, composed from tensor ops: dequantize,
// AdamW in f64 (the kernel computes in f32), quantizeBlockwise. With f64 parameters both sides
// compute in f64, so the codes must agree exactly.
TEST(OptimKernels, AdamW8bitStepMatchesDequantizeUpdateRequantize) {
  manualSeed(2);
  for (int64_t block : {256, 2048}) {
    const int64_t n = 2 * block + 77;  // a short last block
    const int64_t blocks = (n + block - 1) / block;
    const Tensor smap = Tensor::fromVector(optim::dynamicQuantizationMap(true), {256}, DType::f64);
    const Tensor umap = Tensor::fromVector(optim::dynamicQuantizationMap(false), {256}, DType::f64);
    Tensor p = test::uniform({n}, -1, 1, DType::f64);
    Tensor qm = Tensor::zeros({n}, DType::u8), qv = Tensor::zeros({n}, DType::u8);
    Tensor am = Tensor::zeros({blocks}, DType::f64), av = Tensor::zeros({blocks}, DType::f64);
    // Start from quantized non-zero moments; block 1 all zero (its codes are those of 0).
    Tensor m0 = test::uniform({n}, -0.1, 0.1, DType::f64),
           v0 = test::uniform({n}, 0, 0.01, DType::f64);
    m0.slice(0, block, 2 * block).fill_(0.0);
    v0.slice(0, block, 2 * block).fill_(0.0);
    optim::quantizeBlockwise(m0, smap, block, qm, am);
    optim::quantizeBlockwise(v0, umap, block, qv, av);
    Tensor p_ref = p.clone(), qm_ref = qm.clone(), qv_ref = qv.clone();
    Tensor am_ref = am.clone(), av_ref = av.clone();
    AdamWStep s;
    s.lr = 0.01;
    s.weight_decay = 0.1;
    for (int step = 1; step <= 3; ++step) {
      s.step = step;
      Tensor g = test::uniform({n}, -1, 1, DType::f64);
      g.slice(0, block, 2 * block).fill_(0.0);
      backendFor(DeviceType::cpu).adamw8bitStep(p, g, qm, am, qv, av, smap, umap, block, s);
      // The oracle.
      const Tensor m = add(mul(optim::dequantizeBlockwise(qm_ref, am_ref, smap, block), s.beta1),
                           mul(g, 1 - s.beta1));
      const Tensor v = add(mul(optim::dequantizeBlockwise(qv_ref, av_ref, umap, block), s.beta2),
                           mul(square(g), 1 - s.beta2));
      const double bc1 = 1 - std::pow(s.beta1, step), bc2 = 1 - std::pow(s.beta2, step);
      p_ref = sub(mul(p_ref, 1 - s.lr * s.weight_decay),
                  mul(div(m, add(div(sqrt(v), std::sqrt(bc2)), s.eps)), s.lr / bc1));
      optim::quantizeBlockwise(m, smap, block, qm_ref, am_ref);
      optim::quantizeBlockwise(v, umap, block, qv_ref, av_ref);
      test::expectClose(p, p_ref, 1e-12, 1e-10, "adamw8bit param");
      test::expectClose(am, am_ref, 1e-15, 1e-12, "m absmax");
      test::expectClose(av, av_ref, 1e-15, 1e-12, "v absmax");
      EXPECT_EQ(qm.toDoubles(), qm_ref.toDoubles())
          << "m codes, block " << block << " step " << step;
      EXPECT_EQ(qv.toDoubles(), qv_ref.toDoubles())
          << "v codes, block " << block << " step " << step;
    }
    EXPECT_EQ(am.toDoubles()[1], 0.0);  // the all-zero block stays zero
  }
}

}  // namespace
}  // namespace lathe
