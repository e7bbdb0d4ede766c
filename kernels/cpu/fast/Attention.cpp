// Fast f32 fused attention for the CPU backend: the algorithm of reference/Attention.cpp (tiles
// of queries and keys, online softmax, lse saved per row, backward recomputing probabilities
// from q, k and lse; same masking rules) with every tile product done by one register-blocked
// micro-kernel on GCC/Clang vector types, compiled for AVX-512 and for AVX2+FMA and chosen at run
// time. Other dtypes, and CPUs without AVX2+FMA, use the reference kernels.
//
// Tile products are C (+)= A * B with A read by scalar broadcast through two strides (so P^T and
// dS^T need no transposed copy) and B row-major with rows padded to whole vectors. The forward
// packs Q^T once per query tile and reads K (and V when D is a multiple of 16) in place; the
// backward packs K^T, V^T and K once per key tile and copies Q and dO rows per tile pair.
// Scratch is O(tile) per thread: under 10 tiles of 128 x round_up(D, 16) floats.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/CpuBackend.h"
#include "kernels/cpu/fast/VecMath.h"

namespace lathe::cpu {
namespace {

constexpr int64_t kBq = 128;  // query rows per forward tile
constexpr int64_t kBr = 64;   // query rows per backward tile
constexpr int64_t kBc = 64;   // keys per tile (a multiple of every vector width)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ---- vectors (W floats) and the micro-kernel ----

template <int W>
struct Vec {
  typedef float type __attribute__((vector_size(4 * W)));
};
template <int W>
using vf = typename Vec<W>::type;

// Vectors are passed by reference only: by value they change the ABI between ISAs (-Wpsabi).
template <int W>
[[gnu::always_inline]] inline void loadu(vf<W>& v, const float* p) {
  std::memcpy(&v, p, sizeof v);
}
template <int W>
[[gnu::always_inline]] inline void storeu(float* p, const vf<W>& v) {
  std::memcpy(p, &v, sizeof v);
}

// C[m, n] (+)= A[m, k] B[k, n]. A(r, x) = a[r * a_row + x * a_inner]; B is row-major with ldb
// and round_up(n, W) readable columns; C is row-major with ldc, and when c_padded its rows also
// take round_up(n, W) columns (scratch), otherwise exactly n are written (an output tensor).
struct Gemm {
  int64_t m, n, k;
  const float* a;
  int64_t a_row, a_inner;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  bool accumulate, c_padded;
};

// Register blocking per width: R rows x NV vectors of accumulators, plus NV loads and one
// broadcast, fit the register file (32 zmm for W = 16, 16 ymm for W = 8).
template <int W>
struct Blocking;
template <>
struct Blocking<16> {
  static constexpr int R = 6, NV = 4;
};
template <>
struct Blocking<8> {
  static constexpr int R = 6, NV = 2;
};

// One R x (NV * W) block of C at (i0, j0) with `cols` valid columns. Each element is one chain of
// fused multiply-adds over x in order, so a score comes out the same whichever block (or which
// of S and S^T) computes it: the backward's recomputed probabilities match the forward's.
template <int W, int R, int NV>
[[gnu::always_inline]] inline void microKernel(const Gemm& g, int64_t i0, int64_t j0,
                                               int64_t cols) {
  vf<W> acc[R][NV];
  const bool full = g.c_padded || cols == NV * W;
  alignas(64) float tmp[NV * W];
  for (int r = 0; r < R; ++r) {
    float* crow = g.c + (i0 + r) * g.ldc + j0;
    if (!g.accumulate) {
      for (int v = 0; v < NV; ++v) acc[r][v] = vf<W>{};
    } else if (full) {
      for (int v = 0; v < NV; ++v) loadu<W>(acc[r][v], crow + v * W);
    } else {
      std::fill(tmp, tmp + NV * W, 0.0f);
      std::memcpy(tmp, crow, static_cast<size_t>(cols) * sizeof(float));
      for (int v = 0; v < NV; ++v) loadu<W>(acc[r][v], tmp + v * W);
    }
  }
  const float* a = g.a + i0 * g.a_row;
  const float* b = g.b + j0;
  for (int64_t x = 0; x < g.k; ++x) {
    vf<W> bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) loadu<W>(bv[v], b + x * g.ldb + v * W);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const float s = a[r * g.a_row + x * g.a_inner];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] += s * bv[v];
    }
  }
  for (int r = 0; r < R; ++r) {
    float* crow = g.c + (i0 + r) * g.ldc + j0;
    if (full) {
      for (int v = 0; v < NV; ++v) storeu<W>(crow + v * W, acc[r][v]);
    } else {
      for (int v = 0; v < NV; ++v) storeu<W>(tmp + v * W, acc[r][v]);
      std::memcpy(crow, tmp, static_cast<size_t>(cols) * sizeof(float));
    }
  }
}

template <int W, int R, int NV>
[[gnu::always_inline]] inline void withVectors(const Gemm& g, int64_t i0, int64_t j0, int64_t cols,
                                               int nv) {
  if (nv == NV) {
    microKernel<W, R, NV>(g, i0, j0, cols);
  } else if constexpr (NV > 1) {
    withVectors<W, R, NV - 1>(g, i0, j0, cols, nv);
  }
}

template <int W, int R>
[[gnu::always_inline]] inline void withRows(const Gemm& g, int64_t i0, int64_t j0, int64_t cols,
                                            int rows, int nv) {
  if (rows == R) {
    withVectors<W, R, Blocking<W>::NV>(g, i0, j0, cols, nv);
  } else if constexpr (R > 1) {
    withRows<W, R - 1>(g, i0, j0, cols, rows, nv);
  }
}

// Column blocks outside, row blocks inside: the k x (NV * W) panel of B stays in L1 while every
// row block of A streams past it.
template <int W>
[[gnu::always_inline]] inline void gemmImpl(const Gemm& g) {
  constexpr int R = Blocking<W>::R, NV = Blocking<W>::NV;
  for (int64_t j0 = 0; j0 < g.n; j0 += NV * W) {
    const int64_t cols = std::min<int64_t>(NV * W, g.n - j0);
    const int nv = static_cast<int>((cols + W - 1) / W);
    for (int64_t i0 = 0; i0 < g.m; i0 += R) {
      const int rows = static_cast<int>(std::min<int64_t>(R, g.m - i0));
      withRows<W, R>(g, i0, j0, cols, rows, nv);
    }
  }
}

// ---- problem description and scratch ----

struct Problem {
  int64_t B, H, Hkv, T, S, D, G, off, Dv;  // G = H / Hkv; off = S - T; Dv = D padded to 16
  float scale;
  bool causal;
  const bool* pad;  // [B, S] or null
  const float *q, *k, *v, *out, *gout, *lse_in;
  float *o, *lse, *gq, *gk, *gv;
};

Problem problemOf(const Tensor& q, const Tensor& k, const Tensor* key_padding,
                  const AttentionParams& p) {
  Problem pr{};
  pr.B = q.shape()[0];
  pr.H = q.shape()[1];
  pr.T = q.shape()[2];
  pr.D = q.shape()[3];
  pr.Hkv = k.shape()[1];
  pr.S = k.shape()[2];
  pr.G = pr.H / pr.Hkv;
  pr.off = pr.S - pr.T;
  pr.Dv = (pr.D + 15) / 16 * 16;
  pr.scale =
      static_cast<float>(p.scale != 0.0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(pr.D)));
  pr.causal = p.causal;
  pr.pad = key_padding ? key_padding->data<bool>() : nullptr;
  pr.q = q.data<float>();
  pr.k = k.data<float>();
  return pr;
}

// Rows [row0, row0 + n) of src ([*, D]) transposed into dst [D, ld]; columns past n are zeroed
// so that a stale non-finite value cannot reach a masked score.
void packTransposed(const float* src, int64_t row0, int64_t n, int64_t D, int64_t ld, float* dst) {
  for (int64_t c = 0; c < n; ++c)
    for (int64_t e = 0; e < D; ++e) dst[e * ld + c] = src[(row0 + c) * D + e];
  if (n < ld)
    for (int64_t e = 0; e < D; ++e) std::fill(dst + e * ld + n, dst + (e + 1) * ld, 0.0f);
}
void packRows(const float* src, int64_t row0, int64_t nrows, int64_t D, int64_t Dv, float* dst) {
  for (int64_t r = 0; r < nrows; ++r)
    std::memcpy(dst + r * Dv, src + (row0 + r) * D, static_cast<size_t>(D) * sizeof(float));
}

// 0 for keys of the tile that may be attended, -inf for padded keys and columns past nc.
void columnBias(const Problem& pr, int64_t b, int64_t j0, int64_t nc, float* bias) {
  for (int64_t c = 0; c < kBc; ++c)
    bias[c] = (c < nc && (!pr.pad || pr.pad[b * pr.S + j0 + c])) ? 0.0f : kNegInf;
}

// Columns of the tile query row i may see under the causal rule (all kBc without it).
int64_t causalLimit(const Problem& pr, int64_t i, int64_t j0) {
  return pr.causal ? std::clamp(i + pr.off + 1 - j0, int64_t{0}, kBc) : kBc;
}

struct ForwardScratch {
  std::vector<float> qt, vp, st, acc, m, l, mnew, msafe, alpha;
  explicit ForwardScratch(const Problem& pr)
      : qt(static_cast<size_t>(pr.D * kBq)),
        vp(static_cast<size_t>(kBc * pr.Dv)),
        st(static_cast<size_t>(kBc * kBq)),
        acc(static_cast<size_t>(kBq * pr.Dv)),
        m(kBq),
        l(kBq),
        mnew(kBq),
        msafe(kBq),
        alpha(kBq) {}
};

struct BackwardScratch {
  std::vector<float> kt, vt, kp, qp, dop, s, dp, dk, dv, delta, bias;
  explicit BackwardScratch(const Problem& pr)
      : kt(static_cast<size_t>(pr.D * kBc)),
        vt(static_cast<size_t>(pr.D * kBc)),
        kp(static_cast<size_t>(kBc * pr.Dv)),
        qp(static_cast<size_t>(kBr * pr.Dv)),
        dop(static_cast<size_t>(kBr * pr.Dv)),
        s(static_cast<size_t>(kBr * kBc)),
        dp(static_cast<size_t>(kBr * kBc)),
        dk(static_cast<size_t>(kBc * pr.Dv)),
        dv(static_cast<size_t>(kBc * pr.Dv)),
        delta(kBr),
        bias(kBc) {}
};

// ---- forward: one (b, h, query tile), scores kept transposed ----
//
// The tile computes S^T = K Q^T (keys as rows, the tile's queries as columns), so the online
// softmax runs down the columns: running max, sum and rescale factors of the kBq queries are
// vectors and no horizontal reduction is needed. Q^T is packed once per tile, K is read in place,
// and V too when D is a whole number of vectors.

template <int W>
void gemm(const Gemm& g);  // one out-of-line instance per ISA (below)

template <int W>
[[gnu::always_inline]] inline void forwardTileImpl(const Problem& pr, ForwardScratch& w, int64_t b,
                                                   int64_t h, int64_t i0) {
  const int64_t nr = std::min(kBq, pr.T - i0), D = pr.D, Dv = pr.Dv;
  const int64_t bh = b * pr.H + h, bkv = b * pr.Hkv + h / pr.G;
  const float* kb = pr.k + bkv * pr.S * D;
  const float* vb = pr.v + bkv * pr.S * D;
  float *st = w.st.data(), *acc = w.acc.data(), *m = w.m.data(), *l = w.l.data();
  float *mnew = w.mnew.data(), *msafe = w.msafe.data(), *alpha = w.alpha.data();
  packTransposed(pr.q, bh * pr.T + i0, nr, D, kBq, w.qt.data());
  std::fill(w.m.begin(), w.m.end(), kNegInf);
  std::fill(w.l.begin(), w.l.end(), 0.0f);
  std::fill(w.acc.begin(), w.acc.end(), 0.0f);
  const float scale = pr.scale;
  const int64_t jend = pr.causal ? std::clamp(i0 + nr + pr.off, int64_t{0}, pr.S) : pr.S;
  for (int64_t j0 = 0; j0 < jend; j0 += kBc) {
    const int64_t nc = std::min(kBc, jend - j0);
    gemm<W>({nc, kBq, D, kb + j0 * D, D, 1, w.qt.data(), kBq, st, kBq, false, true});
    std::copy(m, m + kBq, mnew);
    for (int64_t c = 0; c < nc; ++c) {
      float* sc = st + c * kBq;
      if (pr.pad && !pr.pad[b * pr.S + j0 + c]) {
        std::fill(sc, sc + kBq, kNegInf);
        continue;
      }
      // Queries before `first` do not see key j0 + c under the causal rule.
      const int64_t first = pr.causal ? std::clamp(j0 + c - pr.off - i0, int64_t{0}, kBq) : 0;
#pragma omp simd
      for (int64_t r = 0; r < kBq; ++r) {
        sc[r] = r >= first ? sc[r] * scale : kNegInf;
        mnew[r] = sc[r] > mnew[r] ? sc[r] : mnew[r];
      }
    }
    // A query that has seen no key yet keeps m = -inf; exp against 0 instead gives p = 0, not NaN.
#pragma omp simd
    for (int64_t r = 0; r < kBq; ++r) {
      msafe[r] = mnew[r] == kNegInf ? 0.0f : mnew[r];
      alpha[r] = expApprox(m[r] - msafe[r]);
      l[r] *= alpha[r];
      m[r] = mnew[r];
    }
    for (int64_t c = 0; c < nc; ++c) {
      float* sc = st + c * kBq;
#pragma omp simd
      for (int64_t r = 0; r < kBq; ++r) {
        sc[r] = expApprox(sc[r] - msafe[r]);
        l[r] += sc[r];
      }
    }
    for (int64_t r = 0; r < nr; ++r) {
      float* ar = acc + r * Dv;
      const float a = alpha[r];
#pragma omp simd
      for (int64_t e = 0; e < Dv; ++e) ar[e] *= a;
    }
    const float* vtile = vb + j0 * D;
    if (D != Dv) {
      packRows(vb, j0, nc, D, Dv, w.vp.data());
      vtile = w.vp.data();
    }
    gemm<W>({nr, Dv, nc, st, 1, kBq, vtile, Dv, acc, Dv, true, true});
  }
  for (int64_t r = 0; r < nr; ++r) {
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    float* orow = pr.o + (bh * pr.T + i0 + r) * D;
    const float* ar = acc + r * Dv;
#pragma omp simd
    for (int64_t e = 0; e < D; ++e) orow[e] = ar[e] * inv;
    pr.lse[bh * pr.T + i0 + r] = l[r] > 0.0f ? m[r] + std::log(l[r]) : kNegInf;
  }
}

// ---- backward: one (b, kv head), owning its dK/dV rows and the dQ rows of its query heads ----

template <int W>
[[gnu::always_inline]] inline void backwardItemImpl(const Problem& pr, BackwardScratch& w,
                                                    int64_t b, int64_t hk) {
  const int64_t D = pr.D, Dv = pr.Dv, bkv = b * pr.Hkv + hk, bh0 = b * pr.H + hk * pr.G;
  const float* kb = pr.k + bkv * pr.S * D;
  const float* vb = pr.v + bkv * pr.S * D;
  std::fill(pr.gq + bh0 * pr.T * D, pr.gq + (bh0 + pr.G) * pr.T * D, 0.0f);
  float *s = w.s.data(), *dp = w.dp.data(), *delta = w.delta.data();
  for (int64_t j0 = 0; j0 < pr.S; j0 += kBc) {
    const int64_t nc = std::min(kBc, pr.S - j0);
    packTransposed(kb, j0, nc, D, kBc, w.kt.data());
    packTransposed(vb, j0, nc, D, kBc, w.vt.data());
    packRows(kb, j0, nc, D, Dv, w.kp.data());
    columnBias(pr, b, j0, nc, w.bias.data());
    std::fill(w.dk.begin(), w.dk.end(), 0.0f);
    std::fill(w.dv.begin(), w.dv.end(), 0.0f);
    // Query rows before istart see no key of this tile.
    const int64_t istart = pr.causal ? std::max(int64_t{0}, j0 - pr.off) : 0;
    for (int64_t bh = bh0; bh < bh0 + pr.G; ++bh) {
      for (int64_t i0 = istart; i0 < pr.T; i0 += kBr) {
        const int64_t nr = std::min(kBr, pr.T - i0), row0 = bh * pr.T + i0;
        const float* qrows = pr.q + row0 * D;
        const float* gorows = pr.gout + row0 * D;
        packRows(pr.q, row0, nr, D, Dv, w.qp.data());
        packRows(pr.gout, row0, nr, D, Dv, w.dop.data());
        for (int64_t r = 0; r < nr; ++r) {
          const float* go = gorows + r * D;
          const float* o = pr.out + (row0 + r) * D;
          float dsum = 0.0f;
#pragma omp simd reduction(+ : dsum)
          for (int64_t e = 0; e < D; ++e) dsum += go[e] * o[e];
          delta[r] = dsum;
        }
        // P = exp(scale * q k^T - lse), the forward's probabilities (see microKernel).
        gemm<W>({nr, kBc, D, qrows, D, 1, w.kt.data(), kBc, s, kBc, false, true});
        for (int64_t r = 0; r < nr; ++r) {
          float* sr = s + r * kBc;
          const float lse = pr.lse_in[row0 + r];
          if (lse == kNegInf) {  // a row with no visible key
            std::fill(sr, sr + kBc, 0.0f);
            continue;
          }
          const float* bias = w.bias.data();
          const int64_t lim = causalLimit(pr, i0 + r, j0);
          const float scale = pr.scale;
#pragma omp simd
          for (int64_t c = 0; c < kBc; ++c)
            sr[c] = c < lim ? expApprox(sr[c] * scale + bias[c] - lse) : 0.0f;
        }
        // dV += P^T dO; dP = dO V^T; dS = scale * P * (dP - delta); dK += dS^T Q; dQ += dS K.
        gemm<W>({nc, Dv, nr, s, 1, kBc, w.dop.data(), Dv, w.dv.data(), Dv, true, true});
        gemm<W>({nr, kBc, D, gorows, D, 1, w.vt.data(), kBc, dp, kBc, false, true});
        for (int64_t r = 0; r < nr; ++r) {
          const float* prow = s + r * kBc;
          float* dr = dp + r * kBc;
          const float dl = delta[r], scale = pr.scale;
#pragma omp simd
          for (int64_t c = 0; c < kBc; ++c) dr[c] = scale * prow[c] * (dr[c] - dl);
        }
        gemm<W>({nc, Dv, nr, dp, 1, kBc, w.qp.data(), Dv, w.dk.data(), Dv, true, true});
        gemm<W>({nr, D, nc, dp, kBc, 1, w.kp.data(), Dv, pr.gq + row0 * D, D, true, false});
      }
    }
    for (int64_t c = 0; c < nc; ++c) {
      std::memcpy(pr.gk + (bkv * pr.S + j0 + c) * D, w.dk.data() + c * Dv,
                  static_cast<size_t>(D) * sizeof(float));
      std::memcpy(pr.gv + (bkv * pr.S + j0 + c) * D, w.dv.data() + c * Dv,
                  static_cast<size_t>(D) * sizeof(float));
    }
  }
}

// ---- per-ISA entry points (each a separate function compiled for its ISA) ----

#define LATHE_ATTENTION_ISA(W, TARGET)                                                        \
  template <>                                                                                 \
  __attribute__((target(TARGET))) void gemm<W>(const Gemm& g) {                               \
    gemmImpl<W>(g);                                                                           \
  }                                                                                           \
  __attribute__((target(TARGET))) void forwardTile##W(const Problem& pr, ForwardScratch& w,   \
                                                      int64_t b, int64_t h, int64_t i0) {     \
    forwardTileImpl<W>(pr, w, b, h, i0);                                                      \
  }                                                                                           \
  __attribute__((target(TARGET))) void backwardItem##W(const Problem& pr, BackwardScratch& w, \
                                                       int64_t b, int64_t hk) {               \
    backwardItemImpl<W>(pr, w, b, hk);                                                        \
  }

LATHE_ATTENTION_ISA(16, "avx512f,avx2,fma")
LATHE_ATTENTION_ISA(8, "avx2,fma")
#undef LATHE_ATTENTION_ISA

using ForwardFn = void (*)(const Problem&, ForwardScratch&, int64_t, int64_t, int64_t);
using BackwardFn = void (*)(const Problem&, BackwardScratch&, int64_t, int64_t);

// The widest vector ISA this CPU runs (0: neither AVX2+FMA nor AVX-512).
int vectorWidth() {
  static const int width = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 16;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 8;
    return 0;
  }();
  return width;
}

bool useFastPath(const Tensor& q) {
  return q.dtype() == DType::f32 && vectorWidth() != 0;
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                           const Tensor& lse) {
  if (!useFastPath(q)) return ReferenceBackend::attention(q, k, v, key_padding, p, out, lse);
  Problem pr = problemOf(q, k, key_padding, p);
  pr.v = v.data<float>();
  pr.o = out.data<float>();
  pr.lse = lse.data<float>();
  const ForwardFn fn = vectorWidth() == 16 ? forwardTile16 : forwardTile8;
  const int64_t tiles = (pr.T + kBq - 1) / kBq, items = pr.B * pr.H * tiles;
  // Dynamic: with causal masking the later query tiles see more keys.
#pragma omp parallel if (items > 1)
  {
    ForwardScratch w(pr);
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < items; ++it)
      fn(pr, w, it / (pr.H * tiles), (it / tiles) % pr.H, (it % tiles) * kBq);
  }
}

void CpuBackend::attentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor* key_padding, const AttentionParams& p,
                                   const Tensor& out, const Tensor& lse, const Tensor& gout,
                                   const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  if (!useFastPath(q))
    return ReferenceBackend::attentionBackward(q, k, v, key_padding, p, out, lse, gout, gq, gk, gv);
  Problem pr = problemOf(q, k, key_padding, p);
  pr.v = v.data<float>();
  pr.out = out.data<float>();
  pr.lse_in = lse.data<float>();
  pr.gout = gout.data<float>();
  pr.gq = gq.data<float>();
  pr.gk = gk.data<float>();
  pr.gv = gv.data<float>();
  const BackwardFn fn = vectorWidth() == 16 ? backwardItem16 : backwardItem8;
  const int64_t items = pr.B * pr.Hkv;
#pragma omp parallel if (items > 1)
  {
    BackwardScratch w(pr);
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < items; ++it) fn(pr, w, it / pr.Hkv, it % pr.Hkv);
  }
}

}  // namespace lathe::cpu
