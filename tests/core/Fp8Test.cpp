// fp8 on the CPU reference kernels: delayed scaling, quantization (with its transpose and
// amax), the scaled GEMM, the fp8 linear's forward and backward against f32, the bf16 fallback
// for unaligned shapes, and a short training run that tracks f32. The CUDA kernels are compared
// with these in tests/kernels/cuda/CudaFp8Test.cpp.
#include <gtest/gtest.h>

#include <cmath>

#include "core/backend/Backend.h"
#include "core/ops/Fp8.h"
#include "core/ops/Ops.h"
#include "core/tensor/Random.h"
#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

Backend& cpu() {
  return backendFor(DeviceType::cpu);
}

using test::relError;

TEST(Fp8Kernels, ScaleComesFromTheLargestFiniteAmaxOfTheHistory) {
  Tensor h = Tensor::fromVector(std::vector<double>{0.5, 2.0, INFINITY, NAN, 1.0}, {5});
  Tensor s = Tensor::empty({1}), si = Tensor::empty({1});
  cpu().fp8Scale(h, 448.0, 0, s, si);
  EXPECT_FLOAT_EQ(s.toDoubles()[0], 224.0f);
  EXPECT_FLOAT_EQ(si.toDoubles()[0], 1.0f / 224.0f);
  cpu().fp8Scale(h, 448.0, 2, s, si);  // margin 2: a quarter
  EXPECT_FLOAT_EQ(s.toDoubles()[0], 56.0f);
  cpu().fp8Scale(Tensor::zeros({4}), 448.0, 0, s, si);  // no history yet
  EXPECT_EQ(s.toDoubles()[0], 1.0);
  EXPECT_EQ(si.toDoubles()[0], 1.0);
}

TEST(Fp8Kernels, QuantizeRoundsSaturatesTransposesAndMeasuresAmax) {
  manualSeed(3);
  const Tensor x = test::uniform({5, 7}, -3, 3, DType::f32);
  Tensor scale = Tensor::fromVector(std::vector<double>{100.0}, {1});
  for (DType fmt : {DType::f8e4m3, DType::f8e5m2}) {
    Tensor q = Tensor::empty({5, 7}, fmt), qt = Tensor::empty({7, 5}, fmt);
    Tensor amax = Tensor::empty({1});
    cpu().quantizeFp8(x, scale, q, qt, amax);
    // Each code is x * scale converted (round to nearest even), saturated at the format's max.
    const double fmax = fmt == DType::f8e4m3 ? 448.0 : 57344.0;
    const Tensor want = clamp(mul(x, 100.0), -fmax, fmax).to(fmt);
    EXPECT_EQ(q.to(DType::f32).toDoubles(), want.to(DType::f32).toDoubles()) << dtypeName(fmt);
    EXPECT_EQ(qt.to(DType::f32).toDoubles(),
              want.to(DType::f32).transpose(0, 1).contiguous().toDoubles());
    EXPECT_FLOAT_EQ(amax.toDoubles()[0], max(abs(x)).toDoubles()[0]);
  }
  // e4m3 saturates instead of turning large values into NaN; e5m2 instead of infinity.
  const Tensor big = Tensor::fromVector(std::vector<double>{1e6, -1e6}, {1, 2});
  Tensor one = Tensor::fromVector(std::vector<double>{1.0}, {1});
  Tensor q4 = Tensor::empty({1, 2}, DType::f8e4m3), q5 = Tensor::empty({1, 2}, DType::f8e5m2);
  Tensor amax = Tensor::empty({1});
  cpu().quantizeFp8(big, one, q4, Tensor(), amax);
  cpu().quantizeFp8(big, one, q5, Tensor(), amax);
  EXPECT_EQ(q4.to(DType::f32).toDoubles(), (std::vector<double>{448.0, -448.0}));
  EXPECT_EQ(q5.to(DType::f32).toDoubles(), (std::vector<double>{57344.0, -57344.0}));
  // A NaN shows in the amax (so a poisoned step does not go unnoticed).
  const Tensor bad = Tensor::fromVector(std::vector<double>{1.0, NAN}, {1, 2});
  cpu().quantizeFp8(bad, one, q4, Tensor(), amax);
  EXPECT_TRUE(std::isnan(amax.toDoubles()[0]));
}

TEST(Fp8Kernels, ScaledGemmIsTheProductOfTheDequantizedOperands) {
  manualSeed(4);
  const int64_t M = 32, N = 48, K = 64;
  const Tensor a = test::uniform({M, K}, -4, 4, DType::f32).to(DType::f8e4m3);
  const Tensor b = test::uniform({N, K}, -4, 4, DType::f32).to(DType::f8e5m2);
  const Tensor sa = Tensor::fromVector(std::vector<double>{0.5}, {1});
  const Tensor sb = Tensor::fromVector(std::vector<double>{0.25}, {1});
  const Tensor bias = test::uniform({N}, -1, 1, DType::f32);
  Tensor out = Tensor::empty({M, N});
  cpu().matmulFp8(a, b, sa, sb, &bias, out);
  const Tensor want = add(mul(matmul(a.to(DType::f64), b.to(DType::f64).transpose(0, 1)), 0.125),
                          bias.to(DType::f64));
  test::expectClose(out, want.to(DType::f32), 1e-5, 1e-6, "fp8 gemm");
}

// x [rows, in] and a weight [out, in] with values spread over a few orders of magnitude.
struct LinearCase {
  Tensor x, w, b;
};
LinearCase linearCase(int64_t rows, int64_t in, int64_t out) {
  manualSeed(11);
  LinearCase c;
  c.x = mul(randn({rows, in}), 2.0).detach().setRequiresGrad(true);
  c.w = mul(randn({out, in}), 0.05).detach().setRequiresGrad(true);
  c.b = mul(randn({out}), 0.1).detach().setRequiresGrad(true);
  return c;
}

TEST(Fp8Linear, ForwardAndBackwardStayWithinFp8PrecisionOfF32) {
  LinearCase c = linearCase(64, 96, 32);
  const Tensor gy = randn({64, 32});
  Tensor y32 = linear(c.x, c.w, c.b);
  const auto g32 = grad({y32}, {gy}, {c.x, c.w, c.b});
  Fp8State state;
  Tensor y8;
  std::vector<Tensor> g8;
  for (int step = 0; step < 3; ++step) {  // later steps use the delayed (history) scales
    Fp8AutocastGuard guard(state);
    y8 = linear(c.x, c.w, c.b);
    g8 = grad({y8}, {gy.to(DType::bf16)}, {c.x, c.w, c.b});
  }
  EXPECT_EQ(y8.dtype(), DType::bf16);
  EXPECT_EQ(state.fp8Linears(), 3);
  EXPECT_EQ(state.bf16Fallbacks(), 0);
  // e4m3 keeps 3 mantissa bits (relative rounding error up to 1/16, about 2-3% rms over a
  // product); e5m2 gradients keep 2 bits.
  EXPECT_LT(relError(y8.to(DType::f32), y32), 0.06);
  EXPECT_EQ(g8[0].dtype(), DType::f32);
  EXPECT_EQ(g8[1].dtype(), DType::f32);
  EXPECT_LT(relError(g8[0], g32[0]), 0.12) << "dx";
  EXPECT_LT(relError(g8[1], g32[1]), 0.12) << "dw";
  // db sums 64 rows of the bf16 output gradient (rounding error about 2^-9 per row).
  test::expectClose(g8[2], g32[2], 0.05, 1e-2, "db");
}

TEST(Fp8Linear, HistoriesHoldEachTensorsAmaxAndScalesLag) {
  LinearCase c = linearCase(16, 16, 16);
  Fp8State state(Fp8Recipe{4, 0});
  {
    Fp8AutocastGuard guard(state);
    NoGradGuard no_grad;
    linear(c.x, c.w, c.b);
  }
  EXPECT_EQ(state.layers(), 1);
  const Tensor h = state.metaFor(c.w).history;
  EXPECT_FLOAT_EQ(h.select(0, 0).toDoubles()[0], max(abs(c.x)).toDoubles()[0]);
  EXPECT_FLOAT_EQ(h.select(0, 1).toDoubles()[0], max(abs(c.w)).toDoubles()[0]);
  // The next use writes the next slot.
  {
    Fp8AutocastGuard guard(state);
    NoGradGuard no_grad;
    linear(mul(c.x, 3.0), c.w, c.b);
  }
  EXPECT_FLOAT_EQ(h.select(0, 0).toDoubles()[1], 3.0f * max(abs(c.x)).toDoubles()[0]);
}

TEST(Fp8Linear, UnalignedShapesFallBackToBf16AndAreCounted) {
  LinearCase c = linearCase(10, 16, 16);  // 10 rows: not a multiple of 16
  Fp8State state;
  Tensor y;
  {
    Fp8AutocastGuard guard(state);
    y = linear(c.x, c.w, c.b);
  }
  EXPECT_EQ(state.fp8Linears(), 0);
  EXPECT_EQ(state.bf16Fallbacks(), 1);
  EXPECT_EQ(y.dtype(), DType::bf16);
  EXPECT_LT(relError(y.to(DType::f32), linear(c.x, c.w, c.b)), 0.01);
}

TEST(Fp8Linear, GuardRestoresThePreviousStateAndAutocast) {
  Fp8State state;
  EXPECT_EQ(fp8::active(), nullptr);
  {
    Fp8AutocastGuard guard(state);
    EXPECT_EQ(fp8::active(), &state);
    EXPECT_EQ(autocastDType(), DType::bf16);
  }
  EXPECT_EQ(fp8::active(), nullptr);
  EXPECT_FALSE(autocastDType().has_value());
  EXPECT_THROW(Fp8State(Fp8Recipe{0, 0}), Error);
}

// A small MLP regression trained with fp8 linears follows the f32 loss curve.
TEST(Fp8Linear, TrainingFollowsF32) {
  auto run = [](bool fp8) {
    manualSeed(21);
    Tensor w1 = mul(randn({64, 32}), 0.15).detach().setRequiresGrad(true);
    Tensor w2 = mul(randn({16, 64}), 0.15).detach().setRequiresGrad(true);
    const Tensor x = randn({128, 32});
    const Tensor target = tanh(matmul(x, mul(randn({32, 16}), 0.3)));
    Fp8State state;
    std::vector<double> losses;
    for (int step = 0; step < 40; ++step) {
      Tensor loss;
      {
        std::optional<Fp8AutocastGuard> guard;
        if (fp8) guard.emplace(state);
        Tensor y = linear(relu(linear(x, w1)), w2);
        loss = mean(square(sub(y.to(DType::f32), target)));
      }
      const auto g = grad({loss}, {Tensor::ones({})}, {w1, w2});
      NoGradGuard no_grad;
      w1.copy_(sub(w1, mul(g[0], 0.2)));
      w2.copy_(sub(w2, mul(g[1], 0.2)));
      losses.push_back(loss.item());
    }
    return losses;
  };
  const auto f32 = run(false), f8 = run(true);
  EXPECT_LT(f32.back(), 0.5 * f32.front());
  EXPECT_NEAR(f8.back(), f32.back(), 0.05 * f32.back())
      << "f32 " << f32.front() << " -> " << f32.back() << ", fp8 -> " << f8.back();
}

}  // namespace
}  // namespace lathe
