// Transformer pieces: the feed-forward block (plain or gated), causal multi-head self-attention
// (fused QKV projection, grouped-query heads, RoPE or none, KV cache) and the pre-norm Block.
// Shapes: x [B, T, C] with C = d_model; heads H, KV heads Hkv (H % Hkv == 0), head dim
// D = C / H; q [B, H, T, D], k/v [B, Hkv, S, D]. Attention runs through the fused
// scaledDotProductAttention op, which has no probability dropout: `dropout` applies to the
// residual branches (after the output projections), as in most recipes once fused kernels
// are used.
#pragma once

#include <memory>
#include <string>

#include "core/nn/Layers.h"

namespace lathe {

// One layer's key/value cache: k and v [B, Hkv, capacity, D], filled up to the position the
// caller passes. Inference only (written in place, no gradient).
struct LayerKV {
  Tensor k, v;
};

// fc2(act(fc1(x))) or, gated (SwiGLU-style), fc2(act(fc1(x)) * gate(x)); then dropout.
class Mlp : public Module {
 public:
  Mlp(int64_t dim, int64_t hidden, ActivationKind act, bool bias, bool gated, double dropout,
      const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override;
  std::string configString() const override;
  bool gated() const { return gated_; }
  // Selective checkpointing: the activation (and gate product) is recomputed in backward
  // from fc1's output instead of being kept for fc2.
  void setSelectiveCheckpoint(bool on) { selective_ = on; }

 private:
  int64_t dim_, hidden_;
  ActivationKind act_;
  bool gated_;
  bool selective_ = false;
  double dropout_;
  size_t fc1_, gate_ = 0, fc2_;
};

struct AttentionConfig {
  int64_t d_model = 0;
  int64_t n_head = 0;
  int64_t n_kv_head = 0;  // 0: n_head (plain multi-head)
  int64_t max_len = 0;    // longest sequence (RoPE tables, cache positions)
  bool bias = true;
  bool rope = false;
  double rope_theta = 10000.0;
  double dropout = 0.0;  // residual dropout after the output projection
};

// Rotary position embedding in the rotate-half layout (GPT-NeoX / Llama / Hugging Face): the
// first and second halves of each head dim form the rotated pairs, frequencies
// theta^(-2i/D). cos/sin are [max_len, D] non-persistent buffers of the attention module.
Tensor applyRope(const Tensor& x, const Tensor& cos, const Tensor& sin, int64_t position);

class CausalSelfAttention : public Module {
 public:
  CausalSelfAttention(const AttentionConfig& cfg, const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override { return forward(x, nullptr, 0); }
  // With a cache: x holds the tokens at positions [past, past + T); their k/v are written to
  // the cache and attention sees positions [0, past + T). Needs grad mode off.
  Tensor forward(const Tensor& x, LayerKV* cache, int64_t past);
  std::string configString() const override;
  const AttentionConfig& config() const { return cfg_; }
  int64_t headDim() const { return cfg_.d_model / cfg_.n_head; }
  // Selective checkpointing: the head-merging copy that feeds the output projection (and the
  // RoPE rotation) are recomputed in backward instead of being kept.
  void setSelectiveCheckpoint(bool on) { selective_ = on; }

 private:
  AttentionConfig cfg_;
  bool selective_ = false;
  size_t qkv_, proj_;
  Tensor rope_cos_, rope_sin_;
};

struct BlockConfig {
  AttentionConfig attn;
  int64_t mlp_hidden = 0;
  ActivationKind activation = ActivationKind::gelu_tanh;
  bool gated_mlp = false;
  bool rms_norm = false;  // false: LayerNorm (with bias when attn.bias)
  double norm_eps = 1e-5;
};

// Pre-norm block: x + attn(ln1(x)), then + mlp(ln2(x)). Children: ln1, attn, ln2, mlp.
// Activation checkpointing (training only; the KV-cache path never records a graph):
//   full       keeps x only and re-runs the whole block in backward
//   selective  keeps the outputs of the QKV, attention, output-projection, fc1 and fc2 ops
//              (and dropout masks, u8); re-runs ln1, ln2, the activation (gate product), the
//              head-merging copy and RoPE. Per layer (f32, hidden 4C, no RoPE) that keeps about
//              10 of the ~17 [B, T, C]-sized tensors an unchecked block keeps.
class Block : public Module {
 public:
  Block(const BlockConfig& cfg, const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override { return forward(x, nullptr, 0); }
  Tensor forward(const Tensor& x, LayerKV* cache, int64_t past);
  // Sets the mode for this block and the selective flags of its attention and MLP (children
  // replaced by other module types are left as they are).
  void setCheckpoint(CheckpointMode mode);
  CheckpointMode checkpointMode() const { return checkpoint_; }

 private:
  Tensor run(const Tensor& x, LayerKV* cache, int64_t past);
  size_t ln1_, attn_, ln2_, mlp_;
  CheckpointMode checkpoint_ = CheckpointMode::none;
};

// The norm a transformer uses: RMSNorm or LayerNorm (bias optional).
std::shared_ptr<Module> makeNorm(bool rms, int64_t dim, double eps, bool bias,
                                 const ModuleOptions& opt);

}  // namespace lathe
