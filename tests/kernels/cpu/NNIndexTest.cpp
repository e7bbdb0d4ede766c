// The softmax, normalisation, loss and indexing ops on the CPU: the fast backend against the
// reference (random, odd-sized and non-contiguous inputs), hand-computed values for
// cross-entropy and batch-norm running statistics, dropout's counter-based mask, and the errors
// for out-of-range indices and mismatched shapes or dtypes.
#include <cmath>
#include <string>

#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

using test::compareWithReference;
using test::uniform;

Tensor req(Tensor t) {
  return t.setRequiresGrad(true);
}
Tensor ids(const std::vector<int64_t>& v, const Shape& s) {
  return Tensor::fromVector(v, s, DType::i64);
}
Tensor f32(const Shape& s, double lo = -3, double hi = 3) {
  return uniform(s, lo, hi, DType::f32);
}
// Random class ids in [0, C) with every `ignore_every`-th set to -100.
Tensor targets(int64_t N, int64_t C, int64_t ignore_every = 0) {
  std::vector<int64_t> v(static_cast<size_t>(N));
  const std::vector<double> u = uniform({N}, 0, 1).toDoubles();
  for (int64_t i = 0; i < N; ++i) {
    v[static_cast<size_t>(i)] =
        std::min<int64_t>(C - 1, static_cast<int64_t>(u[static_cast<size_t>(i)] * C));
    if (ignore_every > 0 && i % ignore_every == 0) v[static_cast<size_t>(i)] = -100;
  }
  return ids(v, {N});
}

// Runs fn and returns the lathe::Error message (fails the test when nothing is thrown).
std::string errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a lathe::Error";
  return "";
}

void expectMentions(const std::string& msg, const std::vector<std::string>& parts) {
  for (const std::string& p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "message \"" << msg << "\" lacks \"" << p << "\"";
}

// ---- fast vs reference ----

struct FastCase {
  const char* name;
  std::function<std::vector<Tensor>()> inputs;
  test::TensorFn fn;
  double tol;
};

std::vector<FastCase> fastCases() {
  using V = std::vector<Tensor>;
  return {
      {"softmax_rows",
       [] {
         return V{req(f32({64, 768}))};
       },
       [](auto& x) { return softmax(x[0]); }, 1e-5},
      {"softmax_odd",
       [] {
         return V{req(f32({37, 1001}, -20, 20))};
       },
       [](auto& x) { return softmax(x[0]); }, 1e-5},
      {"softmax_dim0",
       [] {
         return V{req(f32({17, 5, 9}))};
       },
       [](auto& x) { return softmax(x[0], 0); }, 1e-5},
      {"softmax_noncontiguous",
       [] {
         return V{req(test::nonContiguous(f32({33, 47})))};
       },
       [](auto& x) { return softmax(x[0]); }, 1e-5},
      {"log_softmax_rows",
       [] {
         return V{req(f32({50, 333}, -10, 10))};
       },
       [](auto& x) { return logSoftmax(x[0]); }, 2e-5},
      {"log_softmax_dim1",
       [] {
         return V{req(f32({3, 129, 7}))};
       },
       [](auto& x) { return logSoftmax(x[0], 1); }, 2e-5},
      {"softmax_masked",
       [] {
         return V{req(f32({8, 40}))};
       },
       [](auto& x) {
         Tensor m = gt(arange(0, 40).reshape({1, 40}).to(DType::f32), 30.0);
         return softmax(maskedFill(x[0], m, -std::numeric_limits<double>::infinity()));
       },
       1e-5},
      {"layer_norm_affine",
       [] {
         return V{req(f32({96, 768})), req(f32({768})), req(f32({768}))};
       },
       [](auto& x) { return layerNorm(x[0], x[1], x[2]); }, 1e-4},
      {"layer_norm_odd_offset",
       [] {
         return V{req(f32({2, 37, 101}, 100, 101)), req(f32({101})), req(f32({101}))};
       },
       [](auto& x) { return layerNorm(x[0], x[1], x[2]); }, 2e-3},
      {"layer_norm_plain",
       [] {
         return V{req(test::nonContiguous(f32({40, 65})))};
       },
       [](auto& x) { return layerNorm(x[0], Tensor(), Tensor()); }, 1e-4},
      {"layer_norm_bias_only",
       [] {
         return V{req(f32({33, 20})), req(f32({20}))};
       },
       [](auto& x) { return layerNorm(x[0], Tensor(), x[1]); }, 1e-4},
      {"rms_norm",
       [] {
         return V{req(f32({77, 513})), req(f32({513}))};
       },
       [](auto& x) { return rmsNorm(x[0], x[1]); }, 1e-4},
      {"rms_norm_plain",
       [] {
         return V{req(f32({5, 3, 31}))};
       },
       [](auto& x) { return rmsNorm(x[0], Tensor()); }, 1e-4},
      {"batch_norm_train",
       [] {
         return V{req(f32({6, 5, 7, 3})), req(f32({5})), req(f32({5}))};
       },
       [](auto& x) {
         Tensor rm = Tensor::zeros({5}), rv = Tensor::ones({5});
         return batchNorm(x[0], x[1], x[2], rm, rv, true);
       },
       1e-4},
      {"cross_entropy_mean",
       [] {
         return V{req(f32({61, 1003}, -10, 10)), targets(61, 1003, 7)};
       },
       [](auto& x) { return crossEntropy(x[0], x[1]); }, 1e-5},
      {"cross_entropy_smooth_none",
       [] {
         return V{req(f32({4, 9, 257}, -10, 10)), targets(36, 257, 5).reshape({4, 9})};
       },
       [](auto& x) { return crossEntropy(x[0], x[1], -100, 0.1, Reduction::none); }, 2e-5},
      {"cross_entropy_noncontiguous",
       [] {
         return V{req(test::nonContiguous(f32({23, 55}))), targets(23, 55)};
       },
       [](auto& x) { return crossEntropy(x[0], x[1], -100, 0.0, Reduction::sum); }, 1e-4},
      {"mse",
       [] {
         return V{req(f32({13, 7})), req(f32({13, 7}))};
       },
       [](auto& x) { return mseLoss(x[0], x[1]); }, 1e-5},
      {"embedding",
       [] {
         return V{req(f32({50, 33})), ids({3, 49, 3, 0, 7, 3}, {2, 3})};
       },
       [](auto& x) { return embedding(x[0], x[1]); }, 1e-6},
      {"index_select_noncontiguous",
       [] {
         return V{req(test::nonContiguous(f32({9, 12}))), ids({11, 0, 11}, {3})};
       },
       [](auto& x) { return indexSelect(x[0], 1, x[1]); }, 1e-6},
      {"gather_scatter",
       [] {
         return V{req(f32({4, 6})), req(f32({4, 3})),
                  ids({5, 0, 5, 1, 1, 2, 3, 4, 0, 2, 2, 2}, {4, 3})};
       },
       [](auto& x) { return add(scatter(x[0], 1, x[2], x[1], true), 0.0); }, 1e-6},
  };
}

void PrintTo(const FastCase& c, std::ostream* os) {
  *os << c.name;
}

class NNFastVsReference : public ::testing::TestWithParam<FastCase> {};

TEST_P(NNFastVsReference, Matches) {
  const FastCase& c = GetParam();
  manualSeed(21);
  compareWithReference(c.fn, c.inputs(), c.name, c.tol, c.tol);
}

INSTANTIATE_TEST_SUITE_P(Ops, NNFastVsReference, ::testing::ValuesIn(fastCases()),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- values ----

TEST(NNValues, SoftmaxOverNonLastDimMatchesDefinition) {
  manualSeed(3);
  Tensor x = f32({4, 3, 2});
  const std::vector<double> v = x.toDoubles(), s = softmax(x, 0).toDoubles();
  for (int j = 0; j < 6; ++j) {
    double z = 0;
    for (int i = 0; i < 4; ++i) z += std::exp(v[static_cast<size_t>(i * 6 + j)]);
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(s[static_cast<size_t>(i * 6 + j)],
                  std::exp(v[static_cast<size_t>(i * 6 + j)]) / z, 1e-6);
  }
}

TEST(NNValues, SoftmaxLargeInputsStayFinite) {
  Tensor x = Tensor::fromVector(std::vector<double>{1000, 1001, 999, -1000}, {1, 4});
  const std::vector<double> s = softmax(x).toDoubles(), l = logSoftmax(x).toDoubles();
  const double z = std::exp(-1.0) + 1 + std::exp(-2.0);
  EXPECT_NEAR(s[1], 1 / z, 1e-6);
  EXPECT_NEAR(s[3], 0.0, 1e-30);
  EXPECT_NEAR(l[0], -1 - std::log(z), 1e-4);
}

// loss_i = lse_i - (1 - e) x[t] - e / C sum(x), mean over the rows that are not ignored.
TEST(NNValues, CrossEntropyWithIgnoreIndexAndSmoothing) {
  const std::vector<double> x = {1, 2, 3, 1, 1, 1, 0, 0, 5, -1, 2, 0.5};
  const std::vector<int64_t> t = {2, -100, 0, 1};
  const double e = 0.1;
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor logits = Tensor::fromVector(x, {4, 3}, dt);
    double total = 0;
    int kept = 0;
    for (int i = 0; i < 4; ++i) {
      if (t[static_cast<size_t>(i)] < 0) continue;
      const double* r = &x[static_cast<size_t>(i * 3)];
      const double lse = std::log(std::exp(r[0]) + std::exp(r[1]) + std::exp(r[2]));
      total += lse - (1 - e) * r[t[static_cast<size_t>(i)]] - e / 3 * (r[0] + r[1] + r[2]);
      ++kept;
    }
    EXPECT_NEAR(crossEntropy(logits, ids(t, {4}), -100, e).item(), total / kept, 1e-5);
    EXPECT_NEAR(crossEntropy(logits, ids(t, {4}), -100, e, Reduction::sum).item(), total, 1e-5);
    const std::vector<double> none =
        crossEntropy(logits, ids(t, {4}), -100, e, Reduction::none).toDoubles();
    EXPECT_EQ(none[1], 0.0);
  }
  // Every row ignored: the mean is 0/0, NaN as in PyTorch.
  Tensor logits = Tensor::fromVector(x, {4, 3});
  EXPECT_TRUE(std::isnan(crossEntropy(logits, ids({-100, -100, -100, -100}, {4})).item()));
}

TEST(NNValues, CrossEntropyGradientIsSoftmaxMinusSmoothedOneHot) {
  Tensor logits = req(Tensor::fromVector(std::vector<double>{0.5, -1, 2, 0, 0, 0}, {2, 3}));
  Tensor loss = crossEntropy(logits, ids({2, -100}, {2}), -100, 0.3, Reduction::sum);
  const std::vector<double> g = grad({loss}, {Tensor::ones({})}, {logits})[0].toDoubles();
  const double z = std::exp(0.5) + std::exp(-1.0) + std::exp(2.0);
  EXPECT_NEAR(g[0], std::exp(0.5) / z - 0.1, 1e-6);
  EXPECT_NEAR(g[2], std::exp(2.0) / z - 0.1 - 0.7, 1e-6);
  for (int i = 3; i < 6; ++i) EXPECT_EQ(g[static_cast<size_t>(i)], 0.0);
}

TEST(NNValues, BatchNormUpdatesRunningStatsLikePyTorch) {
  // Channel 0 sees {1, 3, 5, 7}, channel 1 sees {2, 2, 4, 8} (x is [4, 2]).
  Tensor x = Tensor::fromVector(std::vector<double>{1, 2, 3, 2, 5, 4, 7, 8}, {4, 2});
  Tensor rm = Tensor::fromVector(std::vector<double>{0.5, -1}, {2});
  Tensor rv = Tensor::fromVector(std::vector<double>{1, 2}, {2});
  Tensor y = batchNorm(x, Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5);
  // mean 4 and 4; biased var 5 and 6; unbiased 20/3 and 8.
  const std::vector<double> m = rm.toDoubles(), v = rv.toDoubles(), yv = y.toDoubles();
  EXPECT_NEAR(m[0], 0.9 * 0.5 + 0.1 * 4, 1e-6);
  EXPECT_NEAR(m[1], 0.9 * -1 + 0.1 * 4, 1e-6);
  EXPECT_NEAR(v[0], 0.9 * 1 + 0.1 * 20.0 / 3.0, 1e-6);
  EXPECT_NEAR(v[1], 0.9 * 2 + 0.1 * 8, 1e-6);
  EXPECT_NEAR(yv[0], (1 - 4) / std::sqrt(5 + 1e-5), 1e-5);
  EXPECT_NEAR(yv[7], (8 - 4) / std::sqrt(6 + 1e-5), 1e-5);
  // Evaluation normalises with the running statistics and leaves them alone.
  Tensor ye = batchNorm(x, Tensor(), Tensor(), rm, rv, false, 0.1, 1e-5);
  EXPECT_NEAR(ye.toDoubles()[0], (1 - m[0]) / std::sqrt(v[0] + 1e-5), 1e-5);
  EXPECT_NEAR(rm.toDoubles()[0], m[0], 0.0);
  // The in-place update is visible to autograd's version check.
  EXPECT_THROW(batchNorm(x, Tensor(), Tensor(), req(Tensor::zeros({2}, DType::f64)), rv, true),
               Error);
}

TEST(NNValues, I32IndicesActLikeI64) {
  manualSeed(4);
  Tensor w = f32({6, 3});
  Tensor i64 = ids({5, 0, 5}, {3}), i32 = i64.to(DType::i32);
  EXPECT_EQ(embedding(w, i32).toDoubles(), embedding(w, i64).toDoubles());
  EXPECT_EQ(indexSelect(w, 0, i32).toDoubles(), indexSelect(w, 0, i64).toDoubles());
  EXPECT_NEAR(crossEntropy(w.slice(0, 0, 3), ids({2, 0, 1}, {3}).to(DType::i32)).item(),
              crossEntropy(w.slice(0, 0, 3), ids({2, 0, 1}, {3})).item(), 1e-7);
}

TEST(NNValues, EmptyAndScalarInputs) {
  // f32 goes through oneDNN, whose exp(0) is within a few ulp of 1.
  EXPECT_NEAR(softmax(Tensor::scalar(3.0)).item(), 1.0, 1e-5);
  EXPECT_NEAR(logSoftmax(Tensor::scalar(3.0)).item(), 0.0, 1e-5);
  EXPECT_EQ(logSoftmax(Tensor::scalar(3.0, DType::f64)).item(), 0.0);
  Tensor x = req(Tensor::zeros({0, 5})), w = req(Tensor::ones({5}));
  Tensor y = layerNorm(x, w, Tensor());
  EXPECT_EQ(y.shape(), (Shape{0, 5}));
  const std::vector<Tensor> g = grad({sum(y)}, {Tensor::ones({})}, {x, w});
  EXPECT_EQ(g[1].toDoubles(), std::vector<double>(5, 0.0));
  EXPECT_EQ(softmax(Tensor::zeros({3, 0}), -1).shape(), (Shape{3, 0}));
  EXPECT_EQ(embedding(f32({4, 2}), ids({}, {0, 3})).shape(), (Shape{0, 3, 2}));
  EXPECT_EQ(crossEntropy(f32({0, 4}), ids({}, {0}), -100, 0.0, Reduction::sum).item(), 0.0);
  EXPECT_EQ(dropout(Tensor::zeros({0}), 0.5, true).numel(), 0);
}

// ---- dropout ----

TEST(NNDropout, SameSeedSameMaskForAnyThreadCount) {
  const int threads = cpu::numThreads();
  Tensor x = Tensor::ones({300, 257});
  cpu::setNumThreads(1);
  manualSeed(42);
  const std::vector<double> one = dropout(x, 0.25, true).toDoubles();
  cpu::setNumThreads(2);
  manualSeed(42);
  const std::vector<double> two = dropout(x, 0.25, true).toDoubles();
  cpu::setNumThreads(threads);
  EXPECT_EQ(one, two);
  // A second draw from the same stream gives a different mask.
  EXPECT_NE(dropout(x, 0.25, true).toDoubles(), two);
}

TEST(NNDropout, KeepsAboutOneMinusPAndScales) {
  manualSeed(8);
  const double p = 0.3;
  Tensor x = f32({200, 500}, 0.5, 1.5);
  const std::vector<double> xv = x.toDoubles(), yv = dropout(x, p, true).toDoubles();
  int64_t kept = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (yv[i] == 0.0) continue;
    ++kept;
    EXPECT_NEAR(yv[i], xv[i] / (1 - p), 1e-5) << "element " << i;
  }
  // 100,000 Bernoulli draws: the kept fraction's standard deviation is ~0.0015.
  EXPECT_NEAR(static_cast<double>(kept) / static_cast<double>(xv.size()), 1 - p, 0.01);
}

TEST(NNDropout, IdentityWhenNotTrainingAndRejectsBadP) {
  Tensor x = f32({10});
  EXPECT_EQ(dropout(x, 0.5, false).toDoubles(), x.toDoubles());
  EXPECT_EQ(dropout(x, 0.0, true).toDoubles(), x.toDoubles());
  expectMentions(errorOf([&] { dropout(x, 1.0, true); }), {"dropout", "[0, 1)", "1"});
  expectMentions(errorOf([&] { dropout(x, -0.1, true); }), {"dropout", "-0.1"});
}

// ---- errors ----

TEST(NNErrors, OutOfRangeIndicesThrowNamingValueAndSize) {
  Tensor w = f32({10, 4});
  expectMentions(errorOf([&] {
                   embedding(w, ids({1, 10}, {2}));
                 }),
                 {"embedding", "10", "size 10", "[10, 4]"});
  expectMentions(errorOf([&] { embedding(w, ids({-1}, {1})); }), {"embedding", "-1"});
  expectMentions(errorOf([&] {
                   indexSelect(w, 1, ids({0, 4}, {2}));
                 }),
                 {"indexSelect", "index 4", "size 4", "[10, 4]"});
  expectMentions(errorOf([&] {
                   gather(w, 0, ids({3, 12}, {2, 1}));
                 }),
                 {"gather", "index 12", "size 10"});
  expectMentions(errorOf([&] {
                   scatter(w, 1, ids({7}, {1, 1}), f32({1, 1}));
                 }),
                 {"scatter", "index 7", "size 4"});
  expectMentions(errorOf([&] {
                   crossEntropy(w, ids({0, 1, 2, 3, 4, 5, 6, 7, 8, 4}, {10}));
                 }),
                 {"crossEntropy", "target 4", "4 classes", "[10, 4]"});
  // The kernels check too (the contract of Backend.h), before touching memory.
  Tensor out = Tensor::empty({1, 4});
  expectMentions(errorOf([&] { cpu::referenceBackend().indexSelect(w, 0, ids({10}, {1}), out); }),
                 {"index 10", "size 10"});
}

TEST(NNErrors, MismatchesNameBothShapes) {
  expectMentions(errorOf([&] {
                   layerNorm(f32({3, 5}), f32({4}), Tensor());
                 }),
                 {"layerNorm", "[4]", "[3, 5]"});
  expectMentions(errorOf([&] {
                   layerNorm(f32({3, 5}), f32({5}), f32({5}).to(DType::f64));
                 }),
                 {"layerNorm", "f64[5]", "f32[3, 5]"});
  expectMentions(errorOf([&] {
                   rmsNorm(f32({2, 6}), f32({2, 3}));
                 }),
                 {"rmsNorm", "[2, 3]", "[2, 6]"});
  expectMentions(errorOf([&] {
                   crossEntropy(f32({4, 3}), ids({0, 1, 2}, {3}));
                 }),
                 {"crossEntropy", "[3]", "[4, 3]", "expected target shape [4]"});
  expectMentions(errorOf([&] { crossEntropy(f32({2, 3}), f32({2})); }), {"crossEntropy", "i64"});
  expectMentions(errorOf([&] {
                   mseLoss(f32({2, 3}), f32({3, 2}));
                 }),
                 {"mseLoss", "[2, 3]", "[3, 2]"});
  expectMentions(errorOf([&] { mseLoss(f32({2}), f32({2}).to(DType::f64)); }),
                 {"mseLoss", "f32[2]", "f64[2]"});
  expectMentions(errorOf([&] {
                   batchNorm(f32({4, 3}), f32({4}), Tensor(), Tensor(), Tensor(), true);
                 }),
                 {"batchNorm", "[4]", "[4, 3]", "[3]"});
  expectMentions(errorOf([&] {
                   batchNorm(f32({4, 3}), Tensor(), Tensor(), Tensor(), Tensor(), false);
                 }),
                 {"batchNorm", "running_mean"});
  expectMentions(errorOf([&] {
                   batchNorm(f32({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true);
                 }),
                 {"batchNorm", "more than one value"});
  expectMentions(errorOf([&] {
                   gather(f32({3, 4}), 1, ids({0}, {1}));
                 }),
                 {"gather", "[1]", "[3, 4]"});
  expectMentions(errorOf([&] {
                   gather(f32({3, 4}), 1, ids({0, 0, 0, 0}, {4, 1}));
                 }),
                 {"gather", "[4, 1]", "[3, 4]", "dim 0"});
  expectMentions(errorOf([&] {
                   scatter(f32({3, 4}), 1, ids({0, 1}, {1, 2}), f32({1, 2}).to(DType::f64));
                 }),
                 {"scatter", "f32[3, 4]", "f64[1, 2]"});
  expectMentions(errorOf([&] {
                   scatter(f32({3, 4}), 1, ids({0, 1}, {1, 2}), f32({1, 1}));
                 }),
                 {"scatter", "[1, 2]", "[1, 1]"});
  expectMentions(errorOf([&] {
                   indexSelect(f32({3, 4}), 0, ids({0, 1}, {1, 2}));
                 }),
                 {"indexSelect", "1-D", "[1, 2]"});
  expectMentions(errorOf([&] {
                   embedding(f32({3, 4, 5}), ids({0}, {1}));
                 }),
                 {"embedding", "[V, C]", "[3, 4, 5]"});
}

}  // namespace
}  // namespace lathe
