// Presets: analytic parameter counts against hand-computed published figures (GPT-2 small and
// medium, ResNet-20, the MNIST CNN) and against the built modules for every family and
// option; FLOPs formulas; spec normalisation; bad specs give errors naming the field.
#include <gtest/gtest.h>

#include "core/nn/Cnn.h"
#include "core/nn/Gpt.h"
#include "core/ops/Ops.h"
#include "core/tensor/Random.h"

namespace lathe {
namespace {

using json = nlohmann::json;

json gpt(int64_t vocab, int64_t block, int64_t layers, int64_t heads, int64_t d) {
  return {{"type", "gpt"},     {"vocab_size", vocab}, {"block_size", block},
          {"n_layer", layers}, {"n_head", heads},     {"d_model", d}};
}

void expectBuiltMatchesAnalytic(const json& spec) {
  const ModelInfo a = analyzeModelSpec(spec);
  auto model = buildModel(spec);
  EXPECT_EQ(model->numParameters(), a.params) << spec.dump();
  EXPECT_EQ(model->numParameters(true), a.trainable_params) << spec.dump();
  EXPECT_EQ(model->info().params, a.params);
  EXPECT_EQ(model->info().train_flops, a.train_flops);
}

TEST(NnPresets, Gpt2SmallAndMediumCountsWithoutAllocating) {
  const ModelInfo small = analyzeModelSpec(gpt(50257, 1024, 12, 12, 768));
  EXPECT_EQ(small.params, 124439808);
  EXPECT_EQ(small.flop_params, 124439808 - 1024 * 768);
  EXPECT_EQ(small.train_flops, 855166464.0);    // 6N + 12 L C T
  EXPECT_EQ(small.forward_flops, 285055488.0);  // 2N + 4 L C T
  EXPECT_EQ(small.flops_per, "token");
  EXPECT_EQ(analyzeModelSpec(gpt(50257, 1024, 24, 16, 1024)).params, 354823168);
  json untied = gpt(50257, 1024, 12, 12, 768);
  untied["tie_embeddings"] = false;
  const ModelInfo u = analyzeModelSpec(untied);
  EXPECT_EQ(u.params, 124439808 + 50257 * 768);
  EXPECT_EQ(u.flop_params, small.flop_params);  // the lookup table is not a matmul
}

TEST(NnPresets, GptVariantsBuiltCountEqualsAnalytic) {
  expectBuiltMatchesAnalytic(gpt(50, 16, 2, 4, 16));
  json v = gpt(37, 12, 3, 4, 16);
  v["n_kv_head"] = 2;
  v["positions"] = "rope";
  v["norm"] = "rmsnorm";
  v["gated_mlp"] = true;
  v["mlp_hidden"] = 40;
  v["bias"] = false;
  v["tie_embeddings"] = false;
  v["activation"] = "silu";
  expectBuiltMatchesAnalytic(v);
  json w = gpt(20, 8, 1, 2, 8);
  w["mlp_ratio"] = 2.5;
  w["n_kv_head"] = 1;
  expectBuiltMatchesAnalytic(w);
  // Hand count of the first config: wte 800, wpe 256, per block 2*32 + (16*48+48) +
  // (256+16) + (16*64+64 + 64*16+16) = 64 + 816 + 272 + 2128 = 3280, ln_f 32.
  EXPECT_EQ(analyzeModelSpec(gpt(50, 16, 2, 4, 16)).params, 800 + 256 + 2 * 3280 + 32);
}

TEST(NnPresets, CnnAndMlpCounts) {
  const json lenet = {{"type", "lenet"}, {"in_channels", 1}, {"image_size", 28}, {"classes", 10}};
  const ModelInfo l = analyzeModelSpec(lenet);
  EXPECT_EQ(l.params, 421642);  // 320 + 18496 + 401536 + 1290
  EXPECT_EQ(l.forward_flops, 2.0 * (225792 + 3612672 + 401408 + 1280));
  EXPECT_EQ(l.train_flops, 3 * l.forward_flops);
  EXPECT_EQ(l.flops_per, "sample");
  expectBuiltMatchesAnalytic(lenet);
  json lbn = lenet;
  lbn["batch_norm"] = true;
  lbn["channels"] = {8, 8, 16};
  lbn["pool"] = "avg";
  lbn["hidden"] = json::array();
  expectBuiltMatchesAnalytic(lbn);

  // ResNet-20 (3 blocks per stage) with projection shortcuts: 269,722 with the parameter-free
  // option-A shortcut + 576 + 2176 for the two 1x1 projections.
  const json r20 = {{"type", "resnet"},
                    {"in_channels", 3},
                    {"image_size", 32},
                    {"classes", 10},
                    {"blocks", {3, 3, 3}}};
  EXPECT_EQ(analyzeModelSpec(r20).params, 272474);
  expectBuiltMatchesAnalytic(r20);
  expectBuiltMatchesAnalytic({{"type", "cnn"},
                              {"variant", "resnet"},
                              {"in_channels", 1},
                              {"image_size", 28},
                              {"classes", 10},
                              {"widths", {8, 16}},
                              {"blocks", {1, 2}}});

  const json mlp = {{"type", "mlp"}, {"input_dim", 784}, {"hidden", {256, 128}}, {"classes", 10}};
  EXPECT_EQ(analyzeModelSpec(mlp).params, 235146);
  EXPECT_EQ(analyzeModelSpec(mlp).forward_flops, 2.0 * (784 * 256 + 256 * 128 + 128 * 10));
  expectBuiltMatchesAnalytic(mlp);
}

TEST(NnPresets, ForwardShapes) {
  manualSeed(9);
  auto lenet = buildModel({{"type", "lenet"},
                           {"in_channels", 1},
                           {"image_size", 12},
                           {"classes", 3},
                           {"channels", {4, 6}},
                           {"hidden", {5}},
                           {"dropout", 0.5}});
  EXPECT_EQ(lenet->forward(randn({2, 1, 12, 12})).shape(), (Shape{2, 3}));
  auto resnet = buildModel({{"type", "resnet"},
                            {"in_channels", 3},
                            {"image_size", 8},
                            {"classes", 4},
                            {"widths", {4, 8}},
                            {"blocks", {1, 1}}});
  EXPECT_EQ(resnet->forward(randn({2, 3, 8, 8})).shape(), (Shape{2, 4}));
  auto mlp = buildModel({{"type", "mlp"}, {"input_dim", 16}, {"classes", 3}});
  EXPECT_EQ(mlp->forward(randn({5, 1, 4, 4})).shape(), (Shape{5, 3}));
  EXPECT_THROW(mlp->forward(randn({5, 15})), Error);
  auto g = buildModel(gpt(13, 8, 1, 2, 8));
  EXPECT_EQ(g->forward(Tensor::fromVector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {2, 3})).shape(),
            (Shape{2, 3, 13}));
}

TEST(NnPresets, GptInitialisationFollowsGpt2) {
  manualSeed(10);
  json spec = gpt(64, 16, 4, 4, 64);
  auto model = buildModel(spec);
  auto stddev = [](const Tensor& t) {
    const auto v = t.toDoubles();
    double s = 0, s2 = 0;
    for (double x : v) s += x, s2 += x * x;
    const double m = s / static_cast<double>(v.size());
    return std::sqrt(s2 / static_cast<double>(v.size()) - m * m);
  };
  EXPECT_NEAR(stddev(model->parameter("wte.weight")), 0.02, 0.002);
  EXPECT_NEAR(stddev(model->parameter("blocks.0.attn.qkv.weight")), 0.02, 0.002);
  EXPECT_NEAR(stddev(model->parameter("blocks.0.mlp.fc2.weight")), 0.02 / std::sqrt(8.0), 0.001);
  EXPECT_EQ(model->parameter("blocks.1.attn.qkv.bias").toDoubles(), std::vector<double>(192, 0));
  EXPECT_EQ(model->parameter("ln_f.weight").toDoubles(), std::vector<double>(64, 1));
  // Same seed, same model.
  manualSeed(10);
  auto again = buildModel(spec);
  EXPECT_EQ(again->parameter("blocks.3.mlp.fc1.weight").toDoubles(),
            model->parameter("blocks.3.mlp.fc1.weight").toDoubles());
}

TEST(NnPresets, NormalisedSpecIsCompleteAndStable) {
  const json n = normalizeModelSpec(
      {{"type", "lenet"}, {"in_channels", 1}, {"image_size", 28}, {"classes", 10}});
  EXPECT_EQ(n["type"], "cnn");
  EXPECT_EQ(n["variant"], "lenet");
  EXPECT_EQ(n["channels"], json({32, 64}));
  EXPECT_EQ(normalizeModelSpec(n), n);
  json g = gpt(100, 32, 2, 4, 32);
  g["mlp_ratio"] = 3;
  const json gn = normalizeModelSpec(g);
  EXPECT_EQ(gn["mlp_hidden"], 96);
  EXPECT_EQ(gn["n_kv_head"], 4);
  EXPECT_FALSE(gn.contains("mlp_ratio"));
  EXPECT_EQ(normalizeModelSpec(gn), gn);
  EXPECT_EQ(buildModel(g)->spec(), gn);
}

void expectSpecError(const json& spec, const std::string& message) {
  try {
    analyzeModelSpec(spec);
    ADD_FAILURE() << "no error for " << spec.dump();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos)
        << "got: " << e.what() << "\nexpected to contain: " << message;
  }
}

TEST(NnPresets, BadSpecsNameTheField) {
  expectSpecError(gpt(50257, 1024, 12, 5, 768),
                  "model.n_head: expected a divisor of d_model (768), got 5");
  json g = gpt(50257, 1024, 12, 12, 768);
  json bad = g;
  bad["n_kv_head"] = 5;
  expectSpecError(bad, "model.n_kv_head: expected a divisor of n_head (12), got 5");
  bad = g;
  bad["positions"] = "alibi";
  expectSpecError(bad, "model.positions: expected one of learned, rope; got \"alibi\"");
  bad = g;
  bad["n_heads"] = 12;
  expectSpecError(bad, "model: unknown field(s) n_heads");
  bad = g;
  bad.erase("vocab_size");
  expectSpecError(bad, "model.vocab_size: required integer is missing");
  bad = g;
  bad["n_layer"] = "twelve";
  expectSpecError(bad, "model.n_layer: expected an integer, got \"twelve\"");
  bad = g;
  bad["mlp_ratio"] = 2.7;
  expectSpecError(bad, "model.mlp_ratio: mlp_ratio x d_model (768) = 2073.6");
  bad = g;
  bad["activation"] = "softplus";
  expectSpecError(bad, "model.activation: expected one of relu, gelu");
  bad = g;
  bad["dropout"] = 1.5;
  expectSpecError(bad, "model.dropout: expected a number in [0.0, 0.999], got 1.5");
  expectSpecError({{"type", "transformer"}}, "model.type: expected one of mlp, cnn, lenet");
  expectSpecError({{"type", "mlp"}, {"input_dim", 4}, {"hidden", {8, -3}}, {"classes", 2}},
                  "model.hidden: element 1: expected an integer >= 1, got -3");
  expectSpecError({{"type", "lenet"},
                   {"in_channels", 1},
                   {"image_size", 4},
                   {"classes", 2},
                   {"channels", {8, 8, 8}}},
                  "model.channels: 3 conv stages each halve the image; image_size 4 is below 1 "
                  "pixel after stage 3");
  expectSpecError({{"type", "resnet"},
                   {"in_channels", 3},
                   {"image_size", 32},
                   {"classes", 10},
                   {"blocks", {2, 2}}},
                  "model.blocks: expected one block count per width (3), got 2");
  expectSpecError(
      {{"type", "resnet"}, {"in_channels", 3}, {"image_size", 32}, {"classes", 10}, {"kernel", 3}},
      "model: unknown field(s) kernel");
  expectSpecError(json::array(), "model: expected a JSON object");
}

}  // namespace
}  // namespace lathe
