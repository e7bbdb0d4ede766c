// Activation checkpointing: the checkpoint() primitive (float64 gradchecks with parameters used
// inside, nesting, several outputs, undefined and non-differentiable inputs, dropout replay),
// bit-identical f32 gradients with and without checkpointing on the GPT and CNN presets (full
// and selective, every k), the registered method, and the activation-memory cut on a 12-layer
// GPT.
//
// Why bit-identical is expected: checkpointing here never builds a second graph; backward runs
// through the graph recorded in the forward, and only the tensors its nodes saved are
// recomputed, by the same kernels on the same inputs with the random stream rewound. The CPU
// kernels are deterministic, so every gradient is the same float sum in the same order.
#include <gtest/gtest.h>

#include "core/autograd/Autograd.h"
#include "core/methods/Method.h"
#include "core/nn/Cnn.h"
#include "core/nn/Gpt.h"
#include "core/ops/Ops.h"
#include "core/tensor/Allocator.h"
#include "core/tensor/Random.h"
#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

using json = nlohmann::json;
using test::gradcheck;
using test::uniform;

// ---- the primitive ----

TEST(CheckpointPrimitive, GradcheckWithCapturedParameterAndSeveralOutputs) {
  manualSeed(1);
  const Tensor x = uniform({3, 4}).setRequiresGrad();
  const Tensor p = uniform({4}).setRequiresGrad();
  const Tensor c = uniform({3, 4});  // a non-differentiable input
  auto fn = [](const std::vector<Tensor>& in) {
    const Tensor param = in[1];  // used by the region without being one of its inputs
    const std::vector<Tensor> outs = checkpoint(
        [param](const std::vector<Tensor>& v) {
          const Tensor h = tanh(mul(v[0], param));
          EXPECT_FALSE(v[2].defined());
          return std::vector<Tensor>{mul(h, v[1]), exp(h)};
        },
        {in[0], in[2], Tensor()});
    return add(outs[0], mul(outs[1], 2.0));
  };
  gradcheck(fn, {x, p, c}, "checkpoint(tanh(x*p)*c, exp)");
}

TEST(CheckpointPrimitive, GradcheckNested) {
  manualSeed(2);
  const Tensor x = uniform({2, 5}).setRequiresGrad();
  const Tensor w = uniform({5, 5}).setRequiresGrad();
  auto fn = [](const std::vector<Tensor>& in) {
    const Tensor wt = in[1];
    auto inner = [wt](const std::vector<Tensor>& v) {
      return std::vector<Tensor>{gelu(matmul(v[0], wt), true)};
    };
    auto outer = [wt, inner](const std::vector<Tensor>& v) {
      const Tensor h = checkpoint(inner, {sin(v[0])})[0];
      return std::vector<Tensor>{checkpoint(inner, {h})[0]};
    };
    return checkpoint(outer, {in[0]})[0];
  };
  gradcheck(fn, {x, w}, "nested checkpoint");
}

TEST(CheckpointPrimitive, GradcheckWithDropoutReplaysTheMask) {
  manualSeed(3);
  const Tensor x = uniform({4, 8}).setRequiresGrad();
  const Tensor w = uniform({8}).setRequiresGrad();
  auto fn = [](const std::vector<Tensor>& in) {
    manualSeed(77);  // the same mask for every evaluation of the finite differences
    const Tensor wt = in[1];
    return checkpoint(
        [wt](const std::vector<Tensor>& v) {
          return std::vector<Tensor>{mul(dropout(tanh(mul(v[0], wt)), 0.5, true), wt)};
        },
        {in[0]})[0];
  };
  gradcheck(fn, {x, w}, "checkpoint with dropout");
}

TEST(CheckpointPrimitive, SelectiveOutputsAreRecomputedAndGradientsExact) {
  manualSeed(4);
  Tensor x = uniform({6, 8}, -1, 1, DType::f32).setRequiresGrad();
  Tensor w = uniform({8, 8}, -1, 1, DType::f32).setRequiresGrad();
  auto run = [&](bool selective) {
    manualSeed(9);
    auto cheap = [](const Tensor& t) { return dropout(gelu(t, true), 0.3, true); };
    const Tensor h = selective ? recomputable(cheap, x) : cheap(x);
    sum(matmul(h, w)).backward();  // matmul saves h: a handle when selective
    std::vector<double> g = x.grad().toDoubles(), gw = w.grad().toDoubles();
    g.insert(g.end(), gw.begin(), gw.end());
    x.zeroGrad();
    w.zeroGrad();
    return g;
  };
  const std::vector<double> plain = run(false), sel = run(true);
  EXPECT_EQ(plain, sel);
  // The random stream ends where the uncheckpointed run leaves it.
  manualSeed(5);
  {
    sum(recomputable([](const Tensor& t) { return dropout(t, 0.5, true); }, x)).backward();
  }
  const RandomState after = rngState();
  manualSeed(5);
  (void)dropout(x, 0.5, true);
  EXPECT_EQ(after.offset, rngState().offset);
}

TEST(CheckpointPrimitive, NoGradRunsPlainlyAndMismatchedRecomputationThrows) {
  const Tensor x = uniform({3}, -1, 1, DType::f32).setRequiresGrad();
  {
    NoGradGuard g;
    EXPECT_FALSE(
        checkpoint([](const std::vector<Tensor>& v) { return std::vector<Tensor>{exp(v[0])}; },
                   {x})[0]
            .requiresGrad());
  }
  int calls = 0;
  auto changing = [&calls](const std::vector<Tensor>& v) {
    ++calls;
    const Tensor t = calls == 1 ? exp(v[0]) : exp(concat({v[0], v[0]}, 0)).slice(0, 0, 3);
    return std::vector<Tensor>{t};
  };
  const Tensor out = checkpoint(changing, {x})[0];
  try {
    sum(out).backward();
    FAIL() << "expected a recomputation mismatch error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("same work"), std::string::npos) << e.what();
  }
}

// ---- presets ----

NamedTensors gradsOf(Module& m) {
  NamedTensors out;
  for (auto& [name, p] : m.namedParameters())
    out.emplace_back(name, p.grad().defined() ? p.grad().clone() : Tensor());
  return out;
}

void expectSameGrads(const NamedTensors& a, const NamedTensors& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].second.defined()) << what << ": " << a[i].first;
    ASSERT_TRUE(b[i].second.defined()) << what << ": " << b[i].first;
    EXPECT_EQ(a[i].second.toDoubles(), b[i].second.toDoubles())
        << what << ": gradient of " << a[i].first << " differs";
  }
}

std::shared_ptr<GptModel> gpt(int64_t layers, int64_t d, int64_t T, int64_t vocab, double dropout,
                              bool rope) {
  manualSeed(11);
  json spec = {{"type", "gpt"},
               {"vocab_size", vocab},
               {"block_size", T},
               {"n_layer", layers},
               {"n_head", 4},
               {"d_model", d},
               {"dropout", dropout},
               {"positions", rope ? "rope" : "learned"},
               {"norm", rope ? "rmsnorm" : "layernorm"},
               {"gated_mlp", rope}};
  return std::dynamic_pointer_cast<GptModel>(buildModel(spec));
}

NamedTensors gptGrads(GptModel& m, const Tensor& ids, const Tensor& targets) {
  m.zeroGrad(true);
  manualSeed(21);
  const Tensor logits = m.forward(ids);
  crossEntropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1})).backward();
  return gradsOf(m);
}

class CheckpointGpt : public ::testing::TestWithParam<bool> {};  // rope + rmsnorm + gated

TEST_P(CheckpointGpt, GradientsBitIdenticalForEveryMode) {
  auto m = gpt(4, 32, 16, 37, 0.1, GetParam());
  manualSeed(5);
  const Tensor ids = randint(0, 37, {3, 16}), targets = randint(0, 37, {3, 16});
  const NamedTensors base = gptGrads(*m, ids, targets);
  for (auto [mode, k] :
       std::vector<std::pair<CheckpointMode, int64_t>>{{CheckpointMode::full, 1},
                                                       {CheckpointMode::selective, 1},
                                                       {CheckpointMode::full, 3},
                                                       {CheckpointMode::selective, 2}}) {
    EXPECT_EQ(m->setCheckpointing(mode, k), (4 + k - 1) / k);
    expectSameGrads(base, gptGrads(*m, ids, targets),
                    std::string(checkpointModeName(mode)) + " every " + std::to_string(k));
  }
  m->setCheckpointing(CheckpointMode::none, 1);
  expectSameGrads(base, gptGrads(*m, ids, targets), "back to none");
}

INSTANTIATE_TEST_SUITE_P(CheckpointVariants, CheckpointGpt, ::testing::Values(false, true));

TEST(CheckpointGpt, GenerationIsUnaffected) {
  auto m = gpt(2, 16, 12, 19, 0.0, true);
  const Tensor prompt = Tensor::fromVector(std::vector<int64_t>{1, 2, 3}, {1, 3});
  GenerateOptions g;
  g.max_new_tokens = 5;
  g.temperature = 0;
  const std::vector<int64_t> plain = m->generate(prompt, g).toInts();
  m->setCheckpointing(CheckpointMode::selective, 1);
  EXPECT_EQ(m->generate(prompt, g).toInts(), plain);
}

struct CnnCase {
  std::string name;
  json spec;
};

class CheckpointCnn : public ::testing::TestWithParam<CnnCase> {};

TEST_P(CheckpointCnn, GradientsAndRunningStatsBitIdentical) {
  const CnnCase& c = GetParam();
  auto run = [&](CheckpointMode mode, int64_t k, NamedTensors* buffers) {
    manualSeed(13);
    auto m = buildModel(c.spec);
    if (mode != CheckpointMode::none) EXPECT_GT(m->setCheckpointing(mode, k), 0);
    manualSeed(14);
    const Tensor x = randn({4, 3, 8, 8});
    const Tensor y = randint(0, 5, {4});
    crossEntropy(m->forward(x), y).backward();
    *buffers = m->namedBuffers();
    return gradsOf(*m);
  };
  NamedTensors base_buf, buf;
  const NamedTensors base = run(CheckpointMode::none, 1, &base_buf);
  for (auto [mode, k] : std::vector<std::pair<CheckpointMode, int64_t>>{
           {CheckpointMode::full, 1}, {CheckpointMode::selective, 1}, {CheckpointMode::full, 2}}) {
    const std::string what =
        c.name + " " + checkpointModeName(mode) + " every " + std::to_string(k);
    expectSameGrads(base, run(mode, k, &buf), what);
    ASSERT_EQ(buf.size(), base_buf.size());
    for (size_t i = 0; i < buf.size(); ++i)  // BN running stats updated once, not twice
      EXPECT_EQ(buf[i].second.toDoubles(), base_buf[i].second.toDoubles())
          << what << ": buffer " << buf[i].first;
  }
}

INSTANTIATE_TEST_SUITE_P(CheckpointPresets, CheckpointCnn,
                         ::testing::Values(CnnCase{"lenet_bn_dropout",
                                                   {{"type", "cnn"},
                                                    {"variant", "lenet"},
                                                    {"in_channels", 3},
                                                    {"image_size", 8},
                                                    {"classes", 5},
                                                    {"channels", {4, 6}},
                                                    {"batch_norm", true},
                                                    {"hidden", {12}},
                                                    {"dropout", 0.2}}},
                                           CnnCase{"resnet",
                                                   {{"type", "cnn"},
                                                    {"variant", "resnet"},
                                                    {"in_channels", 3},
                                                    {"image_size", 8},
                                                    {"classes", 5},
                                                    {"widths", {4, 8}},
                                                    {"blocks", {2, 1}}}}),
                         [](const auto& info) { return info.param.name; });

// ---- the method ----

TEST(CheckpointMethod, RegisteredWithSchemaAndConflictFree) {
  auto& reg = methods::MethodRegistry::instance();
  ASSERT_TRUE(reg.contains("activation_checkpointing"));
  const methods::MethodInfo& info = reg.info("activation_checkpointing");
  EXPECT_EQ(info.category, "memory");
  ASSERT_EQ(info.params.size(), 2u);
  EXPECT_EQ(info.params[0].name, "mode");
  EXPECT_EQ(info.params[0].choices, (std::vector<std::string>{"full", "selective"}));
  EXPECT_EQ(info.params[1].name, "every_k");
  EXPECT_EQ(info.params[1].type, methods::ParamType::integer);
  EXPECT_EQ(info.params[1].min, 1);
  const json filled = reg.validate({{"name", "activation_checkpointing"}}, "methods[0]");
  EXPECT_EQ(filled["mode"], "full");
  EXPECT_EQ(filled["every_k"], 1);
  EXPECT_THROW(reg.validate({{"name", "activation_checkpointing"}, {"every_k", 0}}, "methods[0]"),
               Error);
  EXPECT_THROW(reg.validate({{"name", "activation_checkpointing"}, {"mode", "none"}}, "m"), Error);
  for (const methods::MethodInfo* other : reg.all())
    if (other->name != info.name)
      EXPECT_NO_THROW(reg.checkConflicts({info.name, other->name}, "methods")) << other->name;
  bool listed = false;
  const json all = reg.toJson();
  for (const auto& m : all["methods"])
    if (m["name"] == "activation_checkpointing") listed = m["params"].size() == 2;
  EXPECT_TRUE(listed);
}

TEST(CheckpointMethod, AppliesToGptAndReportsRejectsMlp) {
  auto& reg = methods::MethodRegistry::instance();
  auto method = reg.create("activation_checkpointing");
  method->configure(reg.validate(
      {{"name", "activation_checkpointing"}, {"mode", "selective"}, {"every_k", 2}}, "m"));
  auto m = gpt(5, 16, 8, 11, 0.0, false);
  method->apply(*m);
  const methods::MethodReport r = method->report();
  EXPECT_EQ(r.params_before, r.params_after);
  EXPECT_EQ(r.params_after, m->numParameters());
  EXPECT_NE(r.note.find("selective"), std::string::npos) << r.note;
  EXPECT_NE(r.note.find("3 block"), std::string::npos) << r.note;  // blocks 0, 2, 4
  Module& blocks = *m->find("blocks");
  for (size_t i = 0; i < 5; ++i)
    EXPECT_EQ(dynamic_cast<Block&>(blocks.child(i)).checkpointMode(),
              i % 2 == 0 ? CheckpointMode::selective : CheckpointMode::none);
  auto mlp = buildModel({{"type", "mlp"}, {"input_dim", 4}, {"classes", 2}});
  try {
    method->apply(*mlp);
    FAIL() << "expected an error for a model without blocks";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MlpModel"), std::string::npos) << e.what();
  }
}

// ---- memory ----

// Peak activation bytes of one forward + backward above what was live before it.
int64_t activationPeak(GptModel& m, const Tensor& ids, const Tensor& targets) {
  m.zeroGrad(true);
  Allocator& a = cpuAllocator();
  const int tag = static_cast<int>(MemoryTag::activations);
  const int64_t before = a.stats().tag_current[static_cast<size_t>(tag)];
  a.resetPeaks();
  {
    const Tensor logits = m.forward(ids);
    crossEntropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1})).backward();
  }
  return a.stats().tag_peak[static_cast<size_t>(tag)] - before;
}

TEST(CheckpointMemory, FullCheckpointingCutsActivationPeakOfTwelveLayerGptThreeTimes) {
  auto m = gpt(12, 128, 128, 256, 0.0, false);
  manualSeed(6);
  const Tensor ids = randint(0, 256, {8, 128}), targets = randint(0, 256, {8, 128});
  const int64_t none = activationPeak(*m, ids, targets);
  m->setCheckpointing(CheckpointMode::selective, 1);
  const int64_t selective = activationPeak(*m, ids, targets);
  m->setCheckpointing(CheckpointMode::full, 1);
  const int64_t full = activationPeak(*m, ids, targets);
  std::cout << "activation peak: none " << formatBytes(none) << ", selective "
            << formatBytes(selective) << ", full " << formatBytes(full) << "\n";
  EXPECT_GE(static_cast<double>(none), 3.0 * static_cast<double>(full));
  EXPECT_LT(selective, none);
  EXPECT_GT(selective, full);
}

}  // namespace
}  // namespace lathe
