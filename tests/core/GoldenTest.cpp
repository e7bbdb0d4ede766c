// Composite forward/backward cases replayed against values PyTorch computed in float64
// (scripts/make_golden.py writes tests/data/golden/*.json). Where the gradchecks prove each op
// against itself, these prove the op set agrees with the reference framework on the
// conventions that finite differences cannot see: GELU's tanh form, label smoothing, biased vs
// unbiased variance in batch norm's running stats, causal masking, RMS norm's epsilon.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/autograd/Autograd.h"
#include "core/ops/Ops.h"
#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

struct Golden {
  std::map<std::string, Tensor> tensors, outputs, grads;
};

Tensor unpack(const nlohmann::json& j) {
  Shape shape = j.at("shape").get<Shape>();
  std::vector<double> data = j.at("data").get<std::vector<double>>();
  if (shape.empty()) return Tensor::scalar(data.at(0), DType::f64);
  return Tensor::fromVector(data, shape, DType::f64);
}

Golden loadGolden(const std::string& name) {
  const std::string path = std::string(LATHE_TEST_DATA_DIR) + "/golden/" + name + ".json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("missing golden file " + path);
  const nlohmann::json doc = nlohmann::json::parse(in);
  Golden g;
  for (auto& [k, v] : doc.at("tensors").items()) g.tensors[k] = unpack(v);
  for (auto& [k, v] : doc.at("outputs").items()) g.outputs[k] = unpack(v);
  for (auto& [k, v] : doc.at("grads").items()) g.grads[k] = unpack(v);
  return g;
}

// Leaves requiring grad for every tensor PyTorch produced a gradient for.
std::map<std::string, Tensor> leaves(const Golden& g) {
  std::map<std::string, Tensor> t;
  for (auto& [k, v] : g.tensors) {
    t[k] = v.clone();
    if (g.grads.count(k)) t[k].setRequiresGrad(true);
  }
  return t;
}

void expectGolden(const Tensor& actual, const Tensor& expected, const std::string& what) {
  test::expectClose(actual.reshape(expected.shape()), expected, 1e-10, 1e-9, what);
}

void expectGrads(const std::map<std::string, Tensor>& t, const Golden& g) {
  for (auto& [k, expected] : g.grads) {
    ASSERT_TRUE(t.at(k).grad().defined()) << "no gradient for " << k;
    expectGolden(t.at(k).grad(), expected, "grad " + k);
  }
}

TEST(Golden, MlpGeluTanhCrossEntropy) {
  Golden g = loadGolden("mlp");
  auto t = leaves(g);
  Tensor target = t["target"].to(DType::i64);
  Tensor h = gelu(linear(t["x"], t["w1"], t["b1"]), /*tanh_approx=*/true);
  Tensor logits = linear(h, t["w2"], t["b2"]);
  Tensor loss = crossEntropy(logits, target);
  loss.backward();
  expectGolden(logits, g.outputs["logits"], "logits");
  expectGolden(loss, g.outputs["loss"], "loss");
  expectGrads(t, g);
}

TEST(Golden, CnnConvPoolBatchNormLabelSmoothing) {
  Golden g = loadGolden("cnn");
  auto t = leaves(g);
  Tensor target = t["target"].to(DType::i64);
  Tensor running_mean = Tensor::zeros({3}, DType::f64);
  Tensor running_var = Tensor::ones({3}, DType::f64);
  Conv2dParams cp;
  cp.pad_h = cp.pad_w = 1;
  Tensor y = conv2d(t["x"], t["cw"], t["cb"], cp);
  y = maxPool2d(relu(y), 2);
  y = batchNorm(y, t["bw"], t["bb"], running_mean, running_var, /*training=*/true, 0.1);
  Tensor logits = linear(y.reshape({y.shape()[0], -1}), t["fw"], t["fb"]);
  Tensor loss = crossEntropy(logits, target, -100, /*label_smoothing=*/0.1);
  loss.backward();
  expectGolden(logits, g.outputs["logits"], "logits");
  expectGolden(loss, g.outputs["loss"], "loss");
  expectGolden(running_mean, g.outputs["running_mean"], "running_mean");
  expectGolden(running_var, g.outputs["running_var"], "running_var");
  expectGrads(t, g);
}

TEST(Golden, TransformerBlockCausalAttentionRmsNorm) {
  Golden g = loadGolden("block");
  auto t = leaves(g);
  const int64_t B = 2, T = 5, C = 8, H = 2, D = C / H;
  Tensor x = t["x"];
  Tensor h = layerNorm(x, t["ln_w"], t["ln_b"]);
  auto qkv = split(linear(h, t["qkv_w"]), {C, C, C}, -1);
  auto heads = [&](const Tensor& z) { return z.reshape({B, T, H, D}).transpose(1, 2); };
  Tensor a = scaledDotProductAttention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]),
                                       /*causal=*/true);
  a = a.transpose(1, 2).reshape({B, T, C});
  x = x + linear(a, t["proj_w"]);
  Tensor r = rmsNorm(x, t["rms_w"], 1e-6);
  x = x + linear(silu(linear(r, t["fc_w"])), t["out_w"]);
  Tensor loss = mseLoss(x, t["target"]);
  loss.backward();
  expectGolden(x, g.outputs["y"], "y");
  expectGolden(loss, g.outputs["loss"], "loss");
  expectGrads(t, g);
}

TEST(Golden, SoftmaxVarianceMaxArgmax) {
  Golden g = loadGolden("reductions");
  auto t = leaves(g);
  Tensor x = t["x"];
  Tensor s1 = softmax(x, 1);
  Tensor ls2 = logSoftmax(x, 2);
  Tensor v02 = var(x, {0, 2});
  Tensor mk = mean(x, {1}, true);
  Tensor m2 = max(x, {2});
  Tensor am1 = argmax(x, 1);
  expectGolden(s1, g.outputs["softmax1"], "softmax1");
  expectGolden(ls2, g.outputs["log_softmax2"], "log_softmax2");
  expectGolden(v02, g.outputs["var02"], "var02");
  expectGolden(mk, g.outputs["mean_keep"], "mean_keep");
  expectGolden(m2, g.outputs["max2"], "max2");
  expectGolden(am1.to(DType::f64), g.outputs["argmax1"], "argmax1");
  Tensor total =
      sum(s1 * 2.0 + exp(ls2)) + sum(v02) * double(s1.numel()) + sum(m2) * double(s1.numel());
  total.backward();
  expectGrads(t, g);
}

}  // namespace
}  // namespace lathe
