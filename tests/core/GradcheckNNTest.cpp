// Table-driven float64 gradcheck (central differences) of the softmax, normalisation, loss and
// indexing ops (tests/OpTestUtil.h), plus dropout's gradient, which is random and so checked
// against its own mask rather than by finite differences.
#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

using test::gradcheck;
using test::uniform;

using test::GradCase;

Tensor req(Tensor t) {
  return t.setRequiresGrad(true);
}
Tensor ids(const std::vector<int64_t>& v, const Shape& s) {
  return Tensor::fromVector(v, s, DType::i64);
}
Tensor f64(const std::vector<double>& v, const Shape& s) {
  return Tensor::fromVector(v, s, DType::f64);
}

std::vector<GradCase> cases() {
  auto u = [](Shape s, double lo = -1, double hi = 1) { return req(uniform(s, lo, hi)); };
  using V = std::vector<Tensor>;
  return {
      {"softmax_last",
       [=] {
         return V{u({3, 5}, -2, 2)};
       },
       [](auto& x) { return softmax(x[0]); }},
      {"softmax_dim0",
       [=] {
         return V{u({4, 3}, -2, 2)};
       },
       [](auto& x) { return softmax(x[0], 0); }},
      {"softmax_middle",
       [=] {
         return V{u({2, 3, 4}, -2, 2)};
       },
       [](auto& x) { return softmax(x[0], 1); }},
      {"softmax_noncontiguous",
       [=] {
         return V{u({4, 5}, -2, 2)};
       },
       [](auto& x) { return softmax(x[0].transpose(0, 1), -1); }},
      {"log_softmax_last",
       [=] {
         return V{u({3, 5}, -2, 2)};
       },
       [](auto& x) { return logSoftmax(x[0]); }},
      {"log_softmax_dim0",
       [=] {
         return V{u({2, 3, 4}, -2, 2)};
       },
       [](auto& x) { return logSoftmax(x[0], 0); }},
      {"layer_norm_affine",
       [=] {
         return V{u({4, 6}, -2, 2), u({6}, 0.5, 1.5), u({6})};
       },
       [](auto& x) { return layerNorm(x[0], x[1], x[2]); }},
      {"layer_norm_plain",
       [=] {
         return V{u({3, 2, 5}, -2, 2)};
       },
       [](auto& x) { return layerNorm(x[0], Tensor(), Tensor()); }},
      {"layer_norm_2d_shape",
       [=] {
         return V{u({2, 3, 4}, -2, 2), u({3, 4}, 0.5, 1.5), u({3, 4})};
       },
       [](auto& x) { return layerNorm(x[0], x[1], x[2]); }},
      {"layer_norm_weight_only",
       [=] {
         return V{u({3, 7}, -2, 2), u({7}, 0.5, 1.5)};
       },
       [](auto& x) { return layerNorm(x[0], x[1], Tensor()); }},
      {"rms_norm_weight",
       [=] {
         return V{u({4, 6}, -2, 2), u({6}, 0.5, 1.5)};
       },
       [](auto& x) { return rmsNorm(x[0], x[1]); }},
      {"rms_norm_plain",
       [=] {
         return V{u({3, 5}, -2, 2)};
       },
       [](auto& x) { return rmsNorm(x[0], Tensor()); }},
      {"batch_norm_train_2d",
       [=] {
         return V{u({5, 3}, -2, 2), u({3}, 0.5, 1.5), u({3})};
       },
       [](auto& x) {
         Tensor rm = Tensor::zeros({3}, DType::f64), rv = Tensor::ones({3}, DType::f64);
         return batchNorm(x[0], x[1], x[2], rm, rv, true);
       }},
      {"batch_norm_train_4d",
       [=] {
         return V{u({2, 3, 2, 3}, -2, 2), u({3}, 0.5, 1.5), u({3})};
       },
       [](auto& x) { return batchNorm(x[0], x[1], x[2], Tensor(), Tensor(), true); }},
      {"batch_norm_train_no_affine",
       [=] {
         return V{u({4, 2, 3}, -2, 2)};
       },
       [](auto& x) { return batchNorm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true); }},
      {"batch_norm_eval",
       [=] {
         return V{u({2, 3, 2, 2}, -2, 2), u({3}, 0.5, 1.5), u({3})};
       },
       [](auto& x) {
         Tensor rm = f64({0.1, -0.2, 0.3}, {3}), rv = f64({0.5, 1.5, 2.0}, {3});
         return batchNorm(x[0], x[1], x[2], rm, rv, false);
       }},
      {"cross_entropy_mean",
       [=] {
         return V{u({4, 5}, -2, 2)};
       },
       [](auto& x) {
         return crossEntropy(x[0], ids({1, 0, 4, 2}, {4}));
       }},
      {"cross_entropy_sum",
       [=] {
         return V{u({4, 5}, -2, 2)};
       },
       [](auto& x) {
         return crossEntropy(x[0], ids({1, 0, 4, 2}, {4}), -100, 0.0, Reduction::sum);
       }},
      {"cross_entropy_none",
       [=] {
         return V{u({4, 5}, -2, 2)};
       },
       [](auto& x) {
         return crossEntropy(x[0], ids({1, 0, 4, 2}, {4}), -100, 0.0, Reduction::none);
       }},
      {"cross_entropy_ignore",
       [=] {
         return V{u({5, 4}, -2, 2)};
       },
       [](auto& x) {
         return crossEntropy(x[0], ids({1, -100, 3, -100, 0}, {5}));
       }},
      {"cross_entropy_ignore_class",
       [=] {
         return V{u({4, 3}, -2, 2)};
       },
       [](auto& x) {
         return crossEntropy(x[0], ids({1, 0, 2, 0}, {4}), 0, 0.0, Reduction::sum);
       }},
      {"cross_entropy_smoothing",
       [=] {
         return V{u({4, 6}, -2, 2)};
       },
       [](auto& x) {
         return crossEntropy(x[0], ids({5, -1, 0, 2}, {4}), -1, 0.2);
       }},
      {"cross_entropy_batched",
       [=] {
         return V{u({2, 3, 4}, -2, 2)};
       },
       [](auto& x) {
         return crossEntropy(x[0], ids({0, 3, 1, -100, 2, 2}, {2, 3}), -100, 0.1, Reduction::none);
       }},
      {"mse_mean",
       [=] {
         return V{u({3, 4}), u({3, 4})};
       },
       [](auto& x) { return mseLoss(x[0], x[1]); }},
      {"mse_sum",
       [=] {
         return V{u({5}), u({5})};
       },
       [](auto& x) { return mseLoss(x[0], x[1], Reduction::sum); }},
      {"mse_none",
       [=] {
         return V{u({2, 3}), u({2, 3})};
       },
       [](auto& x) { return mseLoss(x[0], x[1], Reduction::none); }},
      {"index_select_dim0",
       [=] {
         return V{u({4, 3})};
       },
       [](auto& x) {
         return indexSelect(x[0], 0, ids({2, 0, 2, 3}, {4}));
       }},
      {"index_select_dim1",
       [=] {
         return V{u({2, 5, 3})};
       },
       [](auto& x) {
         return indexSelect(x[0], 1, ids({4, 4, 1}, {3}));
       }},
      {"gather_dim1",
       [=] {
         return V{u({3, 4})};
       },
       [](auto& x) {
         return gather(x[0], 1, ids({0, 0, 3, 1, 2, 1}, {3, 2}));
       }},
      {"gather_dim0_smaller",
       [=] {
         return V{u({3, 4, 2})};
       },
       [](auto& x) {
         return gather(x[0], 0, ids({2, 0, 1, 1, 0, 2}, {1, 3, 2}));
       }},
      {"scatter_add",
       [=] {
         return V{u({3, 4}), u({3, 2})};
       },
       [](auto& x) {
         return scatter(x[0], 1, ids({0, 0, 3, 1, 2, 2}, {3, 2}), x[1], true);
       }},
      {"scatter_replace",
       [=] {
         return V{u({3, 4}), u({3, 2})};
       },
       [](auto& x) {
         return scatter(x[0], 1, ids({0, 2, 3, 1, 2, 1}, {3, 2}), x[1]);
       }},
      {"scatter_src_larger",
       [=] {
         return V{u({4, 3}), u({3, 3})};
       },
       [](auto& x) {
         return scatter(x[0], 0, ids({3, 0, 1, 2}, {2, 2}), x[1]);
       }},
      {"embedding_repeated",
       [=] {
         return V{u({5, 3})};
       },
       [](auto& x) {
         return embedding(x[0], ids({1, 4, 1, 0, 1, 4}, {2, 3}));
       }},
  };
}

class GradcheckNN : public ::testing::TestWithParam<GradCase> {};

TEST_P(GradcheckNN, MatchesCentralDifferences) {
  const GradCase& c = GetParam();
  manualSeed(11);
  gradcheck(c.fn, c.inputs(), c.name);
}

INSTANTIATE_TEST_SUITE_P(Ops, GradcheckNN, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

// The gradient of dropout is the upstream gradient times mask / (1 - p), where the mask is the
// one the forward drew (kept positions are exactly those with a non-zero output).
TEST(GradcheckNN, DropoutGradientIsMaskOverKeep) {
  manualSeed(5);
  const double p = 0.3;
  Tensor x = req(uniform({40, 30}, 0.5, 1.5));
  Tensor y = dropout(x, p, true);
  Tensor w = uniform({40, 30}, -1, 1);
  Tensor gx = grad({y}, {w}, {x})[0];
  const std::vector<double> yv = y.toDoubles(), wv = w.toDoubles(), gv = gx.toDoubles();
  int kept = 0;
  for (size_t i = 0; i < yv.size(); ++i) {
    const bool keep = yv[i] != 0.0;
    kept += keep;
    EXPECT_NEAR(gv[i], keep ? wv[i] / (1 - p) : 0.0, 1e-12) << "element " << i;
  }
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, static_cast<int>(yv.size()));
}

}  // namespace
}  // namespace lathe
