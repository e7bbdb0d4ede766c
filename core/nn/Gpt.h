// Decoder-only transformer preset (GPT-2 / nanoGPT layout, with Llama-style options): token
// embedding wte, optional learned position table wpe (or RoPE in every attention), dropout,
// n_layer pre-norm Blocks, final norm ln_f, and a head tied to wte (logits = x wte^T) or an
// untied lm_head. Parameter names: wte.weight, wpe.weight, blocks.{i}.{ln1, attn.qkv,
// attn.proj, ln2, mlp.fc1, mlp.gate, mlp.fc2}.{weight,bias}, ln_f.*, lm_head.weight.
// Initialisation (GPT-2): Linear and embedding weights N(0, init_std), biases 0, and the
// residual projections (attn.proj, mlp.fc2) N(0, init_std / sqrt(2 n_layer)).
//
// Spec fields: vocab_size, block_size, n_layer, n_head, d_model (required); n_kv_head
// (n_head; grouped-query attention when smaller), mlp_ratio (4) or mlp_hidden, activation
// ("gelu_tanh"), gated_mlp (false), norm ("layernorm"|"rmsnorm"), norm_eps (1e-5), positions
// ("learned"|"rope"), rope_theta (10000), dropout (0), bias (true), tie_embeddings (true),
// init_std (0.02). The normalised spec carries mlp_hidden.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/nn/Presets.h"
#include "core/nn/Transformer.h"

namespace lathe {

struct GptConfig {
  int64_t vocab_size = 0, block_size = 0, n_layer = 0, n_head = 0, n_kv_head = 0, d_model = 0;
  int64_t mlp_hidden = 0;
  std::string activation = "gelu_tanh";
  bool gated_mlp = false;
  std::string norm = "layernorm";
  double norm_eps = 1e-5;
  std::string positions = "learned";
  double rope_theta = 10000.0;
  double dropout = 0.0;
  bool bias = true;
  bool tie_embeddings = true;
  double init_std = 0.02;

  static GptConfig parse(const nlohmann::json& spec, const std::string& path);
  nlohmann::json toJson() const;
  ModelInfo analyze() const;
  // Analytic parameter count (see analyze()); no allocation.
  int64_t parameterCount() const;
};

// Per-layer KV caches for incremental decoding; `length` positions are filled.
struct KVCache {
  std::vector<LayerKV> layers;
  int64_t length = 0;
  int64_t capacity = 0;
};

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  double temperature = 1.0;  // 0: greedy (argmax)
  int64_t top_k = 0;         // 0: sample from the whole vocabulary
  // Set: draw from this seed and restore the global random stream afterwards; unset: draw
  // from the global stream (lathe::manualSeed).
  std::optional<uint64_t> seed;
  // true: prefill once, then one token per step against the KV cache (prompt + new tokens
  // must fit block_size). false: recompute the whole (cropped to block_size) context per step.
  bool use_cache = true;
};

class GptModel : public Model {
 public:
  GptModel(const GptConfig& cfg, const ModuleOptions& opt = {});
  // ids i64 [B, T] -> logits [B, T, vocab].
  Tensor forward(const Tensor& ids) override { return forward(ids, nullptr); }
  // With a cache, ids are the tokens at positions [cache->length, + T) and the cache advances.
  // last_only: logits of the last position only ([B, 1, vocab]).
  Tensor forward(const Tensor& ids, KVCache* cache, bool last_only = false);
  // An empty cache for `batch` sequences of up to `capacity` (<= block_size) positions, in the
  // parameters' dtype and device (MemoryTag::activations).
  KVCache newCache(int64_t batch, int64_t capacity) const;
  // Appends up to max_new_tokens to prompt i64 [B, T0] and returns [B, T0 + max_new_tokens].
  // Runs in eval mode without gradients and restores the training flag.
  Tensor generate(const Tensor& prompt, const GenerateOptions& opt = {});
  const GptConfig& config() const { return cfg_; }
  // Blocks 0, k, 2k, ... get `mode` (see Block); blocks replaced by other module types are
  // skipped. Returns the number of blocks set to `mode`.
  int64_t setCheckpointing(CheckpointMode mode, int64_t every_k) override;

 private:
  // Picks the next token of every row from logits [B, V] (host doubles).
  std::vector<int64_t> sample(const Tensor& logits, const GenerateOptions& opt) const;
  void initWeights();

  GptConfig cfg_;
  size_t wte_, wpe_ = 0, blocks_, ln_f_, lm_head_ = 0;
};

}  // namespace lathe
