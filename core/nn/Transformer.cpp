// Feed-forward, attention and block forwards. The QKV projection is one Linear of width
// (H + 2 Hkv) D whose output is split into views; heads are moved to dim 1 by transposes
// (views), and the attention op makes its operands contiguous once.
#include "core/nn/Transformer.h"

#include <cmath>
#include <sstream>

#include "core/autograd/Autograd.h"

namespace lathe {

std::shared_ptr<Module> makeNorm(bool rms, int64_t dim, double eps, bool bias,
                                 const ModuleOptions& opt) {
  if (rms) return std::make_shared<RMSNorm>(dim, eps, opt);
  return std::make_shared<LayerNorm>(dim, eps, bias, opt);
}

// ---- Mlp ----
Mlp::Mlp(int64_t dim, int64_t hidden, ActivationKind act, bool bias, bool gated, double dropout,
         const ModuleOptions& opt)
    : Module("Mlp"), dim_(dim), hidden_(hidden), act_(act), gated_(gated), dropout_(dropout) {
  LATHE_CHECK(dropout >= 0.0 && dropout < 1.0, "Mlp: dropout must be in [0, 1), got ", dropout);
  fc1_ = registerModule("fc1", std::make_shared<Linear>(dim, hidden, bias, opt));
  if (gated) gate_ = registerModule("gate", std::make_shared<Linear>(dim, hidden, bias, opt));
  fc2_ = registerModule("fc2", std::make_shared<Linear>(hidden, dim, bias, opt));
}

Tensor Mlp::forward(const Tensor& x) {
  const Tensor a = child(fc1_).forward(x);
  const Tensor g = gated_ ? child(gate_).forward(x) : Tensor();
  const ActivationKind act = act_;
  auto hidden = [act](const std::vector<Tensor>& in) {
    Tensor h = activate(in[0], act);
    return std::vector<Tensor>{in[1].defined() ? mul(h, in[1]) : h};
  };
  const Tensor h =
      selective_ ? checkpoint(hidden, {a, g}, CheckpointOptions{true})[0] : hidden({a, g})[0];
  return dropout(child(fc2_).forward(h), dropout_, training_);
}

std::string Mlp::configString() const {
  return std::to_string(dim_) + " -> " + std::to_string(hidden_) + ", " + activationName(act_) +
         (gated_ ? ", gated" : "");
}

// ---- RoPE ----
Tensor applyRope(const Tensor& x, const Tensor& cos, const Tensor& sin, int64_t position) {
  const int64_t T = x.size(-2), D = x.size(-1);
  LATHE_CHECK(position >= 0 && position + T <= cos.size(0), "RoPE: positions [", position, ", ",
              position + T, ") exceed the table of ", cos.size(0), " positions");
  const Tensor c = cos.slice(0, position, position + T);
  const Tensor s = sin.slice(0, position, position + T);
  const Tensor x1 = x.slice(-1, 0, D / 2), x2 = x.slice(-1, D / 2, D);
  const Tensor rotated = concat({neg(x2), x1}, -1);
  return add(mul(x, c), mul(rotated, s));
}

namespace {

// cos/sin tables [max_len, D] for the rotate-half layout, computed in f64.
std::pair<Tensor, Tensor> ropeTables(int64_t max_len, int64_t D, double theta,
                                     const ModuleOptions& opt) {
  std::vector<double> c(static_cast<size_t>(max_len * D)), s(c.size());
  for (int64_t p = 0; p < max_len; ++p) {
    for (int64_t i = 0; i < D / 2; ++i) {
      const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
      const double a = static_cast<double>(p) * freq;
      for (int64_t half : {int64_t{0}, D / 2}) {
        c[static_cast<size_t>(p * D + i + half)] = std::cos(a);
        s[static_cast<size_t>(p * D + i + half)] = std::sin(a);
      }
    }
  }
  MemoryTagScope tag(MemoryTag::parameters);
  return {Tensor::fromVector(c, {max_len, D}, opt.dtype, opt.device),
          Tensor::fromVector(s, {max_len, D}, opt.dtype, opt.device)};
}

}  // namespace

// ---- attention ----
CausalSelfAttention::CausalSelfAttention(const AttentionConfig& cfg, const ModuleOptions& opt)
    : Module("CausalSelfAttention"), cfg_(cfg) {
  if (cfg_.n_kv_head == 0) cfg_.n_kv_head = cfg_.n_head;
  const int64_t C = cfg_.d_model, H = cfg_.n_head, Hkv = cfg_.n_kv_head;
  LATHE_CHECK(C > 0 && H > 0 && C % H == 0, "CausalSelfAttention: n_head = ", H,
              " must divide d_model = ", C);
  LATHE_CHECK(Hkv > 0 && H % Hkv == 0, "CausalSelfAttention: n_kv_head = ", Hkv,
              " must divide n_head = ", H);
  LATHE_CHECK(cfg_.max_len > 0, "CausalSelfAttention: max_len must be positive");
  LATHE_CHECK(cfg_.dropout >= 0.0 && cfg_.dropout < 1.0,
              "CausalSelfAttention: dropout must be in [0, 1), got ", cfg_.dropout);
  const int64_t D = C / H;
  qkv_ = registerModule("qkv", std::make_shared<Linear>(C, (H + 2 * Hkv) * D, cfg_.bias, opt));
  proj_ = registerModule("proj", std::make_shared<Linear>(C, C, cfg_.bias, opt));
  if (cfg_.rope) {
    LATHE_CHECK(D % 2 == 0, "CausalSelfAttention: RoPE needs an even head dim, got ", D);
    auto [c, s] = ropeTables(cfg_.max_len, D, cfg_.rope_theta, opt);
    rope_cos_ = registerBuffer("rope_cos", c, false);
    rope_sin_ = registerBuffer("rope_sin", s, false);
  }
}

Tensor CausalSelfAttention::forward(const Tensor& x, LayerKV* cache, int64_t past) {
  LATHE_CHECK(x.dim() == 3 && x.size(2) == cfg_.d_model, "CausalSelfAttention: input must be ",
              "[B, T, ", cfg_.d_model, "], got ", describe(x));
  const int64_t B = x.size(0), T = x.size(1), H = cfg_.n_head, Hkv = cfg_.n_kv_head;
  const int64_t D = headDim();
  const Tensor qkv = child(qkv_).forward(x);
  const std::vector<Tensor> parts = split(qkv, {H * D, Hkv * D, Hkv * D}, -1);
  Tensor q = parts[0].reshape({B, T, H, D}).transpose(1, 2);
  Tensor k = parts[1].reshape({B, T, Hkv, D}).transpose(1, 2);
  Tensor v = parts[2].reshape({B, T, Hkv, D}).transpose(1, 2);
  if (cfg_.rope) {
    const Tensor cos = rope_cos_, sin = rope_sin_;
    auto rope = [cos, sin, past](const std::vector<Tensor>& in) {
      return std::vector<Tensor>{applyRope(in[0], cos, sin, past),
                                 applyRope(in[1], cos, sin, past)};
    };
    const bool sel = selective_ && cache == nullptr;
    const std::vector<Tensor> qk =
        sel ? checkpoint(rope, {q, k}, CheckpointOptions{true}) : rope({q, k});
    q = qk[0];
    k = qk[1];
  }
  if (cache != nullptr) {
    LATHE_CHECK(!gradEnabled(),
                "CausalSelfAttention: the KV cache is for inference; run it "
                "under NoGradGuard");
    LATHE_CHECK(cache->k.defined() && cache->k.dim() == 4 && cache->k.size(0) == B &&
                    cache->k.size(1) == Hkv && cache->k.size(3) == D && cache->v.defined() &&
                    cache->v.shape() == cache->k.shape(),
                "CausalSelfAttention: KV cache ", cache->k.defined() ? describe(cache->k) : "?",
                " does not fit [B, Hkv, capacity, D] = [", B, ", ", Hkv, ", *, ", D, "]");
    LATHE_CHECK(past >= 0 && past + T <= cache->k.size(2), "CausalSelfAttention: positions [", past,
                ", ", past + T, ") exceed the KV cache capacity ", cache->k.size(2));
    cache->k.slice(2, past, past + T).copy_(k);
    cache->v.slice(2, past, past + T).copy_(v);
    k = cache->k.slice(2, 0, past + T);
    v = cache->v.slice(2, 0, past + T);
  }
  const Tensor y = scaledDotProductAttention(q, k, v, true);
  const int64_t C = cfg_.d_model;
  auto merge = [B, T, C](const Tensor& t) { return t.transpose(1, 2).reshape({B, T, C}); };
  const Tensor merged = selective_ && cache == nullptr ? recomputable(merge, y) : merge(y);
  return dropout(child(proj_).forward(merged), cfg_.dropout, training_);
}

std::string CausalSelfAttention::configString() const {
  std::ostringstream os;
  os << "d_model=" << cfg_.d_model << ", heads=" << cfg_.n_head;
  if (cfg_.n_kv_head != cfg_.n_head) os << ", kv_heads=" << cfg_.n_kv_head;
  if (cfg_.rope) os << ", rope";
  return os.str();
}

// ---- Block ----
Block::Block(const BlockConfig& cfg, const ModuleOptions& opt) : Module("Block") {
  const int64_t C = cfg.attn.d_model;
  ln1_ = registerModule("ln1", makeNorm(cfg.rms_norm, C, cfg.norm_eps, cfg.attn.bias, opt));
  attn_ = registerModule("attn", std::make_shared<CausalSelfAttention>(cfg.attn, opt));
  ln2_ = registerModule("ln2", makeNorm(cfg.rms_norm, C, cfg.norm_eps, cfg.attn.bias, opt));
  mlp_ =
      registerModule("mlp", std::make_shared<Mlp>(C, cfg.mlp_hidden, cfg.activation, cfg.attn.bias,
                                                  cfg.gated_mlp, cfg.attn.dropout, opt));
}

void Block::setCheckpoint(CheckpointMode mode) {
  checkpoint_ = mode;
  const bool selective = mode == CheckpointMode::selective;
  if (auto* a = dynamic_cast<CausalSelfAttention*>(&child(attn_)))
    a->setSelectiveCheckpoint(selective);
  if (auto* m = dynamic_cast<Mlp*>(&child(mlp_))) m->setSelectiveCheckpoint(selective);
}

Tensor Block::forward(const Tensor& x, LayerKV* cache, int64_t past) {
  if (checkpoint_ == CheckpointMode::full && cache == nullptr && past == 0)
    return checkpoint(
        [this](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{run(in[0], nullptr, 0)};
        },
        {x})[0];
  return run(x, cache, past);
}

Tensor Block::run(const Tensor& x, LayerKV* cache, int64_t past) {
  Module* ln1 = &child(ln1_);
  const Tensor h = checkpoint_ == CheckpointMode::selective && cache == nullptr
                       ? recomputable([ln1](const Tensor& t) { return ln1->forward(t); }, x)
                       : ln1->forward(x);
  const Tensor a = cache == nullptr && past == 0
                       ? child(attn_).forward(h)
                       : childAs<CausalSelfAttention>(attn_).forward(h, cache, past);
  const Tensor x1 = add(x, a);
  Module* ln2 = &child(ln2_);
  const Tensor h2 = checkpoint_ == CheckpointMode::selective && cache == nullptr
                        ? recomputable([ln2](const Tensor& t) { return ln2->forward(t); }, x1)
                        : ln2->forward(x1);
  return add(x1, child(mlp_).forward(h2));
}

}  // namespace lathe
