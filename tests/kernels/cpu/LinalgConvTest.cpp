// The oneDNN CPU kernels (matmul, conv2d, pooling) against the reference kernels on random
// inputs of odd sizes, outputs and gradients; a few exact values that both must reproduce; and
// the op layer's argument errors.
#include <limits>
#include <string>

#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

using test::compareWithReference;
using test::uniform;
using V = std::vector<Tensor>;

Tensor req(Tensor t) {
  return t.setRequiresGrad(true);
}
Tensor f32(const Shape& s) {
  return req(uniform(s, -1, 1, DType::f32));
}

struct CompareCase {
  const char* name;
  std::function<V()> inputs;
  test::TensorFn fn;
  double atol = 1e-4, rtol = 1e-4;
};

void PrintTo(const CompareCase& c, std::ostream* os) {
  *os << c.name;
}

Conv2dParams convParams(int stride, int pad, int dilation, int groups) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.dilation_h = p.dilation_w = dilation;
  p.groups = groups;
  return p;
}

std::vector<CompareCase> matmulCases() {
  auto mm = [](const V& x) { return matmul(x[0], x[1]); };
  auto bf = [](Shape s) { return req(uniform(s, -1, 1, DType::bf16)); };
  return {
      {"mm_7x33x129",
       [] {
         return V{f32({7, 33}), f32({33, 129})};
       },
       mm},
      {"mm_129x33x7",
       [] {
         return V{f32({129, 33}), f32({33, 7})};
       },
       mm},
      {"mm_1x7x1",
       [] {
         return V{f32({1, 7}), f32({7, 1})};
       },
       mm},
      {"mm_k1",
       [] {
         return V{f32({33, 1}), f32({1, 7})};
       },
       mm},
      {"mm_transposed_a",
       [] {
         return V{f32({33, 7}), f32({33, 17})};
       },
       [](const V& x) { return matmul(x[0].transpose(0, 1), x[1]); }},
      {"mm_transposed_b",
       [] {
         return V{f32({7, 33}), f32({17, 33})};
       },
       [](const V& x) { return matmul(x[0], x[1].transpose(0, 1)); }},
      {"mm_transposed_both",
       [] {
         return V{f32({33, 7}), f32({17, 33})};
       },
       [](const V& x) { return matmul(x[0].transpose(0, 1), x[1].transpose(0, 1)); }},
      {"mm_noncontiguous",
       [] {
         return V{req(test::nonContiguous(f32({7, 33}))), f32({33, 9})};
       },
       mm},
      {"mm_strided_slice",
       [] {
         return V{f32({14, 33}), f32({33, 18})};
       },
       [](const V& x) { return matmul(x[0].slice(0, 0, 14, 2), x[1].slice(1, 1, 18, 2)); }},
      {"bmm_3x7x33x17",
       [] {
         return V{f32({3, 7, 33}), f32({3, 33, 17})};
       },
       mm},
      {"bmm_transposed",
       [] {
         return V{f32({3, 33, 7}), f32({3, 17, 33})};
       },
       [](const V& x) { return matmul(x[0].transpose(1, 2), x[1].transpose(1, 2)); }},
      {"bmm_broadcast_batch",
       [] {
         return V{f32({2, 1, 7, 33}), f32({3, 33, 5})};
       },
       mm},
      {"bmm_broadcast_left_2d",
       [] {
         return V{f32({7, 33}), f32({2, 33, 9})};
       },
       mm},
      {"bmm_fold_right_2d",
       [] {
         return V{f32({2, 7, 33}), f32({33, 129})};
       },
       mm},
      {"bmm_4d",
       [] {
         return V{f32({2, 3, 7, 9}), f32({2, 3, 9, 4})};
       },
       mm},
      {"vec_vec",
       [] {
         return V{f32({33}), f32({33})};
       },
       mm},
      {"mat_vec",
       [] {
         return V{f32({7, 33}), f32({33})};
       },
       mm},
      {"vec_mat",
       [] {
         return V{f32({33}), f32({33, 7})};
       },
       mm},
      {"vec_batched",
       [] {
         return V{f32({33}), f32({2, 33, 7})};
       },
       mm},
      {"batched_vec",
       [] {
         return V{f32({2, 7, 33}), f32({33})};
       },
       mm},
      {"vec_noncontiguous",
       [] {
         return V{req(test::nonContiguous(f32({33}))), f32({33, 5})};
       },
       mm},
      {"no_grad_b",
       [] {
         return V{f32({7, 33}), uniform({33, 5}, -1, 1, DType::f32)};
       },
       mm},
      {"linear_bias",
       [] {
         return V{f32({33, 129}), f32({7, 129}), f32({7})};
       },
       [](const V& x) { return linear(x[0], x[1], x[2]); }},
      {"linear_no_bias_3d",
       [] {
         return V{f32({2, 5, 33}), f32({17, 33})};
       },
       [](const V& x) { return linear(x[0], x[1]); }},
      {"linear_row",
       [] {
         return V{f32({1, 33}), f32({1, 33}), f32({1})};
       },
       [](const V& x) { return linear(x[0], x[1], x[2]); }},
      {"linear_vector_input",
       [] {
         return V{f32({33}), f32({7, 33}), f32({7})};
       },
       [](const V& x) { return linear(x[0], x[1], x[2]); }},
      {"linear_transposed_weight",
       [] {
         return V{f32({9, 33}), f32({33, 7}), f32({7})};
       },
       [](const V& x) { return linear(x[0], x[1].transpose(0, 1), x[2]); }},
      {"linear_noncontiguous_input",
       [] {
         return V{req(test::nonContiguous(f32({9, 33}))), f32({7, 33}), f32({7})};
       },
       [](const V& x) { return linear(x[0], x[1], x[2]); }},
      {"bf16_mm",
       [=] {
         return V{bf({7, 33}), bf({33, 17})};
       },
       mm, 5e-2, 2e-2},
      {"bf16_linear",
       [=] {
         return V{bf({2, 9, 33}), bf({7, 33}), bf({7})};
       },
       [](const V& x) { return linear(x[0], x[1], x[2]); }, 5e-2, 2e-2},
      {"f64_mm",
       [] {
         return V{req(uniform({7, 33})), req(uniform({33, 5}))};
       },
       mm, 1e-12, 1e-12},
      {"f16_mm",
       [] {
         return V{req(uniform({7, 9}, -1, 1, DType::f16)), req(uniform({9, 5}, -1, 1, DType::f16))};
       },
       mm, 1e-2, 1e-2},
  };
}

std::vector<CompareCase> convCases() {
  auto conv = [](Conv2dParams p) {
    return [p](const V& x) { return conv2d(x[0], x[1], x.size() > 2 ? x[2] : Tensor(), p); };
  };
  return {
      {"conv_k3_pad1_bias",
       [] {
         return V{f32({2, 3, 9, 11}), f32({5, 3, 3, 3}), f32({5})};
       },
       conv(convParams(1, 1, 1, 1))},
      {"conv_stride2_k3x2",
       [] {
         return V{f32({2, 3, 9, 7}), f32({4, 3, 3, 2})};
       },
       conv(convParams(2, 0, 1, 1))},
      {"conv_dilation2_pad2",
       [] {
         return V{f32({1, 2, 13, 13}), f32({7, 2, 3, 3}), f32({7})};
       },
       conv(convParams(1, 2, 2, 1))},
      {"conv_stride3_pad1_odd",
       [] {
         return V{f32({3, 5, 33, 17}), f32({7, 5, 5, 3}), f32({7})};
       },
       conv(convParams(3, 1, 1, 1))},
      {"conv_groups2",
       [] {
         return V{f32({2, 4, 8, 8}), f32({6, 2, 3, 3}), f32({6})};
       },
       conv(convParams(1, 1, 1, 2))},
      {"conv_depthwise",
       [] {
         return V{f32({2, 8, 9, 9}), f32({8, 1, 3, 3}), f32({8})};
       },
       conv(convParams(1, 1, 1, 8))},
      {"conv_depthwise_multiplier",
       [] {
         return V{f32({2, 4, 7, 7}), f32({8, 1, 3, 3})};
       },
       conv(convParams(2, 1, 1, 4))},
      {"conv_1x1",
       [] {
         return V{f32({1, 33, 5, 3}), f32({7, 33, 1, 1}), f32({7})};
       },
       conv(convParams(1, 0, 1, 1))},
      {"conv_training_shape",
       [] {
         return V{f32({4, 16, 14, 14}), f32({32, 16, 3, 3}), f32({32})};
       },
       conv(convParams(1, 1, 1, 1)), 2e-4, 2e-4},
      {"conv_first_layer_c1",
       [] {
         return V{f32({4, 1, 28, 28}), f32({32, 1, 3, 3}), f32({32})};
       },
       conv(convParams(1, 1, 1, 1))},
      {"conv_input_no_grad",
       [] {
         return V{uniform({2, 3, 9, 9}, -1, 1, DType::f32), f32({5, 3, 3, 3}), f32({5})};
       },
       conv(convParams(1, 1, 1, 1))},
      {"conv_weight_no_grad",
       [] {
         return V{f32({2, 3, 9, 9}), uniform({5, 3, 3, 3}, -1, 1, DType::f32)};
       },
       conv(convParams(2, 1, 1, 1))},
      {"conv_bias_grad_only",
       [] {
         return V{uniform({2, 3, 6, 6}, -1, 1, DType::f32),
                  uniform({4, 3, 3, 3}, -1, 1, DType::f32), f32({4})};
       },
       conv(convParams(1, 1, 1, 1))},
      {"conv_noncontiguous_input",
       [] {
         return V{req(test::nonContiguous(f32({2, 3, 7, 9}))), f32({4, 3, 3, 3})};
       },
       conv(convParams(1, 1, 1, 1))},
      {"conv_bf16",
       [] {
         return V{req(uniform({2, 8, 9, 9}, -1, 1, DType::bf16)),
                  req(uniform({16, 8, 3, 3}, -1, 1, DType::bf16)),
                  req(uniform({16}, -1, 1, DType::bf16))};
       },
       conv(convParams(1, 1, 1, 1)), 0.1, 3e-2},
      {"conv_f64",
       [] {
         return V{req(uniform({1, 2, 5, 5})), req(uniform({3, 2, 3, 3}))};
       },
       conv(convParams(1, 1, 1, 1)), 1e-12, 1e-12},
  };
}

std::vector<CompareCase> poolCases() {
  return {
      {"max_k2",
       [] {
         return V{f32({2, 3, 8, 10})};
       },
       [](const V& x) { return maxPool2d(x[0], 2); }},
      {"max_k3_s2_p1_odd",
       [] {
         return V{f32({2, 5, 33, 17})};
       },
       [](const V& x) { return maxPool2d(x[0], 3, 2, 1); }},
      {"max_k2_s1_overlap",
       [] {
         return V{f32({1, 7, 9, 9})};
       },
       [](const V& x) { return maxPool2d(x[0], 2, 1); }},
      {"max_inference",
       [] {
         return V{uniform({2, 5, 33, 17}, -1, 1, DType::f32)};
       },
       [](const V& x) { return maxPool2d(x[0], 3, 2, 1); }},
      {"max_large_planes",
       [] {
         return V{f32({8, 32, 28, 28})};
       },
       [](const V& x) { return maxPool2d(x[0], 2); }},
      {"max_noncontiguous",
       [] {
         return V{req(test::nonContiguous(f32({2, 3, 9, 7})))};
       },
       [](const V& x) { return maxPool2d(x[0], 3, 2, 1); }},
      {"avg_k2",
       [] {
         return V{f32({2, 3, 8, 10})};
       },
       [](const V& x) { return avgPool2d(x[0], 2); }},
      {"avg_k3_s2_p1_odd",
       [] {
         return V{f32({2, 5, 33, 17})};
       },
       [](const V& x) { return avgPool2d(x[0], 3, 2, 1); }},
      {"avg_k3_s1_p1",
       [] {
         return V{f32({1, 7, 9, 9})};
       },
       [](const V& x) { return avgPool2d(x[0], 3, 1, 1); }},
      {"avg_large_planes",
       [] {
         return V{f32({8, 32, 28, 28})};
       },
       [](const V& x) { return avgPool2d(x[0], 2); }},
      {"max_bf16",
       [] {
         return V{req(uniform({2, 3, 9, 9}, -1, 1, DType::bf16))};
       },
       [](const V& x) { return maxPool2d(x[0], 3, 2, 1); }, 1e-2, 1e-2},
      {"avg_bf16",
       [] {
         return V{req(uniform({2, 3, 9, 9}, -1, 1, DType::bf16))};
       },
       [](const V& x) { return avgPool2d(x[0], 3, 2, 1); }, 1e-2, 1e-2},
      {"pool_f64",
       [] {
         return V{req(uniform({1, 2, 5, 5}))};
       },
       [](const V& x) { return avgPool2d(maxPool2d(x[0], 2, 1), 2, 1); }, 1e-12, 1e-12},
  };
}

class OneDnnVsReference : public ::testing::TestWithParam<CompareCase> {};

TEST_P(OneDnnVsReference, OutputsAndGradientsMatch) {
  const CompareCase& c = GetParam();
  manualSeed(5);
  compareWithReference(c.fn, c.inputs(), c.name, c.atol, c.rtol);
}

auto caseName = [](const auto& info) { return std::string(info.param.name); };
INSTANTIATE_TEST_SUITE_P(Matmul, OneDnnVsReference, ::testing::ValuesIn(matmulCases()), caseName);
INSTANTIATE_TEST_SUITE_P(Conv, OneDnnVsReference, ::testing::ValuesIn(convCases()), caseName);
INSTANTIATE_TEST_SUITE_P(Pool, OneDnnVsReference, ::testing::ValuesIn(poolCases()), caseName);

// The kernel entry itself, with every trans combination, the bias epilogue and accumulation.
TEST(LinalgKernels, MatmulFlagsMatchReference) {
  manualSeed(3);
  for (DType dt : {DType::f32, DType::bf16}) {
    const double tol = dt == DType::f32 ? 1e-4 : 6e-2;
    for (int batched = 0; batched < 2; ++batched)
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb)
          for (int acc = 0; acc < 2; ++acc) {
            const int64_t B = 3, M = 7, K = 33, N = 17;
            auto mat = [&](int64_t r, int64_t c) {
              Shape s = batched ? Shape{B, r, c} : Shape{r, c};
              return uniform(s, -1, 1, dt);
            };
            Tensor a = ta ? mat(K, M) : mat(M, K), b = tb ? mat(N, K) : mat(K, N);
            Tensor bias = uniform({N}, -1, 1, dt), init = mat(M, N);
            Tensor fast = init.clone(), ref = init.clone();
            cpu::fastBackend().matmul(a, b, &bias, fast, ta, tb, acc);
            cpu::referenceBackend().matmul(a, b, &bias, ref, ta, tb, acc);
            test::expectClose(fast, ref, tol, tol,
                              std::string(dtypeName(dt)) + " batched " + std::to_string(batched) +
                                  " ta " + std::to_string(ta) + " tb " + std::to_string(tb) +
                                  " accumulate " + std::to_string(acc));
          }
  }
}

// Values worked out by hand, on both backends.
void expectKnownValues() {
  Tensor a = Tensor::fromVector(std::vector<double>{1, 2, 3, 4}, {2, 2});
  Tensor b = Tensor::fromVector(std::vector<double>{5, 6, 7, 8}, {2, 2});
  EXPECT_EQ(matmul(a, b).toDoubles(), (std::vector<double>{19, 22, 43, 50}));
  EXPECT_EQ(matmul(a.transpose(0, 1), b).toDoubles(), (std::vector<double>{26, 30, 38, 44}));
  Tensor bias = Tensor::fromVector(std::vector<double>{10, 20}, {2});
  EXPECT_EQ(linear(a, b, bias).toDoubles(), (std::vector<double>{27, 43, 49, 73}));

  // A 3x3 box filter over ones with padding 1 counts the in-bounds taps.
  Tensor ones = Tensor::ones({1, 1, 3, 3});
  EXPECT_EQ(conv2d(ones, Tensor::ones({1, 1, 3, 3}), Tensor(), convParams(1, 1, 1, 1)).toDoubles(),
            (std::vector<double>{4, 6, 4, 6, 9, 6, 4, 6, 4}));

  Tensor x = Tensor::fromVector(std::vector<double>{1, 5, 2, 0, 3, 4, 8, 7, 6}, {1, 1, 3, 3});
  EXPECT_EQ(maxPool2d(x, 2, 1).toDoubles(), (std::vector<double>{5, 5, 8, 7}));
  // Padding is excluded from the average: the corner window holds 4 real values.
  EXPECT_EQ(avgPool2d(x, 2, 2, 1).toDoubles(), (std::vector<double>{1, 3.5, 4, 5}));
}

TEST(LinalgKernels, KnownValuesFast) {
  expectKnownValues();
}
TEST(LinalgKernels, KnownValuesReference) {
  ScopedBackend use_reference(&cpu::referenceBackend());
  expectKnownValues();
}

TEST(LinalgKernels, MaxPoolGradientGoesToTheMaximum) {
  Tensor x = Tensor::fromVector(std::vector<double>{1, 5, 2, 0, 3, 4, 8, 7, 6}, {1, 1, 3, 3});
  x.setRequiresGrad(true);
  sum(maxPool2d(x, 2, 1)).backward();
  EXPECT_EQ(x.grad().toDoubles(), (std::vector<double>{0, 2, 0, 0, 0, 0, 1, 1, 0}));
}

// NaN wins a max window and an all -inf window reports its first element, on both backends
// (the index decides where the gradient goes).
TEST(LinalgKernels, MaxPoolNanAndInfinityAgree) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  std::vector<double> v(2 * 6 * 6);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>((i * 37) % 11) - 5.0;
  for (size_t i : {0, 7, 44, 45}) v[i] = nan;
  // Rows 2-4, columns 2-4 of plane 0: output (1, 1) at kernel 3 and (2, 2) at kernel 2, pad 1.
  for (size_t i : {14, 15, 16, 20, 21, 22, 26, 27, 28}) v[i] = -inf;
  for (int pad : {0, 1}) {
    Tensor x = req(Tensor::fromVector(v, {1, 2, 6, 6}, DType::f32));
    compareWithReference([pad](const V& in) { return maxPool2d(in[0], 3 - pad, 2, pad); }, {x},
                         "max_pool_nan_inf pad " + std::to_string(pad), 1e-6, 0);
  }
}

TEST(LinalgKernels, EmptyInnerDimensionGivesBias) {
  Tensor x = Tensor::empty({3, 0}), w = Tensor::empty({2, 0});
  Tensor b = Tensor::fromVector(std::vector<double>{1, -2}, {2});
  EXPECT_EQ(linear(x, w, b).toDoubles(), (std::vector<double>{1, -2, 1, -2, 1, -2}));
  EXPECT_EQ(matmul(Tensor::empty({2, 0}), Tensor::empty({0, 3})).toDoubles(),
            std::vector<double>(6, 0.0));
  EXPECT_EQ(matmul(Tensor::empty({0, 4}), Tensor::ones({4, 3})).shape(), (Shape{0, 3}));
}

// Expects fn to throw a lathe::Error whose message contains every one of `parts`.
template <typename F>
void expectError(F&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected a lathe::Error mentioning " << parts.front();
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message \"" << e.what() << "\" lacks \"" << p << "\"";
  }
}

TEST(LinalgErrors, MatmulShapes) {
  expectError([] { matmul(Tensor::ones({3, 4}), Tensor::ones({5, 6})); }, {"[3, 4]", "[5, 6]"});
  expectError(
      [] {
        matmul(Tensor::ones({2, 3, 4}), Tensor::ones({3, 4, 5}));
      },
      {"[2, 3, 4]", "[3, 4, 5]", "broadcast"});
  expectError([] { matmul(Tensor::ones({4}), Tensor::ones({5})); }, {"[4]", "[5]"});
  expectError([] { matmul(Tensor::scalar(1.0), Tensor::ones({5})); }, {"at least one"});
}

TEST(LinalgErrors, MatmulDTypes) {
  expectError(
      [] {
        matmul(Tensor::ones({2, 2}), Tensor::ones({2, 2}, DType::f64));
      },
      {"f32[2, 2]", "f64[2, 2]"});
  expectError(
      [] {
        matmul(Tensor::ones({2, 2}, DType::i64), Tensor::ones({2, 2}, DType::i64));
      },
      {"i64[2, 2]"});
}

TEST(LinalgErrors, LinearShapes) {
  expectError([] { linear(Tensor::ones({4, 3}), Tensor::ones({5, 2})); }, {"[4, 3]", "[5, 2]"});
  expectError(
      [] {
        linear(Tensor::ones({4, 3}), Tensor::ones({5, 3}), Tensor::ones({4}));
      },
      {"[4]", "[5, 3]"});
  expectError([] { linear(Tensor::ones({4, 3}), Tensor::ones({3})); }, {"[3]", "2-D"});
}

TEST(LinalgErrors, ConvShapes) {
  expectError(
      [] {
        conv2d(Tensor::ones({1, 3, 5}), Tensor::ones({2, 3, 3, 3}));
      },
      {"[1, 3, 5]", "4-D"});
  expectError(
      [] {
        conv2d(Tensor::ones({1, 3, 5, 5}), Tensor::ones({2, 4, 3, 3}));
      },
      {"[1, 3, 5, 5]", "[2, 4, 3, 3]"});
  expectError(
      [] {
        conv2d(Tensor::ones({1, 4, 5, 5}), Tensor::ones({3, 2, 3, 3}), Tensor(),
               convParams(1, 1, 1, 2));
      },
      {"[1, 4, 5, 5]", "[3, 2, 3, 3]", "groups"});
  expectError(
      [] {
        conv2d(Tensor::ones({1, 1, 2, 2}), Tensor::ones({1, 1, 3, 3}));
      },
      {"[1, 1, 2, 2]", "[1, 1, 3, 3]", "too small"});
  expectError(
      [] {
        conv2d(Tensor::ones({1, 1, 5, 5}), Tensor::ones({1, 1, 3, 3}), Tensor(),
               convParams(0, 0, 1, 1));
      },
      {"stride"});
  expectError(
      [] {
        conv2d(Tensor::ones({1, 1, 5, 5}), Tensor::ones({2, 1, 3, 3}), Tensor::ones({3}));
      },
      {"[3]", "[2, 1, 3, 3]"});
  expectError(
      [] {
        conv2d(Tensor::ones({1, 1, 5, 5}), Tensor::ones({1, 1, 3, 3}, DType::f64));
      },
      {"f32[1, 1, 5, 5]", "f64[1, 1, 3, 3]"});
}

TEST(LinalgErrors, PoolArguments) {
  expectError([] { maxPool2d(Tensor::ones({1, 1, 4, 4}), 2, 2, 2); }, {"[1, 1, 4, 4]", "padding"});
  expectError([] { avgPool2d(Tensor::ones({1, 1, 2, 2}), 3); }, {"[1, 1, 2, 2]", "too small"});
  expectError([] { maxPool2d(Tensor::ones({4, 4}), 2); }, {"[4, 4]", "4-D"});
  expectError([] { avgPool2d(Tensor::ones({1, 1, 4, 4}, DType::i64), 2); }, {"i64[1, 1, 4, 4]"});
}

TEST(LinalgErrors, DevicesMustMatch) {
  if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no CUDA backend in this build";
  Tensor g = Tensor::ones({2, 2}, DType::f32, Device::cuda());
  expectError([&] { matmul(Tensor::ones({2, 2}), g); }, {"cpu", "cuda"});
  expectError(
      [&] {
        conv2d(Tensor::ones({1, 1, 3, 3}), Tensor::ones({1, 1, 1, 1}, DType::f32, Device::cuda()));
      },
      {"cpu", "cuda"});
}

}  // namespace
}  // namespace lathe
