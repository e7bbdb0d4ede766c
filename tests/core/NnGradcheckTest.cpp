// End-to-end float64 gradchecks of composed layers: every parameter's gradient (and the
// input's) against central differences (eps 1e-6, atol 1e-5, rtol 1e-3) for a transformer
// block (MHA and GQA + RoPE + RMSNorm + gated MLP), a tiny GPT with cross-entropy, a LeNet-style
// CNN and a ResNet with BatchNorm in training mode.
#include <gtest/gtest.h>

#include "core/nn/Cnn.h"
#include "core/nn/Gpt.h"
#include "core/nn/Transformer.h"
#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

// Checks d objective / d parameter for every parameter of `m`; objective() must be a scalar.
void parameterGradcheck(Module& m, const std::function<Tensor()>& objective,
                        const std::string& name, double eps = 1e-6, double atol = 1e-5,
                        double rtol = 1e-3) {
  m.zeroGrad(true);
  objective().backward();
  for (auto& [pname, p] : m.namedParameters()) {
    ASSERT_EQ(p.dtype(), DType::f64) << name;
    Tensor analytic = p.grad().defined() ? p.grad().clone() : Tensor::zeros(p.shape(), DType::f64);
    std::vector<double> numeric(static_cast<size_t>(p.numel()));
    double* data = p.data<double>();
    NoGradGuard no_grad;
    for (int64_t j = 0; j < p.numel(); ++j) {
      const double orig = data[j];
      data[j] = orig + eps;
      const double up = objective().item();
      data[j] = orig - eps;
      const double down = objective().item();
      data[j] = orig;
      numeric[static_cast<size_t>(j)] = (up - down) / (2 * eps);
    }
    test::expectClose(analytic, Tensor::fromVector(numeric, p.shape(), DType::f64), atol, rtol,
                      name + ": d/d " + pname);
  }
}

ModuleOptions f64() {
  ModuleOptions o;
  o.dtype = DType::f64;
  return o;
}

// sum(module(x) * w) with a fixed random weight w.
std::function<Tensor()> weightedSum(Module& m, const Tensor& x, const Shape& out_shape) {
  Tensor w = test::uniform(out_shape, 0.5, 1.5);
  return [&m, x, w] { return sum(mul(m.forward(x), w)); };
}

void checkBlock(const BlockConfig& cfg, const std::string& name) {
  manualSeed(21);
  Block block(cfg, f64());
  // Larger-than-default weights so every path contributes visibly.
  {
    NoGradGuard g;
    for (auto& p : block.parameters()) Tensor(p).copy_(add(p, test::uniform(p.shape(), -0.3, 0.3)));
  }
  const Tensor x = test::uniform({2, 5, cfg.attn.d_model});
  parameterGradcheck(block, weightedSum(block, x, {2, 5, cfg.attn.d_model}), name);
  test::gradcheck([&](const std::vector<Tensor>& in) { return block.forward(in[0]); },
                  {x.detach().clone().setRequiresGrad(true)}, name + " (input)");
}

TEST(NnGradcheck, TransformerBlockMultiHeadLayerNorm) {
  BlockConfig cfg;
  cfg.attn = {8, 2, 0, 8, true, false, 10000.0, 0.0};
  cfg.mlp_hidden = 12;
  cfg.activation = ActivationKind::gelu_tanh;
  checkBlock(cfg, "block(mha, layernorm)");
}

TEST(NnGradcheck, TransformerBlockGroupedQueryRopeRmsGated) {
  BlockConfig cfg;
  cfg.attn = {8, 4, 2, 8, false, true, 100.0, 0.0};
  cfg.mlp_hidden = 10;
  cfg.activation = ActivationKind::silu;
  cfg.gated_mlp = true;
  cfg.rms_norm = true;
  checkBlock(cfg, "block(gqa, rope, rmsnorm, swiglu)");
}

TEST(NnGradcheck, TinyGptWithCrossEntropy) {
  manualSeed(22);
  GptConfig cfg = GptConfig::parse({{"type", "gpt"},
                                    {"vocab_size", 7},
                                    {"block_size", 6},
                                    {"n_layer", 2},
                                    {"n_head", 2},
                                    {"d_model", 4},
                                    {"init_std", 0.5}},
                                   "model");
  GptModel model(cfg, f64());
  const Tensor ids = Tensor::fromVector(std::vector<int64_t>{1, 4, 2, 6, 0, 3, 3, 5}, {2, 4});
  const Tensor targets = Tensor::fromVector(std::vector<int64_t>{4, 2, 6, 0, 3, 3, 5, 1}, {8});
  parameterGradcheck(
      model,
      [&] {
        return crossEntropy(model.forward(ids).reshape({8, 7}), targets);
      },
      "gpt(tied, learned positions)");
}

TEST(NnGradcheck, TinyLeNetCnn) {
  manualSeed(23);
  LeNetModel model(CnnConfig::parse({{"type", "cnn"},
                                     {"in_channels", 1},
                                     {"image_size", 6},
                                     {"classes", 3},
                                     {"channels", {2, 3}},
                                     {"hidden", {4}}},
                                    "model"),
                   f64());
  const Tensor x = test::uniform({2, 1, 6, 6});
  const Tensor targets = Tensor::fromVector(std::vector<int64_t>{2, 0}, {2});
  parameterGradcheck(
      model, [&] { return crossEntropy(model.forward(x), targets); }, "lenet(relu, maxpool)");
  test::gradcheck([&](const std::vector<Tensor>& in) { return model.forward(in[0]); },
                  {x.detach().clone().setRequiresGrad(true)}, "lenet (input)");
}

TEST(NnGradcheck, TinyResNetWithBatchNormInTraining) {
  manualSeed(24);
  ResNetModel model(CnnConfig::parse({{"type", "cnn"},
                                      {"variant", "resnet"},
                                      {"in_channels", 2},
                                      {"image_size", 4},
                                      {"classes", 3},
                                      {"widths", {2, 3}},
                                      {"blocks", {1, 1}}},
                                     "model"),
                    f64());
  model.train();
  const Tensor x = test::uniform({3, 2, 4, 4});
  parameterGradcheck(model, weightedSum(model, x, {3, 3}), "resnet(bn train)");
}

}  // namespace
}  // namespace lathe
