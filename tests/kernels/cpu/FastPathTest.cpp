// The CPU fast paths of kernels/cpu/fast/Elementwise.cpp, fast/Optim.cpp and the 2x2 max pool
// against the reference kernels, called directly on both backends: elementwise ops, copies and
// the AdamW step must be bit-identical; sums match to double rounding. Sizes are odd and cross
// the parallel grain, so vector tails and thread chunks are exercised.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

using test::uniform;

constexpr int64_t kOdd = 70001;  // > kParallelGrain (32768), not a multiple of any vector width

// Values with the special cases each op must treat as the reference does.
Tensor special(DType dt, int64_t n = kOdd) {
  Tensor t = uniform({n}, -3, 3, DType::f64);
  std::vector<double> v = t.toDoubles();
  const double inf = std::numeric_limits<double>::infinity();
  const double specials[] = {0.0, -0.0, inf, -inf, std::nan(""), 1e-40, -1e-40, 1.0};
  for (size_t i = 0; i < 8; ++i) v[i * 997] = specials[i];
  return Tensor::fromVector(v, {n}, dt);
}

void expectIdentical(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  const std::vector<double> x = a.toDoubles(), y = b.toDoubles();
  int reported = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const bool same = (std::isnan(x[i]) && std::isnan(y[i])) ||
                      (x[i] == y[i] && std::signbit(x[i]) == std::signbit(y[i]));
    if (!same && reported++ < 5)
      ADD_FAILURE() << what << ": element " << i << " is " << x[i] << ", reference " << y[i];
  }
}

TEST(CpuFastPaths, UnaryOpsMatchReferenceBitForBit) {
  manualSeed(11);
  const UnaryOp ops[] = {UnaryOp::neg,        UnaryOp::abs,         UnaryOp::square,
                         UnaryOp::reciprocal, UnaryOp::relu,        UnaryOp::add_scalar,
                         UnaryOp::mul_scalar, UnaryOp::rsub_scalar, UnaryOp::rdiv_scalar,
                         UnaryOp::affine};
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = special(dt);
    for (UnaryOp op : ops) {
      Tensor fast = Tensor::empty(x.shape(), dt), ref = Tensor::empty(x.shape(), dt);
      cpu::fastBackend().unary(op, x, fast, 0.3, -1.7);
      cpu::referenceBackend().unary(op, x, ref, 0.3, -1.7);
      expectIdentical(fast, ref,
                      std::string(dtypeName(dt)) + " unary op " + std::to_string(int(op)));
    }
  }
}

TEST(CpuFastPaths, BinaryOpsMatchReferenceWithScalarBroadcast) {
  manualSeed(12);
  const BinaryOp ops[] = {BinaryOp::add,     BinaryOp::sub,        BinaryOp::mul,
                          BinaryOp::div,     BinaryOp::maximum,    BinaryOp::minimum,
                          BinaryOp::relu_bw, BinaryOp::sigmoid_bw, BinaryOp::tanh_bw};
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = special(dt), y = uniform({kOdd}, -2, 2, dt);
    const Tensor s = Tensor::fromVector(std::vector<double>{0.75}, {1}, dt);
    const Tensor sb = Tensor::makeView(s, {kOdd}, {0}, 0);  // broadcast scalar
    const std::pair<Tensor, Tensor> operands[] = {{x, y}, {y, x}, {x, sb}, {sb, x}};
    for (BinaryOp op : ops) {
      for (size_t k = 0; k < 4; ++k) {
        Tensor fast = Tensor::empty({kOdd}, dt), ref = Tensor::empty({kOdd}, dt);
        cpu::fastBackend().binary(op, operands[k].first, operands[k].second, fast);
        cpu::referenceBackend().binary(op, operands[k].first, operands[k].second, ref);
        expectIdentical(fast, ref,
                        std::string(dtypeName(dt)) + " binary op " + std::to_string(int(op)) +
                            " operands " + std::to_string(k));
      }
    }
  }
}

// f32 tanh, GELU (tanh form) and its backward take a branch-free polynomial tanh instead of
// libm's scalar tanhf: not bit-identical, but within a few f32 ulp of the reference, with the
// special values (infinities to +-1, NaN to NaN) the same.
TEST(CpuFastPaths, PolynomialTanhAndGeluAreWithinF32RoundingOfTheReference) {
  manualSeed(14);
  Tensor x = special(DType::f32);
  // Dense coverage of the branch point (0.625) and the saturation region too.
  const Tensor dense = test::uniform({kOdd}, -12, 12, DType::f32);
  for (const Tensor& in : {x, dense}) {
    for (UnaryOp op : {UnaryOp::tanh, UnaryOp::gelu_tanh}) {
      Tensor fast = Tensor::empty(in.shape()), ref = Tensor::empty(in.shape());
      cpu::fastBackend().unary(op, in, fast, 0, 0);
      cpu::referenceBackend().unary(op, in, ref, 0, 0);
      test::expectClose(fast, ref, 2e-6, 2e-6, "unary op " + std::to_string(int(op)));
    }
    const Tensor g = test::uniform({kOdd}, -2, 2, DType::f32);
    Tensor fast = Tensor::empty(in.shape()), ref = Tensor::empty(in.shape());
    cpu::fastBackend().binary(BinaryOp::gelu_tanh_bw, g, in, fast);
    cpu::referenceBackend().binary(BinaryOp::gelu_tanh_bw, g, in, ref);
    test::expectClose(fast, ref, 4e-6, 4e-6, "gelu_tanh_bw");
  }
  const Tensor edges = Tensor::fromVector(
      std::vector<double>{INFINITY, -INFINITY, NAN, 0.625, -0.625, 9.0, 20.0, -1e-30}, {8},
      DType::f32);
  Tensor t = Tensor::empty({8});
  cpu::fastBackend().unary(UnaryOp::tanh, edges, t, 0, 0);
  const std::vector<double> v = t.toDoubles();
  EXPECT_EQ(v[0], 1.0);
  EXPECT_EQ(v[1], -1.0);
  EXPECT_TRUE(std::isnan(v[2]));
  EXPECT_NEAR(v[3], std::tanh(0.625), 2e-7);
  EXPECT_NEAR(v[4], -std::tanh(0.625), 2e-7);
  EXPECT_EQ(v[6], 1.0);
  EXPECT_FLOAT_EQ(static_cast<float>(v[7]), -1e-30f);
}

TEST(CpuFastPaths, InPlaceAddAccumulates) {
  Tensor acc = Tensor::full({kOdd}, 1.5);
  const Tensor g = Tensor::full({kOdd}, 0.25);
  cpu::fastBackend().binary(BinaryOp::add, acc, g, acc);
  cpu::fastBackend().binary(BinaryOp::add, acc, g, acc);
  EXPECT_EQ(acc.toDoubles(), std::vector<double>(kOdd, 2.0));
}

TEST(CpuFastPaths, ConversionsAndFillMatchReference) {
  manualSeed(13);
  const Tensor x32 = special(DType::f32), x64 = special(DType::f64);
  Tensor to64 = Tensor::empty({kOdd}, DType::f64), to32 = Tensor::empty({kOdd}, DType::f32);
  cpu::fastBackend().copy(x32, to64);
  cpu::fastBackend().copy(x64, to32);
  Tensor ref64 = Tensor::empty({kOdd}, DType::f64), ref32 = Tensor::empty({kOdd}, DType::f32);
  cpu::referenceBackend().copy(x32, ref64);
  cpu::referenceBackend().copy(x64, ref32);
  expectIdentical(to64, ref64, "f32 -> f64");
  expectIdentical(to32, ref32, "f64 -> f32");

  for (double value : {0.0, -0.0, 2.5}) {
    Tensor f = Tensor::empty({kOdd}, DType::f32), r = Tensor::empty({kOdd}, DType::f32);
    cpu::fastBackend().fill(f, value);
    cpu::referenceBackend().fill(r, value);
    expectIdentical(f, r, "fill " + std::to_string(value));
  }
}

TEST(CpuFastPaths, SumsOverLeadingAndTrailingDimsMatchReference) {
  manualSeed(14);
  struct Case {
    Shape shape;
    std::vector<int> dims;
  };
  const Case cases[] = {{{kOdd}, {0}},
                        {{64, 257}, {0}},
                        {{64, 257}, {1}},
                        {{5, 7, 301}, {0, 1}},
                        {{5, 7, 301}, {1, 2}},
                        {{3, 200001}, {1}},
                        {{2, 3, 4, 5}, {0, 1, 2, 3}}};
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : cases) {
      const Tensor x = uniform(c.shape, -1, 1, dt);
      Shape kept;
      for (int d = 0; d < x.dim(); ++d)
        if (std::find(c.dims.begin(), c.dims.end(), d) == c.dims.end())
          kept.push_back(x.shape()[static_cast<size_t>(d)]);
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::mean}) {
        Tensor fast = Tensor::empty(kept, dt), ref = Tensor::empty(kept, dt);
        cpu::fastBackend().reduce(op, x, c.dims, fast);
        cpu::referenceBackend().reduce(op, x, c.dims, ref);
        const double tol = dt == DType::f32 ? 1e-6 : 1e-12;
        test::expectClose(fast, ref, tol, tol,
                          std::string(dtypeName(dt)) + " reduce " + shapeStr(c.shape) + " op " +
                              std::to_string(int(op)));
      }
    }
  }
  // NaN and infinity propagate as in the reference.
  Tensor x = special(DType::f32);
  Tensor fast = Tensor::empty({}, DType::f32);
  cpu::fastBackend().reduce(ReduceOp::sum, x, {0}, fast);
  EXPECT_TRUE(std::isnan(fast.item()));
}

TEST(CpuFastPaths, AdamWStepMatchesReferenceBitForBit) {
  manualSeed(15);
  const int64_t n = kOdd;
  Tensor p = uniform({n}, -1, 1, DType::f32), m = Tensor::zeros({n}), v = Tensor::zeros({n});
  Tensor rp = p.clone(), rm = m.clone(), rv = v.clone();
  AdamWStep s;
  s.lr = 3e-3;
  s.weight_decay = 0.05;
  for (int step = 1; step <= 4; ++step) {
    const Tensor g = uniform({n}, -1, 1, DType::f32);
    s.step = step;
    cpu::fastBackend().adamwStep(p, g, m, v, s);
    cpu::referenceBackend().adamwStep(rp, g, rm, rv, s);
  }
  expectIdentical(p, rp, "adamw params");
  expectIdentical(m, rm, "adamw exp_avg");
  expectIdentical(v, rv, "adamw exp_avg_sq");
}

// The 2x2 stride-2 pool: NaN takes a window (the last NaN in window order), an all -inf window
// reports its first element, odd widths leave a scalar tail and odd heights an unused row.
TEST(CpuFastPaths, MaxPool2x2MatchesReferenceWithNanAndInfinity) {
  manualSeed(16);
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  const Shape xs{2, 3, 9, 19};
  std::vector<double> v = uniform(xs, -4, 4).toDoubles();
  for (size_t i : {0, 1, 20, 40, 41, 59, 60}) v[i] = nan;
  for (size_t i : {2, 3, 21, 22, 100, 101, 119, 120}) v[i] = -inf;
  const Tensor x = Tensor::fromVector(v, xs, DType::f32);
  const Shape ys{2, 3, 4, 9};
  Tensor fy = Tensor::empty(ys), ry = Tensor::empty(ys);
  Tensor fi = Tensor::empty(ys, DType::i64), ri = Tensor::empty(ys, DType::i64);
  Pool2dParams p;
  cpu::fastBackend().pool2d(x, fy, &fi, p);
  cpu::referenceBackend().pool2d(x, ry, &ri, p);
  expectIdentical(fy, ry, "max pool 2x2 values");
  EXPECT_EQ(fi.toInts(), ri.toInts());
}

}  // namespace
}  // namespace lathe
