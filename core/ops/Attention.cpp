// Scaled dot-product attention as one fused op: q [B, H, T, D], k/v [B, Hkv, S, D] with H a
// multiple of Hkv (query head h reads kv head h / (H / Hkv)), optional key padding bool [B, S]
// (true = attend), causal masking aligned at the end (query i sees key j iff j <= i + (S - T);
// for T == S that is PyTorch's is_causal, for T != S it is flash-attention's "bottom right").
// The forward saves only q, k, v, out and the per-row log-sum-exp (f64 for f64 inputs, else
// f32); the backward kernel recomputes the probabilities tile by tile, so no [T, S] matrix is
// ever allocated. Rows with no visible key give zeros and zero gradient.
#include <cmath>

#include "core/ops/Autocast.h"
#include "core/ops/OpsCommon.h"

namespace lathe {
namespace {

constexpr const char* kOp = "scaledDotProductAttention";

void checkArguments(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_padding,
                    double scale) {
  LATHE_CHECK(q.defined() && k.defined() && v.defined(), kOp, ": q, k and v must be defined");
  LATHE_CHECK(q.dim() == 4, kOp, ": q must be [B, H, T, D], got ", describe(q));
  LATHE_CHECK(k.dim() == 4, kOp, ": k must be [B, Hkv, S, D], got ", describe(k));
  LATHE_CHECK(v.dim() == 4, kOp, ": v must be [B, Hkv, S, D], got ", describe(v));
  detail::requireFloating(q, kOp, "q");
  LATHE_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(), kOp,
              ": q, k and v must have the same dtype, got q ", describe(q), ", k ", describe(k),
              ", v ", describe(v));
  LATHE_CHECK(k.device() == q.device() && v.device() == q.device(), kOp,
              ": q, k and v must be on the same device, got q ", describe(q), ", k ", describe(k),
              ", v ", describe(v));
  LATHE_CHECK(k.shape() == v.shape(), kOp, ": k ", describe(k), " and v ", describe(v),
              " must have the same shape [B, Hkv, S, D]");
  const Shape& qs = q.shape();
  const Shape& ks = k.shape();
  LATHE_CHECK(ks[0] == qs[0], kOp, ": batch sizes differ: q ", describe(q), " has B = ", qs[0],
              ", k ", describe(k), " has B = ", ks[0]);
  LATHE_CHECK(ks[3] == qs[3], kOp, ": head dims differ: q ", describe(q), " has D = ", qs[3],
              ", k ", describe(k), " has D = ", ks[3]);
  LATHE_CHECK(qs[3] > 0, kOp, ": head dim D must be at least 1, got q ", describe(q));
  LATHE_CHECK(ks[1] > 0 && qs[1] % ks[1] == 0, kOp, ": the H = ", qs[1], " heads of q ",
              describe(q), " must be a multiple of the Hkv = ", ks[1], " heads of k ", describe(k));
  if (key_padding.defined()) {
    LATHE_CHECK(key_padding.dtype() == DType::b8, kOp,
                ": key_padding must be bool (true = attend),", " got ", describe(key_padding));
    LATHE_CHECK(key_padding.device() == q.device(), kOp, ": key_padding ", describe(key_padding),
                " is not on q's device ", q.device().str());
    LATHE_CHECK(key_padding.shape() == Shape({qs[0], ks[2]}), kOp, ": key_padding ",
                describe(key_padding), " must be [B, S] = ", shapeStr({qs[0], ks[2]}), " for q ",
                describe(q), " and k ", describe(k));
  }
  LATHE_CHECK(std::isfinite(scale), kOp, ": scale must be finite (0 means 1/sqrt(D)), got ", scale);
}

}  // namespace

Tensor scaledDotProductAttention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                 const Tensor& key_padding, double scale) {
  if (autocast::wantsLow(q, k, v))
    return scaledDotProductAttention(autocast::low(q), autocast::low(k), autocast::low(v), causal,
                                     key_padding, scale);
  checkArguments(q, k, v, key_padding, scale);
  Tensor qc, kc, vc, mask;
  {
    NoGradGuard g;
    qc = q.detach().contiguous();
    kc = k.detach().contiguous();
    vc = v.detach().contiguous();
    if (key_padding.defined()) mask = key_padding.detach().contiguous();
  }
  const AttentionParams params{causal, scale};
  const Shape& qs = q.shape();
  Tensor out = Tensor::empty(qs, q.dtype(), q.device());
  Tensor lse = Tensor::empty({qs[0], qs[1], qs[2]},
                             q.dtype() == DType::f64 ? DType::f64 : DType::f32, q.device());
  backendFor(qc).attention(qc, kc, vc, mask.defined() ? &mask : nullptr, params, out, lse);
  if (!needsGrad({&q, &k, &v})) return out;

  SavedTensor sq(qc, "attention.q"), sk(kc, "attention.k"), sv(vc, "attention.v");
  SavedTensor so(out, "attention.out"), sl(lse, "attention.lse");
  SavedTensor sm(mask, "attention.key_padding");
  return recordUnary("ScaledDotProductAttention", {q, k, v}, out,
                     [sq, sk, sv, so, sl, sm, params](const std::vector<Tensor>& g) {
                       const Tensor& q0 = sq.get();
                       const Tensor& k0 = sk.get();
                       const Tensor gout = g[0].to(q0.dtype()).contiguous();
                       Tensor gq = Tensor::empty(q0.shape(), q0.dtype(), q0.device());
                       Tensor gk = Tensor::empty(k0.shape(), k0.dtype(), k0.device());
                       Tensor gv = Tensor::empty(k0.shape(), k0.dtype(), k0.device());
                       backendFor(q0).attentionBackward(q0, k0, sv.get(),
                                                        sm.defined() ? &sm.get() : nullptr, params,
                                                        so.get(), sl.get(), gout, gq, gk, gv);
                       return std::vector<Tensor>{gq, gk, gv};
                     });
}

}  // namespace lathe
