// GPT forward and generation: cached incremental logits equal full recomputation, KV-cache
// greedy decoding equals recomputation greedy decoding (learned positions and RoPE + GQA),
// seeded sampling is reproducible and top_k = 1 is greedy, and misuse gives clear errors.
#include <gtest/gtest.h>

#include "core/nn/Gpt.h"
#include "core/ops/Ops.h"
#include "core/tensor/Random.h"
#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

using json = nlohmann::json;

std::shared_ptr<GptModel> tinyGpt(bool rope, int64_t kv_heads, DType dtype = DType::f32) {
  json spec = {{"type", "gpt"},
               {"vocab_size", 29},
               {"block_size", 24},
               {"n_layer", 2},
               {"n_head", 4},
               {"n_kv_head", kv_heads},
               {"d_model", 16},
               {"positions", rope ? "rope" : "learned"},
               {"norm", rope ? "rmsnorm" : "layernorm"},
               {"init_std", 0.2}};
  ModuleOptions opt;
  opt.dtype = dtype;
  auto m = std::dynamic_pointer_cast<GptModel>(buildModel(spec, opt));
  m->eval();
  return m;
}

Tensor ids(const std::vector<int64_t>& v, int64_t B) {
  return Tensor::fromVector(v, {B, static_cast<int64_t>(v.size()) / B});
}

class NnGptVariants : public ::testing::TestWithParam<std::tuple<bool, int64_t>> {};

TEST_P(NnGptVariants, CachedLogitsEqualFullRecomputation) {
  manualSeed(31);
  auto [rope, kv] = GetParam();
  auto model = tinyGpt(rope, kv, DType::f64);
  const Tensor seq = ids({3, 14, 7, 7, 22, 1, 9, 28, 0, 5, 5, 17, 2, 11}, 2);  // [2, 7]
  NoGradGuard ng;
  const Tensor full = model->forward(seq);  // [2, 7, 29]
  KVCache cache = model->newCache(2, 10);
  // Prefill 3 positions, then 1, then 3.
  Tensor a = model->forward(seq.slice(1, 0, 3), &cache);
  Tensor b = model->forward(seq.slice(1, 3, 4), &cache);
  Tensor c = model->forward(seq.slice(1, 4, 7), &cache);
  EXPECT_EQ(cache.length, 7);
  test::expectClose(concat({a, b, c}, 1), full, 1e-10, 1e-10, "cached logits");
  Tensor last = model->forward(seq.slice(1, 0, 7), nullptr, true);
  test::expectClose(last, full.slice(1, 6, 7), 1e-12, 1e-12, "last-only logits");
}

TEST_P(NnGptVariants, KvCacheGreedyDecodingEqualsRecomputation) {
  manualSeed(32);
  auto [rope, kv] = GetParam();
  auto model = tinyGpt(rope, kv);
  const Tensor prompt = ids({1, 2, 3, 4, 20, 21, 22, 23}, 2);
  GenerateOptions opt;
  opt.max_new_tokens = 12;
  opt.temperature = 0;
  const Tensor cached = model->generate(prompt, opt);
  opt.use_cache = false;
  const Tensor recomputed = model->generate(prompt, opt);
  EXPECT_EQ(cached.shape(), (Shape{2, 16}));
  EXPECT_EQ(cached.toInts(), recomputed.toInts());
  EXPECT_EQ(cached.slice(1, 0, 4).toInts(), prompt.toInts());
  // The continuation is the argmax of the full forward at every step.
  NoGradGuard ng;
  const Tensor logits = model->forward(cached.slice(1, 0, 15));
  const Tensor greedy = argmax(logits, -1).slice(1, 3, 15);
  EXPECT_EQ(greedy.toInts(), cached.slice(1, 4, 16).contiguous().toInts());
}

INSTANTIATE_TEST_SUITE_P(LearnedMhaAndRopeGqa, NnGptVariants,
                         ::testing::Values(std::make_tuple(false, int64_t{4}),
                                           std::make_tuple(true, int64_t{2}),
                                           std::make_tuple(true, int64_t{1})));

TEST(NnGpt, SeededSamplingIsReproducibleAndTopOneIsGreedy) {
  manualSeed(33);
  auto model = tinyGpt(false, 4);
  const Tensor prompt = ids({5, 6, 7}, 1);
  GenerateOptions opt;
  opt.max_new_tokens = 10;
  opt.temperature = 1.5;
  opt.top_k = 5;
  opt.seed = 77;
  const RandomState before = rngState();
  const auto a = model->generate(prompt, opt).toInts();
  EXPECT_EQ(rngState().offset, before.offset);  // the global stream is restored
  EXPECT_EQ(model->generate(prompt, opt).toInts(), a);
  opt.use_cache = false;
  EXPECT_EQ(model->generate(prompt, opt).toInts(), a);  // same draws, same tokens
  opt.seed = 78;
  opt.temperature = 50;
  opt.top_k = 0;
  EXPECT_NE(model->generate(prompt, opt).toInts(), a);

  GenerateOptions top1;
  top1.max_new_tokens = 8;
  top1.top_k = 1;
  top1.temperature = 0.7;
  GenerateOptions greedy = top1;
  greedy.temperature = 0;
  EXPECT_EQ(model->generate(prompt, top1).toInts(), model->generate(prompt, greedy).toInts());
  // Training mode survives generation.
  model->train();
  model->generate(prompt, greedy);
  EXPECT_TRUE(model->isTraining());
}

TEST(NnGpt, ContextLimitsAndMisuse) {
  auto model = tinyGpt(false, 4);
  const Tensor prompt = ids(std::vector<int64_t>(20, 3), 1);
  GenerateOptions opt;
  opt.max_new_tokens = 10;
  opt.temperature = 0;
  try {
    model->generate(prompt, opt);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceed block_size = 24"), std::string::npos) << e.what();
  }
  opt.use_cache = false;  // slides the context window instead
  EXPECT_EQ(model->generate(prompt, opt).shape(), (Shape{1, 30}));
  EXPECT_THROW(model->forward(ids(std::vector<int64_t>(25, 1), 1)), Error);
  KVCache cache = model->newCache(1, 4);
  EXPECT_THROW(model->forward(ids({1, 2}, 1), &cache), Error);  // grad mode is on
  NoGradGuard ng;
  EXPECT_THROW(model->forward(ids({1, 2, 3, 4, 5}, 1), &cache), Error);  // over capacity
  EXPECT_THROW(model->forward(Tensor::zeros({1, 3})), Error);            // float ids
}

}  // namespace
}  // namespace lathe
