// Fused attention on CUDA, flash style (never a [T, S] matrix): q [B, H, T, D], k/v
// [B, Hkv, S, D], GQA (head h reads kv head h / (H / Hkv)), causal aligned at the end (key j
// visible to query i iff j <= i + S - T, as on the CPU), optional key padding [B, S].
// This first version uses CUDA cores: a warp owns one query row (forward, dQ) or one key row
// (dK, dV); K/V (or Q/dO) tiles are staged in shared memory for the 4 warps of a block; online
// softmax in f32 (f64 for f64). Rows with no visible key give 0 and lse = -inf.
// f16/bf16 go first to a fused path: cuDNN's SDPA graphs (CudnnAttention.h; the default when
// built with the cuDNN frontend) or our tensor-core kernel (FlashAttention.h); LATHE_ATTENTION=
// own|cudnn picks which is tried first (own: cuDNN is never used). What both decline lands here.
#include <type_traits>

#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"
#include "kernels/cuda/CudnnAttention.h"
#include "kernels/cuda/FlashAttention.h"

namespace lathe::cuda {
namespace {

constexpr int kWarps = 4;   // rows per block
constexpr int kTile = 32;   // keys (or queries) staged per shared-memory tile
constexpr int kMaxD = 256;  // head dims up to this; D/32 values per lane
constexpr int kPerLane = kMaxD / 32;

template <typename T>
using aacc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

struct Dims {
  int64_t B, H, Hkv, T, S, D;
  double scale;
  bool causal;
};

__host__ __device__ __forceinline__ int64_t imin(int64_t a, int64_t b) {
  return a < b ? a : b;
}
__host__ __device__ __forceinline__ int64_t imax(int64_t a, int64_t b) {
  return a > b ? a : b;
}

template <typename A>
__device__ __forceinline__ A warpSum(A v) {
  for (int s = 16; s > 0; s /= 2) v += __shfl_xor_sync(0xffffffffu, v, s);
  return v;
}

__device__ __forceinline__ bool visible(const Dims& d, const bool* pad, int64_t b, int64_t i,
                                        int64_t j) {
  if (d.causal && j > i + d.S - d.T) return false;
  return pad == nullptr || pad[b * d.S + j];
}

// grid: (ceil(T / kWarps), B * H); block: 32 * kWarps.
template <typename T, typename L>
__global__ void attnForward(const T* q, const T* k, const T* v, const bool* pad, T* out, L* lse,
                            Dims d) {
  using A = aacc_t<T>;
  extern __shared__ unsigned char smem_raw[];
  A* ks = reinterpret_cast<A*>(smem_raw);  // [kTile][D]
  A* vs = ks + kTile * d.D;                // [kTile][D]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / d.H, h = bh % d.H, hk = h / (d.H / d.Hkv);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool active = i < d.T;
  const T* qrow = q + ((b * d.H + h) * d.T + (active ? i : 0)) * d.D;
  const T* kb = k + (b * d.Hkv + hk) * d.S * d.D;
  const T* vb = v + (b * d.Hkv + hk) * d.S * d.D;
  A qv[kPerLane], acc[kPerLane];
  for (int r = 0; r < kPerLane; ++r) {
    const int64_t c = lane + 32 * r;
    qv[r] = (active && c < d.D) ? static_cast<A>(load(qrow[c])) * static_cast<A>(d.scale) : A(0);
    acc[r] = 0;
  }
  A m = -INFINITY, l = 0;
  // Keys beyond the last visible one for this block's rows are skipped.
  int64_t s_end = d.S;
  if (d.causal) {
    const int64_t last_row = imin(static_cast<int64_t>(blockIdx.x) * kWarps + kWarps - 1, d.T - 1);
    s_end = imin(d.S, last_row + d.S - d.T + 1);
  }
  for (int64_t j0 = 0; j0 < s_end; j0 += kTile) {
    const int64_t n = imin(kTile, s_end - j0);
    __syncthreads();
    for (int64_t e = threadIdx.x; e < n * d.D; e += blockDim.x) {
      ks[e] = static_cast<A>(load(kb[j0 * d.D + e]));
      vs[e] = static_cast<A>(load(vb[j0 * d.D + e]));
    }
    __syncthreads();
    if (!active) continue;
    for (int64_t jj = 0; jj < n; ++jj) {
      const int64_t j = j0 + jj;
      if (!visible(d, pad, b, i, j)) continue;
      A part = 0;
      for (int r = 0; r < kPerLane; ++r) {
        const int64_t c = lane + 32 * r;
        if (c < d.D) part += qv[r] * ks[jj * d.D + c];
      }
      const A s = warpSum(part);
      const A m_new = s > m ? s : m;
      const A corr = exp(m - m_new), p = exp(s - m_new);
      l = l * corr + p;
      for (int r = 0; r < kPerLane; ++r) {
        const int64_t c = lane + 32 * r;
        if (c < d.D) acc[r] = acc[r] * corr + p * vs[jj * d.D + c];
      }
      m = m_new;
    }
  }
  if (!active) return;
  T* orow = out + ((b * d.H + h) * d.T + i) * d.D;
  for (int r = 0; r < kPerLane; ++r) {
    const int64_t c = lane + 32 * r;
    if (c < d.D) orow[c] = store<T>(l > A(0) ? acc[r] / l : A(0));
  }
  if (lane == 0) lse[(b * d.H + h) * d.T + i] = static_cast<L>(l > A(0) ? m + log(l) : -INFINITY);
}

// delta[row] = sum_c dO * O; one warp per row.
template <typename T, typename L>
__global__ void attnDelta(const T* out, const T* gout, L* delta, int64_t rows, int64_t D) {
  using A = aacc_t<T>;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  A part = 0;
  for (int64_t c = lane; c < D; c += 32)
    part += static_cast<A>(load(out[row * D + c])) * static_cast<A>(load(gout[row * D + c]));
  part = warpSum(part);
  if (lane == 0) delta[row] = static_cast<L>(part);
}

// dQ: a warp per query row, looping over key tiles.
template <typename T, typename L>
__global__ void attnBackwardQ(const T* q, const T* k, const T* v, const bool* pad, const T* gout,
                              const L* lse, const L* delta, T* gq, Dims d) {
  using A = aacc_t<T>;
  extern __shared__ unsigned char smem_raw[];
  A* ks = reinterpret_cast<A*>(smem_raw);
  A* vs = ks + kTile * d.D;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / d.H, h = bh % d.H, hk = h / (d.H / d.Hkv);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool active = i < d.T;
  const int64_t row = (b * d.H + h) * d.T + (active ? i : 0);
  const A row_lse = active ? static_cast<A>(lse[row]) : A(0);
  const bool live = active && row_lse > -INFINITY;
  const A row_delta = active ? static_cast<A>(delta[row]) : A(0);
  const T* kb = k + (b * d.Hkv + hk) * d.S * d.D;
  const T* vb = v + (b * d.Hkv + hk) * d.S * d.D;
  A qv[kPerLane], go[kPerLane], dq[kPerLane];
  for (int r = 0; r < kPerLane; ++r) {
    const int64_t c = lane + 32 * r;
    qv[r] = (active && c < d.D) ? static_cast<A>(load(q[row * d.D + c])) * static_cast<A>(d.scale)
                                : A(0);
    go[r] = (active && c < d.D) ? static_cast<A>(load(gout[row * d.D + c])) : A(0);
    dq[r] = 0;
  }
  for (int64_t j0 = 0; j0 < d.S; j0 += kTile) {
    const int64_t n = imin(kTile, d.S - j0);
    __syncthreads();
    for (int64_t e = threadIdx.x; e < n * d.D; e += blockDim.x) {
      ks[e] = static_cast<A>(load(kb[j0 * d.D + e]));
      vs[e] = static_cast<A>(load(vb[j0 * d.D + e]));
    }
    __syncthreads();
    if (!live) continue;
    for (int64_t jj = 0; jj < n; ++jj) {
      if (!visible(d, pad, b, i, j0 + jj)) continue;
      A s_part = 0, dp_part = 0;
      for (int r = 0; r < kPerLane; ++r) {
        const int64_t c = lane + 32 * r;
        if (c < d.D) {
          s_part += qv[r] * ks[jj * d.D + c];
          dp_part += go[r] * vs[jj * d.D + c];
        }
      }
      const A p = exp(warpSum(s_part) - row_lse);
      const A ds = p * (warpSum(dp_part) - row_delta);
      for (int r = 0; r < kPerLane; ++r) {
        const int64_t c = lane + 32 * r;
        if (c < d.D) dq[r] += ds * ks[jj * d.D + c];
      }
    }
  }
  if (!active) return;
  for (int r = 0; r < kPerLane; ++r) {
    const int64_t c = lane + 32 * r;
    if (c < d.D) gq[row * d.D + c] = store<T>(dq[r] * static_cast<A>(d.scale));
  }
}

// dK, dV: a warp per key row of one kv head, looping over the query heads of its group and
// over query tiles.
template <typename T, typename L>
__global__ void attnBackwardKV(const T* q, const T* k, const T* v, const bool* pad, const T* gout,
                               const L* lse, const L* delta, T* gk, T* gv, Dims d) {
  using A = aacc_t<T>;
  extern __shared__ unsigned char smem_raw[];
  A* qs = reinterpret_cast<A*>(smem_raw);  // [kTile][D] (pre-scaled)
  A* gs = qs + kTile * d.D;                // [kTile][D]
  __shared__ A ls[kTile], ds_[kTile];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bhk = blockIdx.y, b = bhk / d.Hkv, hk = bhk % d.Hkv;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool active = j < d.S && (pad == nullptr || pad[b * d.S + j]);
  const int64_t krow = (b * d.Hkv + hk) * d.S + (j < d.S ? j : 0);
  A kv[kPerLane], vv[kPerLane], dk[kPerLane], dv[kPerLane];
  for (int r = 0; r < kPerLane; ++r) {
    const int64_t c = lane + 32 * r;
    kv[r] = (j < d.S && c < d.D) ? static_cast<A>(load(k[krow * d.D + c])) : A(0);
    vv[r] = (j < d.S && c < d.D) ? static_cast<A>(load(v[krow * d.D + c])) : A(0);
    dk[r] = dv[r] = 0;
  }
  const int64_t group = d.H / d.Hkv;
  // Queries before the first one that can see this block's first key are skipped.
  int64_t i_begin = 0;
  if (d.causal) i_begin = imax(0, static_cast<int64_t>(blockIdx.x) * kWarps - (d.S - d.T));
  for (int64_t g = 0; g < group; ++g) {
    const int64_t h = hk * group + g;
    const int64_t qbase = (b * d.H + h) * d.T;
    for (int64_t i0 = i_begin; i0 < d.T; i0 += kTile) {
      const int64_t n = imin(kTile, d.T - i0);
      __syncthreads();
      for (int64_t e = threadIdx.x; e < n * d.D; e += blockDim.x) {
        qs[e] = static_cast<A>(load(q[(qbase + i0) * d.D + e])) * static_cast<A>(d.scale);
        gs[e] = static_cast<A>(load(gout[(qbase + i0) * d.D + e]));
      }
      for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
        ls[e] = static_cast<A>(lse[qbase + i0 + e]);
        ds_[e] = static_cast<A>(delta[qbase + i0 + e]);
      }
      __syncthreads();
      if (!active) continue;
      for (int64_t ii = 0; ii < n; ++ii) {
        const int64_t i = i0 + ii;
        if (d.causal && j > i + d.S - d.T) continue;
        if (!(ls[ii] > -INFINITY)) continue;
        A s_part = 0, dp_part = 0;
        for (int r = 0; r < kPerLane; ++r) {
          const int64_t c = lane + 32 * r;
          if (c < d.D) {
            s_part += qs[ii * d.D + c] * kv[r];
            dp_part += gs[ii * d.D + c] * vv[r];
          }
        }
        const A p = exp(warpSum(s_part) - ls[ii]);
        const A ds = p * (warpSum(dp_part) - ds_[ii]);
        for (int r = 0; r < kPerLane; ++r) {
          const int64_t c = lane + 32 * r;
          if (c < d.D) {
            dv[r] += p * gs[ii * d.D + c];
            dk[r] += ds * qs[ii * d.D + c];  // qs is pre-scaled, so this is ds * q * scale
          }
        }
      }
    }
  }
  if (j >= d.S) return;
  for (int r = 0; r < kPerLane; ++r) {
    const int64_t c = lane + 32 * r;
    if (c < d.D) {
      gk[krow * d.D + c] = store<T>(dk[r]);
      gv[krow * d.D + c] = store<T>(dv[r]);
    }
  }
}

Dims dimsOf(const Tensor& q, const Tensor& k, const AttentionParams& p) {
  Dims d{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3), p.scale, p.causal};
  if (d.scale == 0.0) d.scale = 1.0 / std::sqrt(static_cast<double>(d.D));
  LATHE_CHECK(d.D <= kMaxD, "attention on cuda: head dim ", d.D, " is above the supported ", kMaxD);
  return d;
}

template <typename T>
size_t smemBytes(const Dims& d) {
  return 2 * kTile * static_cast<size_t>(d.D) * sizeof(aacc_t<T>);
}

const bool* padPtr(const Tensor* key_padding) {
  return key_padding ? static_cast<const bool*>(key_padding->rawData()) : nullptr;
}

template <typename F>
void withLse(DType t, F&& f) {
  if (t == DType::f64)
    f(static_cast<double*>(nullptr));
  else
    f(static_cast<float*>(nullptr));
}

}  // namespace

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                            const Tensor& lse) {
  if (preferredAttentionPath() == AttentionPath::cudnn &&
      cudnnAttentionForward(q, k, v, key_padding, p, out, lse))
    return;
  if (flashAttentionForward(q, k, v, key_padding, p, out, lse)) return;  // tensor cores
  const int dev = out.device().index;
  setDevice(dev);
  const Dims d = dimsOf(q, k, p);
  if (d.T == 0) return;
  const dim3 grid(static_cast<unsigned>((d.T + kWarps - 1) / kWarps),
                  static_cast<unsigned>(d.B * d.H));
  LATHE_CUDA_DISPATCH_FLOAT(q.dtype(), "attention", [&] {
    using T = scalar_t;
    withLse(lse.dtype(), [&](auto* tag) {
      using L = std::remove_pointer_t<decltype(tag)>;
      const size_t smem = smemBytes<T>(d);
      LATHE_CUDA_CHECK(cudaFuncSetAttribute(
          attnForward<T, L>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
      attnForward<T, L><<<grid, 32 * kWarps, smem, streamFor(dev)>>>(
          static_cast<const T*>(q.rawData()), static_cast<const T*>(k.rawData()),
          static_cast<const T*>(v.rawData()), padPtr(key_padding), static_cast<T*>(out.rawData()),
          static_cast<L*>(lse.rawData()), d);
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::attentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor* key_padding, const AttentionParams& p,
                                    const Tensor& out, const Tensor& lse, const Tensor& gout,
                                    const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  // The same choice as the forward (same case, same LATHE_ATTENTION); either path's lse is the
  // natural-log log-sum-exp of the scaled scores, so the two could even be mixed.
  if (preferredAttentionPath() == AttentionPath::cudnn &&
      cudnnAttentionBackward(q, k, v, key_padding, p, out, lse, gout, gq, gk, gv))
    return;
  if (flashAttentionBackward(q, k, v, key_padding, p, out, lse, gout, gq, gk, gv)) return;
  const int dev = gq.device().index;
  setDevice(dev);
  const Dims d = dimsOf(q, k, p);
  const int64_t rows = d.B * d.H * d.T;
  Tensor delta = Tensor::empty({rows}, lse.dtype(), q.device());
  LATHE_CUDA_DISPATCH_FLOAT(q.dtype(), "attentionBackward", [&] {
    using T = scalar_t;
    withLse(lse.dtype(), [&](auto* tag) {
      using L = std::remove_pointer_t<decltype(tag)>;
      const size_t smem = smemBytes<T>(d);
      cudaStream_t st = streamFor(dev);
      if (rows > 0)
        attnDelta<T, L>
            <<<static_cast<unsigned>((rows + kWarps - 1) / kWarps), 32 * kWarps, 0, st>>>(
                static_cast<const T*>(out.rawData()), static_cast<const T*>(gout.rawData()),
                static_cast<L*>(delta.rawData()), rows, d.D);
      LATHE_CUDA_CHECK(cudaFuncSetAttribute(attnBackwardQ<T, L>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
      LATHE_CUDA_CHECK(cudaFuncSetAttribute(attnBackwardKV<T, L>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
      if (d.T > 0)
        attnBackwardQ<T, L><<<dim3(static_cast<unsigned>((d.T + kWarps - 1) / kWarps),
                                   static_cast<unsigned>(d.B * d.H)),
                              32 * kWarps, smem, st>>>(
            static_cast<const T*>(q.rawData()), static_cast<const T*>(k.rawData()),
            static_cast<const T*>(v.rawData()), padPtr(key_padding),
            static_cast<const T*>(gout.rawData()), static_cast<const L*>(lse.rawData()),
            static_cast<const L*>(delta.rawData()), static_cast<T*>(gq.rawData()), d);
      if (d.S > 0)
        attnBackwardKV<T, L><<<dim3(static_cast<unsigned>((d.S + kWarps - 1) / kWarps),
                                    static_cast<unsigned>(d.B * d.Hkv)),
                               32 * kWarps, smem, st>>>(
            static_cast<const T*>(q.rawData()), static_cast<const T*>(k.rawData()),
            static_cast<const T*>(v.rawData()), padPtr(key_padding),
            static_cast<const T*>(gout.rawData()), static_cast<const L*>(lse.rawData()),
            static_cast<const L*>(delta.rawData()), static_cast<T*>(gk.rawData()),
            static_cast<T*>(gv.rawData()), d);
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

}  // namespace lathe::cuda
