// Reference fused attention (flash-attention style), the ground truth for the fast path:
// q [B, H, T, D], k/v [B, Hkv, S, D], query head h reads kv head h / (H / Hkv). Queries and keys
// are walked in tiles with an online softmax (running max m and sum l per query row), so no
// [T, S] score matrix exists; lse = m + log(l) is saved per row and the backward recomputes the
// probabilities tile by tile from q, k and lse, with delta = rowsum(dO * O). Causal masking is
// aligned at the end: query i sees key j iff j <= i + (S - T). A row with no visible key gets
// out = 0, lse = -inf and zero gradient. Arithmetic in compute_t (f64 for f64, else f32); lse is
// f64 for f64 inputs, f32 otherwise.
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {
namespace {

constexpr int64_t kTileQ = 32;  // query rows per tile
constexpr int64_t kTileK = 64;  // keys per tile

template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

struct Dims {
  int64_t B, H, Hkv, T, S, D, G, off;  // G = H / Hkv query heads per kv head; off = S - T
};

Dims dimsOf(const Tensor& q, const Tensor& k) {
  Dims d{};
  d.B = q.shape()[0];
  d.H = q.shape()[1];
  d.T = q.shape()[2];
  d.D = q.shape()[3];
  d.Hkv = k.shape()[1];
  d.S = k.shape()[2];
  d.G = d.H / d.Hkv;
  d.off = d.S - d.T;
  return d;
}

double scaleOf(const AttentionParams& p, int64_t D) {
  return p.scale != 0.0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(D));
}

template <typename C, typename T>
C dot(const T* a, const T* b, int64_t n) {
  C s = 0;
  for (int64_t d = 0; d < n; ++d) s += static_cast<C>(a[d]) * static_cast<C>(b[d]);
  return s;
}

template <typename T>
void forwardImpl(const Tensor& q, const Tensor& k, const Tensor& v, const bool* pad,
                 const AttentionParams& p, const Tensor& out, const Tensor& lse) {
  using C = compute_t<T>;
  using L = stat_t<T>;
  const Dims d = dimsOf(q, k);
  const C scale = static_cast<C>(scaleOf(p, d.D));
  const C ninf = -std::numeric_limits<C>::infinity();
  const T* pq = static_cast<const T*>(q.rawData());
  const T* pk = static_cast<const T*>(k.rawData());
  const T* pv = static_cast<const T*>(v.rawData());
  T* po = static_cast<T*>(out.rawData());
  L* pl = lse.data<L>();
  const int64_t tiles = (d.T + kTileQ - 1) / kTileQ;
  parallelFor(d.B * d.H * tiles, kTileQ * d.S * d.D, [&](int64_t w0, int64_t w1) {
    std::vector<C> s(kTileQ * kTileK), acc(kTileQ * d.D), m(kTileQ), l(kTileQ);
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t b = w / (d.H * tiles), h = (w / tiles) % d.H;
      const int64_t i0 = (w % tiles) * kTileQ, nr = std::min(kTileQ, d.T - i0);
      const int64_t bh = b * d.H + h, bkv = b * d.Hkv + h / d.G;
      const T* qb = pq + bh * d.T * d.D;
      const T* kb = pk + bkv * d.S * d.D;
      const T* vb = pv + bkv * d.S * d.D;
      std::fill(m.begin(), m.end(), ninf);
      std::fill(l.begin(), l.end(), C(0));
      std::fill(acc.begin(), acc.end(), C(0));
      // Keys past the tile's last visible one are never read.
      const int64_t jend = p.causal ? std::clamp(i0 + nr + d.off, int64_t{0}, d.S) : d.S;
      for (int64_t j0 = 0; j0 < jend; j0 += kTileK) {
        const int64_t nc = std::min(kTileK, jend - j0);
        for (int64_t r = 0; r < nr; ++r) {
          const int64_t i = i0 + r;
          C* sr = s.data() + r * kTileK;
          C mx = m[static_cast<size_t>(r)];
          for (int64_t c = 0; c < nc; ++c) {
            const int64_t j = j0 + c;
            const bool seen = (!pad || pad[b * d.S + j]) && (!p.causal || j <= i + d.off);
            sr[c] = seen ? scale * dot<C>(qb + i * d.D, kb + j * d.D, d.D) : ninf;
            mx = std::max(mx, sr[c]);
          }
          if (mx == ninf) continue;  // nothing visible yet: exp(-inf - -inf) would be NaN
          const C alpha = std::exp(m[static_cast<size_t>(r)] - mx);
          C* ar = acc.data() + r * d.D;
          C rowsum = 0;
          for (int64_t e = 0; e < d.D; ++e) ar[e] *= alpha;
          for (int64_t c = 0; c < nc; ++c) {
            const C pr = std::exp(sr[c] - mx);
            rowsum += pr;
            const T* vr = vb + (j0 + c) * d.D;
            for (int64_t e = 0; e < d.D; ++e) ar[e] += pr * static_cast<C>(vr[e]);
          }
          l[static_cast<size_t>(r)] = l[static_cast<size_t>(r)] * alpha + rowsum;
          m[static_cast<size_t>(r)] = mx;
        }
      }
      for (int64_t r = 0; r < nr; ++r) {
        const C lr = l[static_cast<size_t>(r)];
        const C inv = lr > 0 ? C(1) / lr : C(0);
        T* orow = po + (bh * d.T + i0 + r) * d.D;
        for (int64_t e = 0; e < d.D; ++e)
          orow[e] = static_cast<T>(acc[static_cast<size_t>(r * d.D + e)] * inv);
        pl[bh * d.T + i0 + r] = lr > 0 ? static_cast<L>(m[static_cast<size_t>(r)] + std::log(lr))
                                       : static_cast<L>(ninf);
      }
    }
  });
}

// Parallel over (b, kv head): the thread that owns a kv head owns its dK/dV rows and the dQ rows
// of all query heads reading it, so every accumulation is private. Inside, key tiles are the
// outer loop (dK/dV of a tile accumulate over all query heads and tiles, then are written once);
// dQ accumulates over key tiles in a per-work-item [G, T, D] buffer in compute_t.
template <typename T>
void backwardImpl(const Tensor& q, const Tensor& k, const Tensor& v, const bool* pad,
                  const AttentionParams& p, const Tensor& out, const Tensor& lse,
                  const Tensor& gout, const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  using C = compute_t<T>;
  using L = stat_t<T>;
  const Dims d = dimsOf(q, k);
  const C scale = static_cast<C>(scaleOf(p, d.D));
  const T* pq = static_cast<const T*>(q.rawData());
  const T* pk = static_cast<const T*>(k.rawData());
  const T* pv = static_cast<const T*>(v.rawData());
  const T* po = static_cast<const T*>(out.rawData());
  const T* pgo = static_cast<const T*>(gout.rawData());
  const L* pl = lse.data<L>();
  T* pgq = static_cast<T*>(gq.rawData());
  T* pgk = static_cast<T*>(gk.rawData());
  T* pgv = static_cast<T*>(gv.rawData());
  parallelFor(d.B * d.Hkv, d.G * d.T * d.S * d.D, [&](int64_t w0, int64_t w1) {
    std::vector<C> dq(static_cast<size_t>(d.G * d.T * d.D)), delta(static_cast<size_t>(d.G * d.T));
    std::vector<C> dk(kTileK * d.D), dv(kTileK * d.D);
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t b = w / d.Hkv, bkv = w;
      const int64_t bh0 = b * d.H + (w % d.Hkv) * d.G;  // first query head of the group
      std::fill(dq.begin(), dq.end(), C(0));
      for (int64_t gi = 0; gi < d.G * d.T; ++gi)
        delta[static_cast<size_t>(gi)] =
            dot<C>(pgo + (bh0 * d.T + gi) * d.D, po + (bh0 * d.T + gi) * d.D, d.D);
      for (int64_t j0 = 0; j0 < d.S; j0 += kTileK) {
        const int64_t nc = std::min(kTileK, d.S - j0);
        std::fill(dk.begin(), dk.end(), C(0));
        std::fill(dv.begin(), dv.end(), C(0));
        // Query rows that see no key of this tile are skipped.
        const int64_t istart = p.causal ? std::max(int64_t{0}, j0 - d.off) : 0;
        for (int64_t g = 0; g < d.G; ++g) {
          const int64_t bh = bh0 + g;
          for (int64_t i = istart; i < d.T; ++i) {
            const C li = static_cast<C>(pl[bh * d.T + i]);
            if (std::isinf(li)) continue;  // a row with no visible key: zero gradient
            const T* qi = pq + (bh * d.T + i) * d.D;
            const T* goi = pgo + (bh * d.T + i) * d.D;
            C* dqi = dq.data() + (g * d.T + i) * d.D;
            const C di = delta[static_cast<size_t>(g * d.T + i)];
            for (int64_t c = 0; c < nc; ++c) {
              const int64_t j = j0 + c;
              if ((pad && !pad[b * d.S + j]) || (p.causal && j > i + d.off)) continue;
              const T* kj = pk + (bkv * d.S + j) * d.D;
              const T* vj = pv + (bkv * d.S + j) * d.D;
              const C pr = std::exp(scale * dot<C>(qi, kj, d.D) - li);
              const C ds = pr * (dot<C>(goi, vj, d.D) - di) * scale;
              C* dkc = dk.data() + c * d.D;
              C* dvc = dv.data() + c * d.D;
              for (int64_t e = 0; e < d.D; ++e) {
                dvc[e] += pr * static_cast<C>(goi[e]);
                dkc[e] += ds * static_cast<C>(qi[e]);
                dqi[e] += ds * static_cast<C>(kj[e]);
              }
            }
          }
        }
        for (int64_t x = 0; x < nc * d.D; ++x) {
          pgk[(bkv * d.S + j0) * d.D + x] = static_cast<T>(dk[static_cast<size_t>(x)]);
          pgv[(bkv * d.S + j0) * d.D + x] = static_cast<T>(dv[static_cast<size_t>(x)]);
        }
      }
      for (int64_t x = 0; x < d.G * d.T * d.D; ++x)
        pgq[bh0 * d.T * d.D + x] = static_cast<T>(dq[static_cast<size_t>(x)]);
    }
  });
}

const bool* padData(const Tensor* key_padding) {
  return key_padding ? key_padding->data<bool>() : nullptr;
}

}  // namespace

void ReferenceBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor* key_padding, const AttentionParams& p,
                                 const Tensor& out, const Tensor& lse) {
  LATHE_DISPATCH_FLOAT(q.dtype(), "attention",
                       [&] { forwardImpl<scalar_t>(q, k, v, padData(key_padding), p, out, lse); });
}

void ReferenceBackend::attentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                                         const Tensor* key_padding, const AttentionParams& p,
                                         const Tensor& out, const Tensor& lse, const Tensor& gout,
                                         const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  LATHE_DISPATCH_FLOAT(q.dtype(), "attentionBackward", [&] {
    backwardImpl<scalar_t>(q, k, v, padData(key_padding), p, out, lse, gout, gq, gk, gv);
  });
}

}  // namespace lathe::cpu
