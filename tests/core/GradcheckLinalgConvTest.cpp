// Table-driven float64 gradcheck (central differences) of matmul, linear, conv2d and the 2-D
// pools, through whichever CPU backend is registered (f64 runs the reference kernels).
#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

using test::gradcheck;
using test::uniform;

using test::GradCase;

Tensor req(Tensor t) {
  return t.setRequiresGrad(true);
}

Conv2dParams convParams(int stride, int pad, int dilation, int groups) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.dilation_h = p.dilation_w = dilation;
  p.groups = groups;
  return p;
}

std::vector<GradCase> cases() {
  auto u = [](Shape s) { return req(uniform(s)); };
  using V = std::vector<Tensor>;
  return {
      {"matmul_2d",
       [=] {
         return V{u({3, 4}), u({4, 5})};
       },
       [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul_transposed_views",
       [=] {
         return V{u({4, 3}), u({5, 4})};
       },
       [](auto& x) { return matmul(x[0].transpose(0, 1), x[1].transpose(0, 1)); }},
      {"matmul_batched",
       [=] {
         return V{u({2, 3, 4}), u({2, 4, 2})};
       },
       [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul_batched_transposed",
       [=] {
         return V{u({2, 4, 3}), u({2, 2, 4})};
       },
       [](auto& x) { return matmul(x[0].transpose(1, 2), x[1].transpose(1, 2)); }},
      {"matmul_broadcast_left",
       [=] {
         return V{u({3, 4}), u({2, 2, 4, 3})};
       },
       [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul_broadcast_right",
       [=] {
         return V{u({2, 1, 3, 4}), u({3, 4, 2})};
       },
       [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul_fold_batch",
       [=] {
         return V{u({2, 3, 4}), u({4, 5})};
       },
       [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul_vec_vec",
       [=] {
         return V{u({5}), u({5})};
       },
       [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul_mat_vec",
       [=] {
         return V{u({3, 5}), u({5})};
       },
       [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul_vec_batched",
       [=] {
         return V{u({4}), u({2, 4, 3})};
       },
       [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul_batched_vec",
       [=] {
         return V{u({2, 3, 4}), u({4})};
       },
       [](auto& x) { return matmul(x[0], x[1]); }},
      {"linear_bias",
       [=] {
         return V{u({4, 3}), u({5, 3}), u({5})};
       },
       [](auto& x) { return linear(x[0], x[1], x[2]); }},
      {"linear_no_bias",
       [=] {
         return V{u({2, 3, 4}), u({2, 4})};
       },
       [](auto& x) { return linear(x[0], x[1]); }},
      {"linear_vector_input",
       [=] {
         return V{u({3}), u({2, 3}), u({2})};
       },
       [](auto& x) { return linear(x[0], x[1], x[2]); }},
      {"linear_transposed_weight",
       [=] {
         return V{u({4, 3}), u({3, 5}), u({5})};
       },
       [](auto& x) { return linear(x[0], x[1].transpose(0, 1), x[2]); }},
      {"conv2d_plain",
       [=] {
         return V{u({2, 2, 5, 5}), u({3, 2, 3, 3}), u({3})};
       },
       [](auto& x) { return conv2d(x[0], x[1], x[2]); }},
      {"conv2d_stride_pad",
       [=] {
         return V{u({1, 2, 6, 5}), u({2, 2, 3, 2}), u({2})};
       },
       [](auto& x) { return conv2d(x[0], x[1], x[2], convParams(2, 1, 1, 1)); }},
      {"conv2d_dilation_no_bias",
       [=] {
         return V{u({2, 1, 7, 6}), u({2, 1, 2, 3})};
       },
       [](auto& x) { return conv2d(x[0], x[1], Tensor(), convParams(1, 2, 2, 1)); }},
      {"conv2d_groups",
       [=] {
         return V{u({1, 4, 5, 5}), u({6, 2, 3, 3}), u({6})};
       },
       [](auto& x) { return conv2d(x[0], x[1], x[2], convParams(1, 1, 1, 2)); }},
      {"conv2d_depthwise",
       [=] {
         return V{u({2, 3, 4, 4}), u({3, 1, 3, 3})};
       },
       [](auto& x) { return conv2d(x[0], x[1], Tensor(), convParams(2, 1, 1, 3)); }},
      {"conv2d_asymmetric_params",
       [=] {
         return V{u({1, 2, 7, 8}), u({2, 2, 3, 2}), u({2})};
       },
       [](auto& x) {
         Conv2dParams p;
         p.stride_h = 2, p.stride_w = 1, p.pad_h = 0, p.pad_w = 2, p.dilation_h = 1,
         p.dilation_w = 2;
         return conv2d(x[0], x[1], x[2], p);
       }},
      {"max_pool",
       [=] {
         return V{u({2, 2, 4, 6})};
       },
       [](auto& x) { return maxPool2d(x[0], 2); }},
      {"max_pool_overlap_pad",
       [=] {
         return V{u({1, 2, 5, 5})};
       },
       [](auto& x) { return maxPool2d(x[0], 3, 2, 1); }},
      {"max_pool_3d_input",
       [=] {
         return V{u({2, 5, 4})};
       },
       [](auto& x) { return maxPool2d(x[0], 2, 1); }},
      {"avg_pool",
       [=] {
         return V{u({2, 2, 4, 6})};
       },
       [](auto& x) { return avgPool2d(x[0], 2); }},
      {"avg_pool_overlap_pad",
       [=] {
         return V{u({1, 2, 5, 6})};
       },
       [](auto& x) { return avgPool2d(x[0], 3, 2, 1); }},
      {"conv_pool_linear_chain",
       [=] {
         return V{u({2, 1, 6, 6}), u({2, 1, 3, 3}), u({3, 8})};
       },
       [](auto& x) {
         Tensor h = maxPool2d(conv2d(x[0], x[1], Tensor(), convParams(1, 1, 1, 1)), 3);
         return linear(h.reshape({2, 8}), x[2]);
       }},
  };
}

class GradcheckLinalgConv : public ::testing::TestWithParam<GradCase> {};

TEST_P(GradcheckLinalgConv, MatchesCentralDifferences) {
  const GradCase& c = GetParam();
  manualSeed(11);
  gradcheck(c.fn, c.inputs(), c.name);
}

INSTANTIATE_TEST_SUITE_P(Ops, GradcheckLinalgConv, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace lathe
