// GPT preset: spec parsing and analytic counts, the module, cached/uncached forward and
// sampling. Sampling happens on the host in f64 on the last position's logits only.
#include "core/nn/Gpt.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/autograd/Autograd.h"
#include "core/nn/SpecReader.h"
#include "core/tensor/Random.h"

namespace lathe {

GptConfig GptConfig::parse(const nlohmann::json& spec, const std::string& path) {
  SpecReader r(spec, path);
  r.string("type", std::nullopt, {"gpt"});
  GptConfig c;
  c.vocab_size = r.integer("vocab_size", std::nullopt, 1);
  c.block_size = r.integer("block_size", std::nullopt, 1);
  c.n_layer = r.integer("n_layer", std::nullopt, 1);
  c.d_model = r.integer("d_model", std::nullopt, 1);
  c.n_head = r.integer("n_head", std::nullopt, 1);
  if (c.d_model % c.n_head != 0)
    r.fail("n_head", "expected a divisor of d_model (" + std::to_string(c.d_model) + "), got " +
                         std::to_string(c.n_head));
  c.n_kv_head = r.integer("n_kv_head", c.n_head, 1);
  if (c.n_head % c.n_kv_head != 0)
    r.fail("n_kv_head", "expected a divisor of n_head (" + std::to_string(c.n_head) + "), got " +
                            std::to_string(c.n_kv_head));
  if (r.has("mlp_hidden")) {
    if (r.has("mlp_ratio")) r.fail("mlp_hidden", "give mlp_ratio or mlp_hidden, not both");
    c.mlp_hidden = r.integer("mlp_hidden", std::nullopt, 1);
  } else {
    const double ratio = r.number("mlp_ratio", 4.0, 1e-6, 1e6);
    const double h = ratio * static_cast<double>(c.d_model);
    if (std::abs(h - std::round(h)) > 1e-6 || std::round(h) < 1)
      r.fail("mlp_ratio", "mlp_ratio x d_model (" + std::to_string(c.d_model) +
                              ") = " + std::to_string(h) +
                              " is not a positive whole number; give " + "mlp_hidden instead");
    c.mlp_hidden = static_cast<int64_t>(std::llround(h));
  }
  c.activation = r.string("activation", "gelu_tanh");
  parseActivation(c.activation, r.field("activation"));
  if (c.activation == "gelu_new") c.activation = "gelu_tanh";
  c.gated_mlp = r.boolean("gated_mlp", false);
  c.norm = r.string("norm", "layernorm", {"layernorm", "rmsnorm"});
  c.norm_eps = r.number("norm_eps", 1e-5, 0.0, 1.0);
  c.positions = r.string("positions", "learned", {"learned", "rope"});
  c.rope_theta = r.number("rope_theta", 10000.0, 1e-9, 1e12);
  if (c.positions == "rope" && (c.d_model / c.n_head) % 2 != 0)
    r.fail("positions", "rope needs an even head dim, but d_model / n_head = " +
                            std::to_string(c.d_model / c.n_head));
  c.dropout = r.number("dropout", 0.0, 0.0, 0.999);
  c.bias = r.boolean("bias", true);
  c.tie_embeddings = r.boolean("tie_embeddings", true);
  c.init_std = r.number("init_std", 0.02, 1e-12, 10.0);
  r.finish();
  return c;
}

nlohmann::json GptConfig::toJson() const {
  nlohmann::json j = {{"type", "gpt"},
                      {"vocab_size", vocab_size},
                      {"block_size", block_size},
                      {"n_layer", n_layer},
                      {"n_head", n_head},
                      {"n_kv_head", n_kv_head},
                      {"d_model", d_model},
                      {"mlp_hidden", mlp_hidden},
                      {"activation", activation},
                      {"gated_mlp", gated_mlp},
                      {"norm", norm},
                      {"norm_eps", norm_eps},
                      {"positions", positions},
                      {"dropout", dropout},
                      {"bias", bias},
                      {"tie_embeddings", tie_embeddings},
                      {"init_std", init_std}};
  if (positions == "rope") j["rope_theta"] = rope_theta;
  return j;
}

int64_t GptConfig::parameterCount() const {
  const int64_t C = d_model, V = vocab_size, T = block_size, L = n_layer, H = n_head;
  const int64_t Hkv = n_kv_head, D = C / H, F = mlp_hidden, b = bias ? 1 : 0;
  const int64_t norm_params = norm == "rmsnorm" ? C : C * (1 + b);
  const int64_t qkv = C * (H + 2 * Hkv) * D + b * (H + 2 * Hkv) * D;
  const int64_t proj = C * C + b * C;
  const int64_t mlp = (gated_mlp ? 2 : 1) * (C * F + b * F) + F * C + b * C;
  const int64_t block = 2 * norm_params + qkv + proj + mlp;
  return V * C + (positions == "learned" ? T * C : 0) + L * block + norm_params +
         (tie_embeddings ? 0 : V * C);
}

ModelInfo GptConfig::analyze() const {
  ModelInfo info;
  info.type = "gpt";
  info.params = info.trainable_params = parameterCount();
  // Lookup tables do no arithmetic; a tied wte is the head's matmul and counts.
  info.flop_params = info.params - (positions == "learned" ? block_size * d_model : 0) -
                     (tie_embeddings ? 0 : vocab_size * d_model);
  const double N = static_cast<double>(info.flop_params);
  const double attn =
      static_cast<double>(n_layer) * static_cast<double>(d_model) * static_cast<double>(block_size);
  info.forward_flops = 2.0 * N + 4.0 * attn;
  info.train_flops = 6.0 * N + 12.0 * attn;
  info.flops_per = "token";
  info.flops_formula =
      "train = 6N + 12*L*C*T, forward = 2N + 4*L*C*T; N = parameters used in matmuls (without "
      "the position table, and without the token table when the head is untied), L = n_layer, "
      "C = d_model, T = block_size";
  return info;
}

// ---- module ----
GptModel::GptModel(const GptConfig& cfg, const ModuleOptions& opt)
    : Model("GptModel", cfg.toJson()), cfg_(cfg) {
  ModuleOptions sub = opt;
  sub.initialize = false;  // GPT-2 initialisation below replaces the layers' defaults
  const int64_t C = cfg.d_model;
  wte_ = registerModule("wte", std::make_shared<Embedding>(cfg.vocab_size, C, sub));
  if (cfg.positions == "learned")
    wpe_ = registerModule("wpe", std::make_shared<Embedding>(cfg.block_size, C, sub));
  BlockConfig bc;
  bc.attn.d_model = C;
  bc.attn.n_head = cfg.n_head;
  bc.attn.n_kv_head = cfg.n_kv_head;
  bc.attn.max_len = cfg.block_size;
  bc.attn.bias = cfg.bias;
  bc.attn.rope = cfg.positions == "rope";
  bc.attn.rope_theta = cfg.rope_theta;
  bc.attn.dropout = cfg.dropout;
  bc.mlp_hidden = cfg.mlp_hidden;
  bc.activation = parseActivation(cfg.activation, "model.activation");
  bc.gated_mlp = cfg.gated_mlp;
  bc.rms_norm = cfg.norm == "rmsnorm";
  bc.norm_eps = cfg.norm_eps;
  auto blocks = std::make_shared<Sequential>();
  for (int64_t i = 0; i < cfg.n_layer; ++i) blocks->add(std::make_shared<Block>(bc, sub));
  blocks_ = registerModule("blocks", blocks);
  ln_f_ = registerModule("ln_f", makeNorm(bc.rms_norm, C, cfg.norm_eps, cfg.bias, sub));
  if (!cfg.tie_embeddings)
    lm_head_ = registerModule("lm_head", std::make_shared<Linear>(C, cfg.vocab_size, false, sub));
  if (opt.initialize) initWeights();
}

void GptModel::initWeights() {
  const double residual_std = cfg_.init_std / std::sqrt(2.0 * static_cast<double>(cfg_.n_layer));
  for (auto& [path, m] : namedModules()) {
    if (auto* l = dynamic_cast<Linear*>(m)) {
      const bool residual = path.ends_with("attn.proj") || path.ends_with("mlp.fc2");
      initNormal(l->weight(), 0.0, residual ? residual_std : cfg_.init_std);
      if (l->bias().defined()) initConstant(l->bias(), 0.0);
    } else if (auto* e = dynamic_cast<Embedding*>(m)) {
      initNormal(e->weight(), 0.0, cfg_.init_std);
    }
  }
}

int64_t GptModel::setCheckpointing(CheckpointMode mode, int64_t every_k) {
  LATHE_CHECK(every_k >= 1, "GptModel::setCheckpointing: every_k must be >= 1, got ", every_k);
  Module& blocks = child(blocks_);
  int64_t count = 0;
  for (size_t i = 0; i < blocks.children().size(); ++i) {
    auto* block = dynamic_cast<Block*>(&blocks.child(i));
    if (block == nullptr) continue;
    const bool on = static_cast<int64_t>(i) % every_k == 0;
    block->setCheckpoint(on ? mode : CheckpointMode::none);
    if (on && mode != CheckpointMode::none) ++count;
  }
  return count;
}

KVCache GptModel::newCache(int64_t batch, int64_t capacity) const {
  LATHE_CHECK(batch >= 1 && capacity >= 1 && capacity <= cfg_.block_size,
              "GptModel::newCache: batch must be >= 1 and capacity in [1, block_size = ",
              cfg_.block_size, "], got batch ", batch, ", capacity ", capacity);
  const Tensor& w = childAs<Embedding>(wte_).weight();
  const int64_t D = cfg_.d_model / cfg_.n_head;
  KVCache cache;
  cache.capacity = capacity;
  MemoryTagScope tag(MemoryTag::activations);
  for (int64_t i = 0; i < cfg_.n_layer; ++i) {
    cache.layers.push_back(
        {Tensor::zeros({batch, cfg_.n_kv_head, capacity, D}, w.dtype(), w.device()),
         Tensor::zeros({batch, cfg_.n_kv_head, capacity, D}, w.dtype(), w.device())});
  }
  return cache;
}

Tensor GptModel::forward(const Tensor& ids, KVCache* cache, bool last_only) {
  LATHE_CHECK(ids.dim() == 2 && (ids.dtype() == DType::i64 || ids.dtype() == DType::i32),
              "GptModel: token ids must be i64 or i32 [B, T], got ", describe(ids));
  const int64_t T = ids.size(1);
  const int64_t past = cache != nullptr ? cache->length : 0;
  LATHE_CHECK(T >= 1, "GptModel: empty sequence ", describe(ids));
  LATHE_CHECK(past + T <= cfg_.block_size, "GptModel: ", past + T,
              " positions exceed block_size = ", cfg_.block_size, " (input ", describe(ids),
              past > 0 ? ", after " + std::to_string(past) + " cached" : std::string(), ")");
  if (cache != nullptr)
    LATHE_CHECK(
        static_cast<int64_t>(cache->layers.size()) == cfg_.n_layer && past + T <= cache->capacity,
        "GptModel: the KV cache (", cache->layers.size(), " layers, capacity ", cache->capacity,
        ") does not fit ", cfg_.n_layer, " layers and ", past + T,
        " positions; make it with newCache()");
  Tensor x = child(wte_).forward(ids);
  if (cfg_.positions == "learned") {
    const Tensor pos = arange(static_cast<double>(past), static_cast<double>(past + T), 1.0,
                              DType::i64, ids.device());
    x = add(x, child(wpe_).forward(pos));
  }
  x = dropout(x, cfg_.dropout, training_);
  Module& blocks = child(blocks_);
  for (size_t i = 0; i < blocks.children().size(); ++i) {
    if (cache == nullptr) {
      x = blocks.child(i).forward(x);
      continue;
    }
    auto* block = dynamic_cast<Block*>(&blocks.child(i));
    LATHE_CHECK(block != nullptr, "GptModel: blocks.", i, " was replaced by a ",
                blocks.child(i).typeName(), ", which cannot use the KV cache");
    x = block->forward(x, &cache->layers[i], past);
  }
  x = child(ln_f_).forward(x);
  if (last_only) x = x.slice(1, T - 1, T);
  const Tensor logits = cfg_.tie_embeddings ? linear(x, childAs<Embedding>(wte_).weight())
                                            : child(lm_head_).forward(x);
  if (cache != nullptr) cache->length += T;
  return logits;
}

std::vector<int64_t> GptModel::sample(const Tensor& logits, const GenerateOptions& opt) const {
  const int64_t B = logits.size(0), V = logits.size(-1);
  const std::vector<double> l = logits.reshape({B, V}).toDoubles();
  std::vector<double> u;
  if (opt.temperature > 0) u = rand({B}, DType::f64, Device::cpu()).toDoubles();
  std::vector<int64_t> next(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const double* row = l.data() + b * V;
    LATHE_CHECK(std::all_of(row, row + V, [](double v) { return std::isfinite(v); }),
                "GptModel::generate: the logits of sequence ", b,
                " are not finite (a diverged or corrupted model?)");
    if (opt.temperature == 0) {
      next[static_cast<size_t>(b)] = std::max_element(row, row + V) - row;
      continue;
    }
    std::vector<double> z(row, row + V);
    for (double& v : z) v /= opt.temperature;
    double threshold = -INFINITY;
    if (opt.top_k > 0 && opt.top_k < V) {
      std::vector<double> tmp = z;
      std::nth_element(tmp.begin(), tmp.begin() + (opt.top_k - 1), tmp.end(),
                       std::greater<double>());
      threshold = tmp[static_cast<size_t>(opt.top_k - 1)];
    }
    const double zmax = *std::max_element(z.begin(), z.end());
    double total = 0;
    for (double& v : z) {
      v = v >= threshold ? std::exp(v - zmax) : 0.0;
      total += v;
    }
    const double target = u[static_cast<size_t>(b)] * total;
    double acc = 0;
    int64_t pick = -1;
    for (int64_t j = 0; j < V; ++j) {
      if (z[static_cast<size_t>(j)] == 0.0) continue;
      pick = j;  // the last candidate absorbs rounding at the top end
      acc += z[static_cast<size_t>(j)];
      if (acc > target) break;
    }
    next[static_cast<size_t>(b)] = pick;
  }
  return next;
}

Tensor GptModel::generate(const Tensor& prompt, const GenerateOptions& opt) {
  LATHE_CHECK(prompt.dim() == 2 && prompt.size(0) >= 1 && prompt.size(1) >= 1 &&
                  (prompt.dtype() == DType::i64 || prompt.dtype() == DType::i32),
              "GptModel::generate: prompt must be non-empty i64 [B, T], got ", describe(prompt));
  LATHE_CHECK(opt.max_new_tokens >= 0 && opt.temperature >= 0 && std::isfinite(opt.temperature) &&
                  opt.top_k >= 0,
              "GptModel::generate: max_new_tokens (", opt.max_new_tokens, ") and top_k (",
              opt.top_k, ") must be >= 0 and temperature (", opt.temperature, ") finite and >= 0");
  const int64_t B = prompt.size(0), T0 = prompt.size(1), total = T0 + opt.max_new_tokens;
  LATHE_CHECK(!opt.use_cache || total <= cfg_.block_size, "GptModel::generate: prompt (", T0,
              ") + max_new_tokens (", opt.max_new_tokens, ") = ", total,
              " exceed block_size = ", cfg_.block_size,
              " with the KV cache; generate without it (use_cache = false) to slide the context");
  NoGradGuard no_grad;
  // Eval mode and (optionally) a private random stream for the call; restored on exit.
  struct Restore {
    GptModel* m;
    bool training;
    std::optional<RandomState> rng;
    ~Restore() {
      m->train(training);
      if (rng) setRngState(*rng);
    }
  } restore{this, training_, std::nullopt};
  eval();
  if (opt.seed) {
    restore.rng = rngState();
    manualSeed(*opt.seed);
  }
  std::vector<int64_t> seq = prompt.to(DType::i64).toInts();  // [B, T0] row-major
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b)
    rows[static_cast<size_t>(b)].assign(seq.begin() + b * T0, seq.begin() + (b + 1) * T0);
  auto idsOf = [&](int64_t from, int64_t len) {
    std::vector<int64_t> v;
    for (const auto& r : rows) v.insert(v.end(), r.begin() + from, r.begin() + from + len);
    return Tensor::fromVector(v, {B, len}, DType::i64, prompt.device());
  };
  KVCache cache;
  if (opt.use_cache && opt.max_new_tokens > 0) cache = newCache(B, total);
  for (int64_t n = 0; n < opt.max_new_tokens; ++n) {
    const int64_t len = T0 + n;
    Tensor logits;
    if (opt.use_cache) {
      logits =
          n == 0 ? forward(idsOf(0, len), &cache, true) : forward(idsOf(len - 1, 1), &cache, true);
    } else {
      const int64_t ctx = std::min(len, cfg_.block_size);
      logits = forward(idsOf(len - ctx, ctx), nullptr, true);
    }
    const std::vector<int64_t> next = sample(logits, opt);
    for (int64_t b = 0; b < B; ++b)
      rows[static_cast<size_t>(b)].push_back(next[static_cast<size_t>(b)]);
  }
  return idsOf(0, total);
}

}  // namespace lathe
