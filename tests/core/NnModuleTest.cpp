// Module: registration and dotted names, state dict round trip and strict-load errors, tied
// parameters, replaceChild, to(dtype), memory tags, train/eval, zeroGrad and parameter counts.
#include <gtest/gtest.h>

#include "core/nn/Layers.h"
#include "core/nn/Transformer.h"
#include "core/ops/Ops.h"
#include "core/tensor/Random.h"

namespace lathe {
namespace {

int64_t tagBytes(MemoryTag tag) {
  return cpuAllocator().stats().tag_current[static_cast<int>(tag)];
}

// A two-layer net with a BatchNorm buffer and a tied pair of parameters.
class TinyNet : public Module {
 public:
  TinyNet() : Module("TinyNet") {
    auto body = std::make_shared<Sequential>();
    body->add(std::make_shared<Linear>(4, 8));
    body->add(std::make_shared<Activation>(ActivationKind::relu));
    body->add("out", std::make_shared<Linear>(8, 3));
    body_ = registerModule("body", body);
    norm_ = registerModule("norm", std::make_shared<BatchNorm2d>(3));
  }
  Tensor forward(const Tensor& x) override { return child(norm_).forward(child(body_).forward(x)); }

 private:
  size_t body_, norm_;
};

TEST(NnModule, DottedNamesInRegistrationOrder) {
  TinyNet net;
  std::vector<std::string> names;
  for (auto& [n, p] : net.namedParameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"body.0.weight", "body.0.bias", "body.out.weight",
                                             "body.out.bias", "norm.weight", "norm.bias"}));
  std::vector<std::string> state;
  for (auto& [n, t] : net.stateDict()) state.push_back(n);
  EXPECT_EQ(state.size(), 8u);
  EXPECT_EQ(state[6], "norm.running_mean");
  EXPECT_EQ(state[7], "norm.running_var");
  EXPECT_EQ(net.numParameters(), 4 * 8 + 8 + 8 * 3 + 3 + 3 + 3);
  EXPECT_EQ(net.parameter("body.out.weight").shape(), (Shape{3, 8}));
  EXPECT_EQ(net.buffer("norm.running_var").toDoubles(), (std::vector<double>{1, 1, 1}));
  for (auto& p : net.parameters()) {
    EXPECT_TRUE(p.requiresGrad());
    EXPECT_TRUE(p.isLeaf());
    EXPECT_EQ(p.storage()->tag(), MemoryTag::parameters);
  }
}

TEST(NnModule, StateDictRoundTripIntoFreshModule) {
  manualSeed(1);
  TinyNet a;
  manualSeed(2);
  TinyNet b;
  EXPECT_NE(a.parameter("body.0.weight").toDoubles(), b.parameter("body.0.weight").toDoubles());
  {
    NoGradGuard g;
    a.buffer("norm.running_mean").fill_(0.25);
  }
  b.loadStateDict(a.stateDict());
  auto sa = a.stateDict(), sb = b.stateDict();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_EQ(sa[i].second.toDoubles(), sb[i].second.toDoubles()) << sa[i].first;
    EXPECT_FALSE(sa[i].second.sameStorage(sb[i].second));
  }
  // The loaded module computes the same function.
  a.eval();
  b.eval();
  Tensor x = randn({5, 4});
  EXPECT_EQ(a.forward(x).toDoubles(), b.forward(x).toDoubles());
}

TEST(NnModule, StrictLoadListsEveryProblemAndChangesNothing) {
  TinyNet net;
  const std::vector<double> before = net.parameter("body.0.weight").toDoubles();
  NamedTensors state = net.stateDict();
  NamedTensors bad;
  for (auto& [n, t] : state) {
    if (n == "body.out.bias") continue;  // missing
    if (n == "norm.weight")
      bad.emplace_back(n, Tensor::zeros({4}));  // wrong shape
    else
      bad.emplace_back(n, Tensor::full(t.shape(), 7.0, t.dtype()));
  }
  bad.emplace_back("body.extra", Tensor::zeros({1}));  // unexpected
  try {
    net.loadStateDict(bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("1 missing keys: body.out.bias"), std::string::npos) << m;
    EXPECT_NE(m.find("1 unexpected keys: body.extra"), std::string::npos) << m;
    EXPECT_NE(m.find("norm.weight: model [3], given [4]"), std::string::npos) << m;
  }
  EXPECT_EQ(net.parameter("body.0.weight").toDoubles(), before);
  // Non-strict: missing/unexpected are tolerated, a shape mismatch is not.
  EXPECT_THROW(net.loadStateDict(bad, false), Error);
  NamedTensors partial{{"body.0.bias", Tensor::full({8}, 3.0)}, {"nope", Tensor::zeros({2})}};
  net.loadStateDict(partial, false);
  EXPECT_EQ(net.parameter("body.0.bias").toDoubles(), std::vector<double>(8, 3.0));
}

TEST(NnModule, LoadConvertsDTypes) {
  Linear l(3, 2);
  NamedTensors s{{"weight", Tensor::full({2, 3}, 0.5, DType::f64)},
                 {"bias", Tensor::full({2}, -1.0, DType::bf16)}};
  l.loadStateDict(s);
  EXPECT_EQ(l.weight().dtype(), DType::f32);
  EXPECT_EQ(l.weight().toDoubles(), std::vector<double>(6, 0.5));
  EXPECT_EQ(l.bias().toDoubles(), std::vector<double>(2, -1.0));
}

// Two children sharing one weight tensor: counted once, listed once, loadable by either name.
class TiedNet : public Module {
 public:
  TiedNet() : Module("TiedNet") {
    auto a = std::make_shared<Linear>(3, 3, false);
    registerModule("a", a);
    auto b = std::make_shared<Module>("Holder");
    b->registerParameter("w", a->weight());
    registerModule("b", b);
  }
};

TEST(NnModule, TiedParametersAppearOnceAndLoadThroughAnyAlias) {
  TiedNet net;
  EXPECT_EQ(net.numParameters(), 9);
  ASSERT_EQ(net.stateDict().size(), 1u);
  EXPECT_EQ(net.stateDict()[0].first, "a.weight");
  net.loadStateDict({{"b.w", Tensor::full({3, 3}, 2.0)}});
  EXPECT_EQ(net.parameter("a.weight").toDoubles(), std::vector<double>(9, 2.0));
  EXPECT_THROW(net.loadStateDict({}), Error);  // the tied tensor is missing under every name
}

// A stand-in for LoRA: wraps a Linear and adds a scaled low-rank path.
class AddOne : public Module {
 public:
  explicit AddOne(std::shared_ptr<Module> inner) : Module("AddOne") {
    inner_ = registerModule("inner", std::move(inner));
    registerParameter("delta", Tensor::ones({1}));
  }
  Tensor forward(const Tensor& x) override { return add(child(inner_).forward(x), 1.0); }

 private:
  size_t inner_;
};

TEST(NnModule, ReplaceChildByDottedNameTakesEffectInForward) {
  manualSeed(3);
  BlockConfig cfg;
  cfg.attn = {8, 2, 1, 16, true, false, 10000.0, 0.0};
  cfg.mlp_hidden = 16;
  Block block(cfg);
  block.eval();
  Tensor x = randn({1, 4, 8});
  const std::vector<double> y0 = block.forward(x).toDoubles();
  const int64_t n0 = block.numParameters();

  std::shared_ptr<Module> fc2 = block.find("mlp.fc2");
  EXPECT_EQ(fc2->typeName(), "Linear");
  block.replaceChild("mlp.fc2", std::make_shared<AddOne>(fc2));
  EXPECT_EQ(block.find("mlp.fc2")->typeName(), "AddOne");
  EXPECT_EQ(block.numParameters(), n0 + 1);
  EXPECT_TRUE(block.parameter("mlp.fc2.inner.weight").defined());
  const std::vector<double> y1 = block.forward(x).toDoubles();
  ASSERT_EQ(y0.size(), y1.size());
  for (size_t i = 0; i < y0.size(); ++i) EXPECT_NEAR(y1[i], y0[i] + 1.0, 1e-5);

  try {
    block.replaceChild("mlp.fc3", std::make_shared<Dropout>(0.0));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no child 'fc3' (children: fc1, fc2)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(block.find("attn.qkv.nothing"), Error);
}

TEST(NnModule, ToDTypeKeepsHandlesLeavesAndGradients) {
  Linear l(4, 2);
  Tensor w = l.weight();  // a handle held elsewhere, as an optimizer would
  const std::vector<double> values = w.toDoubles();
  sum(l.forward(Tensor::ones({1, 4}))).backward();
  ASSERT_TRUE(w.grad().defined());
  l.to(DType::f64);
  EXPECT_EQ(w.dtype(), DType::f64);  // same handle, new memory
  EXPECT_EQ(l.weight().dtype(), DType::f64);
  EXPECT_TRUE(w.isLeaf() && w.requiresGrad());
  EXPECT_EQ(w.grad().dtype(), DType::f64);
  EXPECT_EQ(w.toDoubles(), values);
  EXPECT_EQ(w.storage()->tag(), MemoryTag::parameters);
  EXPECT_EQ(w.grad().storage()->tag(), MemoryTag::gradients);
  // Gradients keep flowing into the moved parameter.
  l.zeroGrad(true);
  sum(l.forward(Tensor::ones({1, 4}, DType::f64))).backward();
  EXPECT_EQ(w.grad().toDoubles(), std::vector<double>(8, 1.0));
}

TEST(NnModule, ParametersAreCountedAsParameterMemory) {
  const int64_t p0 = tagBytes(MemoryTag::parameters);
  const int64_t a0 = tagBytes(MemoryTag::activations);
  {
    Linear l(100, 50);
    EXPECT_EQ(tagBytes(MemoryTag::parameters) - p0, (100 * 50 + 50) * 4);
    EXPECT_EQ(tagBytes(MemoryTag::activations), a0);
  }
  EXPECT_EQ(tagBytes(MemoryTag::parameters), p0);
}

TEST(NnModule, TrainEvalZeroGradFreeze) {
  TinyNet net;
  net.eval();
  for (auto& [n, m] : net.namedModules()) EXPECT_FALSE(m->isTraining()) << n;
  net.train();
  EXPECT_TRUE(net.find("body.out")->isTraining());

  Tensor x = randn({6, 4});
  sum(net.forward(x)).backward();
  Tensor g = net.parameter("body.0.weight").grad();
  ASSERT_TRUE(g.defined());
  net.zeroGrad();
  EXPECT_TRUE(net.parameter("body.0.weight").grad().sameStorage(g));  // zeroed in place
  EXPECT_EQ(g.toDoubles(), std::vector<double>(32, 0.0));
  net.zeroGrad(true);
  EXPECT_FALSE(net.parameter("body.0.weight").grad().defined());

  net.find("body")->setRequiresGrad(false);
  EXPECT_EQ(net.numParameters(true), 6);  // only the BatchNorm affine parameters
  EXPECT_EQ(net.numParameters(), 4 * 8 + 8 + 8 * 3 + 3 + 6);
  EXPECT_NE(net.summary().find("out: Linear(in=8, out=3, bias)"), std::string::npos)
      << net.summary();
}

TEST(NnModule, RegistrationErrorsNameTheModule) {
  Module m("Custom");
  m.registerParameter("w", Tensor::zeros({2}));
  EXPECT_THROW(m.registerParameter("w", Tensor::zeros({2})), Error);
  EXPECT_THROW(m.registerBuffer("a.b", Tensor::zeros({2})), Error);
  try {
    m.forward(Tensor::zeros({1}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Custom"), std::string::npos);
  }
}

}  // namespace
}  // namespace lathe
