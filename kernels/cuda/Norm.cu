// Row-wise CUDA kernels: softmax / log-softmax, layer norm, RMS norm and cross-entropy over
// logits [N, C], forward and backward; statistics accumulate in f32 (f64 for f64). Layer/RMS norm
// hold rows of up to 16384 elements (8192 for f64 or rows not in 16-byte packs) in registers,
// read once; longer rows and the other ops take one block per row and read it two or three
// times (from L1/L2). Weight/bias gradients are column sums in two kernels (chunk partials,
// then the chunks in order): no atomics, deterministic results.
#include <algorithm>
#include <initializer_list>
#include <type_traits>

#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {

constexpr int kThreads = 256;

template <typename A>
__device__ A blockSum(A v, A* shared) {
  for (int s = 16; s > 0; s /= 2) v += __shfl_down_sync(0xffffffffu, v, s);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  A total = 0;
  const int nw = (blockDim.x + 31) / 32;
  for (int w = 0; w < nw; ++w) total += shared[w];
  return total;
}

template <typename A>
__device__ A blockMax(A v, A* shared) {
  for (int s = 16; s > 0; s /= 2) v = fmax(v, __shfl_down_sync(0xffffffffu, v, s));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  A m = shared[0];
  const int nw = (blockDim.x + 31) / 32;
  for (int w = 1; w < nw; ++w) m = fmax(m, shared[w]);
  return m;
}

template <typename T>
using sacc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
__global__ void softmaxKernel(const T* x, T* y, int64_t C, bool log_out) {
  using A = sacc_t<T>;
  __shared__ A sh[32];
  const T* row = x + blockIdx.x * C;
  T* out = y + blockIdx.x * C;
  A m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmax(m, static_cast<A>(load(row[c])));
  m = blockMax(m, sh);
  A s = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += exp(static_cast<A>(load(row[c])) - m);
  s = blockSum(s, sh);
  const A lse = m + log(s);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const A v = static_cast<A>(load(row[c]));
    out[c] = store<T>(log_out ? v - lse : exp(v - lse));
  }
}

template <typename T>
__global__ void softmaxBackwardKernel(const T* y, const T* gy, T* gx, int64_t C, bool log_out) {
  using A = sacc_t<T>;
  __shared__ A sh[32];
  const int64_t base = blockIdx.x * C;
  A dot = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    dot += log_out ? static_cast<A>(load(gy[base + c]))
                   : static_cast<A>(load(gy[base + c])) * static_cast<A>(load(y[base + c]));
  dot = blockSum(dot, sh);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const A yv = static_cast<A>(load(y[base + c])), g = static_cast<A>(load(gy[base + c]));
    gx[base + c] = store<T>(log_out ? g - exp(yv) * dot : yv * (g - dot));
  }
}

// Layer norm (rms = false) or RMS norm (rms = true) forward.
template <typename T, typename S>
__global__ void normKernel(const T* x, const T* w, const T* b, double eps, T* y, S* mean_out,
                           S* rstd_out, int64_t C, bool rms) {
  using A = sacc_t<T>;
  __shared__ A sh[32];
  const int64_t base = blockIdx.x * C;
  A mean = 0;
  if (!rms) {
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) mean += static_cast<A>(load(x[base + c]));
    mean = blockSum(mean, sh) / static_cast<A>(C);
  }
  A var = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const A d = static_cast<A>(load(x[base + c])) - mean;
    var += d * d;
  }
  var = blockSum(var, sh) / static_cast<A>(C);
  const A rstd = static_cast<A>(1) / sqrt(var + static_cast<A>(eps));
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    A v = (static_cast<A>(load(x[base + c])) - mean) * rstd;
    if (w) v *= static_cast<A>(load(w[c]));
    if (b) v += static_cast<A>(load(b[c]));
    y[base + c] = store<T>(v);
  }
  if (threadIdx.x == 0) {
    if (mean_out) mean_out[blockIdx.x] = static_cast<S>(mean);
    rstd_out[blockIdx.x] = static_cast<S>(rstd);
  }
}

template <typename T, typename S>
__global__ void normBackwardKernel(const T* gy, const T* x, const T* w, const S* mean_in,
                                   const S* rstd_in, T* gx, int64_t C, bool rms) {
  using A = sacc_t<T>;
  __shared__ A sh[32];
  const int64_t base = blockIdx.x * C;
  const A mean = mean_in ? static_cast<A>(mean_in[blockIdx.x]) : A(0);
  const A rstd = static_cast<A>(rstd_in[blockIdx.x]);
  A sum_g = 0, sum_gx = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    A g = static_cast<A>(load(gy[base + c]));
    if (w) g *= static_cast<A>(load(w[c]));
    const A xh = (static_cast<A>(load(x[base + c])) - mean) * rstd;
    sum_g += g;
    sum_gx += g * xh;
  }
  sum_g = rms ? A(0) : blockSum(sum_g, sh) / static_cast<A>(C);
  sum_gx = blockSum(sum_gx, sh) / static_cast<A>(C);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    A g = static_cast<A>(load(gy[base + c]));
    if (w) g *= static_cast<A>(load(w[c]));
    const A xh = (static_cast<A>(load(x[base + c])) - mean) * rstd;
    gx[base + c] = store<T>(rstd * (g - sum_g - xh * sum_gx));
  }
}

// ---- rows held in registers (layer/RMS norm, C up to kRegMaxC) ----
// A group of tpr threads (32..512, a power of two) owns one row: thread t holds packs t,
// t + tpr, ... of kW elements (kE elements in all, as stored: 16 registers for 32 bf16), so x
// (and gy) are read from memory exactly once and y (gx) written once: 2 (3) row-sized transfers,
// the minimum. Loads are 16-byte packs when the row allows (kW = 16 / sizeof(T)), else single
// elements; both are coalesced across the group. Statistics are two-pass from the registers, in
// f32 (f64 for f64), as the CPU reference computes them. tpr = 32: several rows per block and
// warp shuffles only; tpr > 32: one row per block and a shared-memory step between warps.
constexpr int kRegMaxThreads = 512;

// Sum over the row's group; every thread of the group gets the same value (same order).
template <typename A>
__device__ __forceinline__ A groupSum(A v, int tpr, A* shared) {
  for (int s = 16; s > 0; s /= 2) v += __shfl_xor_sync(0xffffffffu, v, s);
  if (tpr <= 32) return v;
  const int warp = threadIdx.x / 32;
  __syncthreads();  // earlier readers of `shared` are done
  if (threadIdx.x % 32 == 0) shared[warp] = v;
  __syncthreads();
  A total = 0;
  for (int w = 0; w < tpr / 32; ++w) total += shared[w];
  return total;
}

template <typename T, int kW, int kE>
__global__ void __launch_bounds__(kRegMaxThreads)
    normRegKernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                  double eps, T* __restrict__ y, sacc_t<T>* __restrict__ mean_out,
                  sacc_t<T>* __restrict__ rstd_out, int64_t N, int C, int tpr, bool rms) {
  using A = sacc_t<T>;
  using P = Pack<T, kW>;
  constexpr int kP = kE / kW;
  __shared__ A sh[kRegMaxThreads / 32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / tpr) + threadIdx.x / tpr;
  if (row >= N) return;  // only when tpr == 32: no block-wide barriers then
  const int t = threadIdx.x % tpr;
  const T* xr = x + row * C;
  P v[kP];
  A sum = 0;
#pragma unroll
  for (int j = 0; j < kP; ++j) {
    const int c = (t + j * tpr) * kW;
    if (c < C) {
      v[j] = *reinterpret_cast<const P*>(xr + c);
#pragma unroll
      for (int k = 0; k < kW; ++k) sum += static_cast<A>(load(v[j].v[k]));
    }
  }
  A mean = 0;
  if (!rms) mean = groupSum(sum, tpr, sh) / static_cast<A>(C);
  A sq = 0;
#pragma unroll
  for (int j = 0; j < kP; ++j) {
    if ((t + j * tpr) * kW < C) {
#pragma unroll
      for (int k = 0; k < kW; ++k) {
        const A d = static_cast<A>(load(v[j].v[k])) - mean;
        sq += d * d;
      }
    }
  }
  const A rstd = A(1) / sqrt(groupSum(sq, tpr, sh) / static_cast<A>(C) + static_cast<A>(eps));
  T* yr = y + row * C;
#pragma unroll
  for (int j = 0; j < kP; ++j) {
    const int c = (t + j * tpr) * kW;
    if (c < C) {
      P o, pw, pb;
      if (w) pw = *reinterpret_cast<const P*>(w + c);
      if (b) pb = *reinterpret_cast<const P*>(b + c);
#pragma unroll
      for (int k = 0; k < kW; ++k) {
        A r = (static_cast<A>(load(v[j].v[k])) - mean) * rstd;
        if (w) r *= static_cast<A>(load(pw.v[k]));
        if (b) r += static_cast<A>(load(pb.v[k]));
        o.v[k] = store<T>(r);
      }
      *reinterpret_cast<P*>(yr + c) = o;
    }
  }
  if (t == 0) {
    if (mean_out) mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

// gx = rstd * (d - mean(d) - xhat * mean(d * xhat)), d = gy * w (mean(d) dropped for RMS norm).
template <typename T, int kW, int kE>
__global__ void __launch_bounds__(kRegMaxThreads)
    normBackwardRegKernel(const T* __restrict__ gy, const T* __restrict__ x,
                          const T* __restrict__ w, const sacc_t<T>* __restrict__ mean_in,
                          const sacc_t<T>* __restrict__ rstd_in, T* __restrict__ gx, int64_t N,
                          int C, int tpr, bool rms) {
  using A = sacc_t<T>;
  using P = Pack<T, kW>;
  constexpr int kP = kE / kW;
  __shared__ A sh[kRegMaxThreads / 32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / tpr) + threadIdx.x / tpr;
  if (row >= N) return;  // only when tpr == 32
  const int t = threadIdx.x % tpr;
  const A mean = mean_in ? static_cast<A>(mean_in[row]) : A(0);
  const A rstd = static_cast<A>(rstd_in[row]);
  P vx[kP], vg[kP];
#pragma unroll
  for (int j = 0; j < kP; ++j) {
    const int c = (t + j * tpr) * kW;
    if (c < C) {
      vx[j] = *reinterpret_cast<const P*>(x + row * C + c);
      vg[j] = *reinterpret_cast<const P*>(gy + row * C + c);
    }
  }
  A sum_d = 0, sum_dx = 0;
#pragma unroll
  for (int j = 0; j < kP; ++j) {
    const int c = (t + j * tpr) * kW;
    if (c < C) {
      P pw;
      if (w) pw = *reinterpret_cast<const P*>(w + c);
#pragma unroll
      for (int k = 0; k < kW; ++k) {
        A d = static_cast<A>(load(vg[j].v[k]));
        if (w) d *= static_cast<A>(load(pw.v[k]));
        sum_d += d;
        sum_dx += d * ((static_cast<A>(load(vx[j].v[k])) - mean) * rstd);
      }
    }
  }
  const A mean_d = rms ? A(0) : groupSum(sum_d, tpr, sh) / static_cast<A>(C);
  const A mean_dx = groupSum(sum_dx, tpr, sh) / static_cast<A>(C);
#pragma unroll
  for (int j = 0; j < kP; ++j) {
    const int c = (t + j * tpr) * kW;
    if (c < C) {
      P pw, o;
      if (w) pw = *reinterpret_cast<const P*>(w + c);
#pragma unroll
      for (int k = 0; k < kW; ++k) {
        A d = static_cast<A>(load(vg[j].v[k]));
        if (w) d *= static_cast<A>(load(pw.v[k]));
        const A xh = (static_cast<A>(load(vx[j].v[k])) - mean) * rstd;
        o.v[k] = store<T>(rstd * (d - mean_d - xh * mean_dx));
      }
      *reinterpret_cast<P*>(gx + row * C + c) = o;
    }
  }
}

// Launch shape of the register kernels for rows of C, or ok = false (rows too long: the
// one-block-per-row kernels above take them, reading the row from L2 again).
struct RegPlan {
  bool ok = false;
  bool packed = false;  // 16-byte packs (else single elements)
  int tpr = 32, elems = 8, threads = 128;
  unsigned blocks = 1;
};

// Elements per thread at most: 32 in 16-byte packs (16 registers of bf16 x), 16 for f64 or for
// single-element loads (whose per-element addresses and masks cost registers too).
template <typename T>
constexpr int regMaxElems(bool packed) {
  return packed && sizeof(T) < 8 ? 32 : 16;
}

template <typename T>
RegPlan regPlan(int64_t N, int64_t C, std::initializer_list<const void*> ptrs) {
  RegPlan p;
  p.packed = C % kVecWidth<T> == 0;
  for (const void* q : ptrs)
    if (q && !isAligned(q, 16)) p.packed = false;
  const int max_elems = regMaxElems<T>(p.packed);
  while (static_cast<int64_t>(p.tpr) * max_elems < C && p.tpr < kRegMaxThreads) p.tpr *= 2;
  if (static_cast<int64_t>(p.tpr) * max_elems < C) return p;
  while (static_cast<int64_t>(p.tpr) * p.elems < C) p.elems *= 2;
  p.threads = p.tpr == 32 ? 128 : p.tpr;  // tpr > 32: one row per block
  const int64_t rows_per_block = p.threads / p.tpr;
  const int64_t blocks = (N + rows_per_block - 1) / rows_per_block;
  if (blocks > 0x7fffffffLL) return p;
  p.blocks = static_cast<unsigned>(blocks);
  p.ok = true;
  return p;
}

// Calls f(integral_constant kW, integral_constant kE) for the plan's template arguments.
template <typename T, typename F>
void withRegShape(const RegPlan& p, F&& f) {
  auto elems = [&](auto w) {
    switch (p.elems) {
      case 8: f(w, std::integral_constant<int, 8>{}); break;
      case 16: f(w, std::integral_constant<int, 16>{}); break;
      default:
        if constexpr (regMaxElems<T>(decltype(w)::value > 1) == 32)
          f(w, std::integral_constant<int, 32>{});
        break;
    }
  };
  if (p.packed)
    elems(std::integral_constant<int, kVecWidth<T>>{});
  else
    elems(std::integral_constant<int, 1>{});
}

// ---- weight / bias gradients: column sums over rows, in two deterministic steps ----
// Step 1: block (x: 32 threads of kW columns each, y: kColY row lanes) sums a chunk of rows for
// 32 * kW columns into one partial row; chunks are sized so the grid fills the GPU about
// 8 blocks per SM, and each lane keeps 4 rows of loads in flight. Step 2 adds the partial rows in
// chunk order. Results depend only on the SM count, never on timing.
constexpr int kColY = 8;

template <typename T, typename S, int kW>
__global__ void __launch_bounds__(32 * kColY)
    normParamPartialKernel(const T* __restrict__ gy, const T* __restrict__ x,
                           const S* __restrict__ mean_in, const S* __restrict__ rstd_in,
                           sacc_t<T>* __restrict__ part_w, sacc_t<T>* __restrict__ part_b,
                           int64_t N, int64_t C, int64_t rows_per_chunk) {
  using A = sacc_t<T>;
  using P = Pack<T, kW>;
  constexpr int kU = 4;
  __shared__ A sw[kColY][32 * kW], sb[kColY][32 * kW];
  const int64_t c0 = (static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x) * kW;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < N ? r0 + rows_per_chunk : N;
  A aw[kW], ab[kW];
#pragma unroll
  for (int k = 0; k < kW; ++k) aw[k] = ab[k] = A(0);
  auto add = [&](const P& g, const P& xv, int64_t r) {
    const A m = mean_in ? static_cast<A>(mean_in[r]) : A(0), rs = static_cast<A>(rstd_in[r]);
#pragma unroll
    for (int k = 0; k < kW; ++k) {
      const A gk = static_cast<A>(load(g.v[k]));
      aw[k] += gk * ((static_cast<A>(load(xv.v[k])) - m) * rs);
      ab[k] += gk;
    }
  };
  if (c0 < C) {
    int64_t r = r0 + threadIdx.y;
    for (; r + (kU - 1) * kColY < r1; r += kU * kColY) {
      P g[kU], xv[kU];
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        g[u] = *reinterpret_cast<const P*>(gy + (r + u * kColY) * C + c0);
        xv[u] = *reinterpret_cast<const P*>(x + (r + u * kColY) * C + c0);
      }
#pragma unroll
      for (int u = 0; u < kU; ++u) add(g[u], xv[u], r + u * kColY);
    }
    for (; r < r1; r += kColY)
      add(*reinterpret_cast<const P*>(gy + r * C + c0), *reinterpret_cast<const P*>(x + r * C + c0),
          r);
  }
#pragma unroll
  for (int k = 0; k < kW; ++k) {
    sw[threadIdx.y][threadIdx.x * kW + k] = aw[k];
    sb[threadIdx.y][threadIdx.x * kW + k] = ab[k];
  }
  __syncthreads();
  // Threads (x, y) finish columns y, y + kColY, ... of the block's 32 * kW (coalesced stores).
  for (int j = threadIdx.y * 32 + threadIdx.x; j < 32 * kW; j += 32 * kColY) {
    const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 * kW + j;
    if (c >= C) continue;
    A tw = 0, tb = 0;
    for (int yy = 0; yy < kColY; ++yy) {
      tw += sw[yy][j];
      tb += sb[yy][j];
    }
    if (part_w) part_w[blockIdx.y * C + c] = tw;
    if (part_b) part_b[blockIdx.y * C + c] = tb;
  }
}

// Block (32 columns, 32 chunk lanes): lane y adds chunks y, y + 32, ...; the lanes are then
// added in order, so the result does not depend on scheduling.
template <typename T>
__global__ void __launch_bounds__(1024)
    normParamFinishKernel(const sacc_t<T>* __restrict__ part_w,
                          const sacc_t<T>* __restrict__ part_b, int64_t chunks, int64_t C,
                          T* __restrict__ gw, T* __restrict__ gb) {
  using A = sacc_t<T>;
  __shared__ A sw[32][33], sb[32][33];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  A tw = 0, tb = 0;
  if (c < C) {
#pragma unroll 4
    for (int64_t k = threadIdx.y; k < chunks; k += 32) {
      if (part_w) tw += part_w[k * C + c];
      if (part_b) tb += part_b[k * C + c];
    }
  }
  sw[threadIdx.y][threadIdx.x] = tw;
  sb[threadIdx.y][threadIdx.x] = tb;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    tw = tb = 0;
    for (int y = 0; y < 32; ++y) {
      tw += sw[y][threadIdx.x];
      tb += sb[y][threadIdx.x];
    }
    if (gw) gw[c] = store<T>(tw);
    if (gb) gb[c] = store<T>(tb);
  }
}

// gw[c] = sum_n gy[n,c] * xhat[n,c] and gb[c] = sum_n gy[n,c], either may be null.
template <typename T, typename S>
void normParamGrads(int dev, const Tensor& gy, const Tensor& x, const S* mean, const S* rstd,
                    const Tensor* gw, const Tensor* gb, int64_t N, int64_t C) {
  using A = sacc_t<T>;
  if (!gw && !gb) return;
  cudaStream_t st = streamFor(dev);
  const T* pg = static_cast<const T*>(gy.rawData());
  const T* px = static_cast<const T*>(x.rawData());
  const bool packed = C % kVecWidth<T> == 0 && isAligned(pg, 16) && isAligned(px, 16);
  const int64_t cols_per_block = 32LL * (packed ? kVecWidth<T> : 1);
  const int64_t col_blocks = (C + cols_per_block - 1) / cols_per_block;
  const int64_t max_chunks = std::max<int64_t>(1, (N + 4 * kColY - 1) / (4 * kColY));
  const int64_t chunks = std::clamp<int64_t>((8LL * smCount(dev) + col_blocks - 1) / col_blocks, 1,
                                             std::min<int64_t>(max_chunks, 65535));
  const int64_t rows_per_chunk = (N + chunks - 1) / chunks;
  LATHE_CHECK(col_blocks <= 0x7fffffffLL, "norm backward on cuda: ", C, " columns is too many");
  Tensor part;
  {
    MemoryTagScope tag(MemoryTag::workspace);
    part = Tensor::empty({2 * chunks * C}, std::is_same_v<A, double> ? DType::f64 : DType::f32,
                         gy.device());
  }
  A* pw = gw ? static_cast<A*>(part.rawData()) : nullptr;
  A* pb = gb ? static_cast<A*>(part.rawData()) + chunks * C : nullptr;
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks));
  const dim3 block(32, kColY);
  if (packed)
    normParamPartialKernel<T, S, kVecWidth<T>>
        <<<grid, block, 0, st>>>(pg, px, mean, rstd, pw, pb, N, C, rows_per_chunk);
  else
    normParamPartialKernel<T, S, 1>
        <<<grid, block, 0, st>>>(pg, px, mean, rstd, pw, pb, N, C, rows_per_chunk);
  LATHE_CUDA_LAUNCH_CHECK();
  normParamFinishKernel<T><<<static_cast<unsigned>((C + 31) / 32), dim3(32, 32), 0, st>>>(
      pw, pb, chunks, C, gw ? static_cast<T*>(gw->rawData()) : nullptr,
      gb ? static_cast<T*>(gb->rawData()) : nullptr);
}

template <typename T, typename S>
__global__ void crossEntropyKernel(const T* logits, const int64_t* target, int64_t C,
                                   int64_t ignore_index, double smoothing, T* loss, S* lse_out) {
  using A = sacc_t<T>;
  __shared__ A sh[32];
  const int64_t base = blockIdx.x * C;
  A m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    m = fmax(m, static_cast<A>(load(logits[base + c])));
  m = blockMax(m, sh);
  A s = 0, sum_x = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const A v = static_cast<A>(load(logits[base + c]));
    s += exp(v - m);
    sum_x += v;
  }
  s = blockSum(s, sh);
  sum_x = blockSum(sum_x, sh);
  if (threadIdx.x == 0) {
    const A lse = m + log(s);
    lse_out[blockIdx.x] = static_cast<S>(lse);
    const int64_t t = target[blockIdx.x];
    if (t == ignore_index) {
      loss[blockIdx.x] = store<T>(A(0));
    } else {
      const A eps = static_cast<A>(smoothing);
      const A nll = lse - static_cast<A>(load(logits[base + t]));
      loss[blockIdx.x] = store<T>((A(1) - eps) * nll + eps * (lse - sum_x / static_cast<A>(C)));
    }
  }
}

template <typename T, typename S>
__global__ void crossEntropyBackwardKernel(const T* logits, const int64_t* target, const S* lse_in,
                                           const T* grad_loss, int64_t C, int64_t ignore_index,
                                           double smoothing, T* gx) {
  using A = sacc_t<T>;
  const int64_t row = blockIdx.x, base = row * C;
  const int64_t t = target[row];
  const bool ignored = t == ignore_index;
  const A g = ignored ? A(0) : static_cast<A>(load(grad_loss[row]));
  const A lse = static_cast<A>(lse_in[row]);
  const A eps = static_cast<A>(smoothing);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    A v = exp(static_cast<A>(load(logits[base + c])) - lse) - eps / static_cast<A>(C);
    if (c == t) v -= A(1) - eps;
    gx[base + c] = store<T>(ignored ? A(0) : g * v);
  }
}

unsigned rowThreads(int64_t C) {
  return C >= kThreads ? kThreads : (C > 64 ? 128u : 32u);
}

template <typename F>
void withStatType(DType stat, F&& f) {
  if (stat == DType::f64)
    f(static_cast<double*>(nullptr));
  else
    f(static_cast<float*>(nullptr));
}

template <typename T>
const T* ptr(const Tensor* t) {
  return t ? static_cast<const T*>(t->rawData()) : nullptr;
}

}  // namespace

void CudaBackend::softmax(const Tensor& x, const Tensor& y, bool log_out) {
  const int dev = y.device().index;
  setDevice(dev);
  const int64_t C = x.size(-1), N = x.numel() / C;
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "softmax", [&] {
    softmaxKernel<scalar_t><<<static_cast<unsigned>(N), rowThreads(C), 0, streamFor(dev)>>>(
        static_cast<const scalar_t*>(x.rawData()), static_cast<scalar_t*>(y.rawData()), C, log_out);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::softmaxBackward(const Tensor& y, const Tensor& gy, const Tensor& gx,
                                  bool log_out) {
  const int dev = gx.device().index;
  setDevice(dev);
  const int64_t C = y.size(-1), N = y.numel() / C;
  LATHE_CUDA_DISPATCH_FLOAT(y.dtype(), "softmaxBackward", [&] {
    softmaxBackwardKernel<scalar_t><<<static_cast<unsigned>(N), rowThreads(C), 0, streamFor(dev)>>>(
        static_cast<const scalar_t*>(y.rawData()), static_cast<const scalar_t*>(gy.rawData()),
        static_cast<scalar_t*>(gx.rawData()), C, log_out);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

namespace {

// Layer norm (rms = false; mean written) or RMS norm (mean null) forward over rows of x [N, C].
template <typename T, typename S>
void normForward(int dev, const Tensor& x, const Tensor* w, const Tensor* b, double eps,
                 const Tensor& y, S* mean, S* rstd, bool rms) {
  const int64_t C = x.size(-1), N = x.numel() / C;
  if (N == 0) return;
  cudaStream_t st = streamFor(dev);
  const T* px = static_cast<const T*>(x.rawData());
  const T *pw = ptr<T>(w), *pb = ptr<T>(b);
  T* py = static_cast<T*>(y.rawData());
  if constexpr (std::is_same_v<S, sacc_t<T>>) {
    const RegPlan p = regPlan<T>(N, C, {px, py, pw, pb});
    if (p.ok) {
      withRegShape<T>(p, [&](auto kw, auto ke) {
        normRegKernel<T, decltype(kw)::value, decltype(ke)::value><<<p.blocks, p.threads, 0, st>>>(
            px, pw, pb, eps, py, mean, rstd, N, static_cast<int>(C), p.tpr, rms);
      });
      return;
    }
  }
  normKernel<T, S>
      <<<static_cast<unsigned>(N), rowThreads(C), 0, st>>>(px, pw, pb, eps, py, mean, rstd, C, rms);
}

// gx of layer norm (mean given) or RMS norm (mean null), then gw / gb where asked.
template <typename T, typename S>
void normBackward(int dev, const Tensor& gy, const Tensor& x, const Tensor* w, const S* mean,
                  const S* rstd, const Tensor& gx, const Tensor* gw, const Tensor* gb, bool rms) {
  const int64_t C = x.size(-1), N = x.numel() / C;
  if (N == 0) return;
  cudaStream_t st = streamFor(dev);
  const T* pg = static_cast<const T*>(gy.rawData());
  const T* px = static_cast<const T*>(x.rawData());
  const T* pw = ptr<T>(w);
  T* pgx = static_cast<T*>(gx.rawData());
  bool done = false;
  if constexpr (std::is_same_v<S, sacc_t<T>>) {
    const RegPlan p = regPlan<T>(N, C, {pg, px, pw, pgx});
    if (p.ok) {
      withRegShape<T>(p, [&](auto kw, auto ke) {
        normBackwardRegKernel<T, decltype(kw)::value, decltype(ke)::value>
            <<<p.blocks, p.threads, 0, st>>>(pg, px, pw, mean, rstd, pgx, N, static_cast<int>(C),
                                             p.tpr, rms);
      });
      done = true;
    }
  }
  if (!done)
    normBackwardKernel<T, S>
        <<<static_cast<unsigned>(N), rowThreads(C), 0, st>>>(pg, px, pw, mean, rstd, pgx, C, rms);
  LATHE_CUDA_LAUNCH_CHECK();
  normParamGrads<T, S>(dev, gy, x, mean, rstd, gw, gb, N, C);
}

}  // namespace

void CudaBackend::layerNorm(const Tensor& x, const Tensor* w, const Tensor* b, double eps,
                            const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  const int dev = y.device().index;
  setDevice(dev);
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "layerNorm", [&] {
    withStatType(rstd.dtype(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      normForward<scalar_t, S>(dev, x, w, b, eps, y, static_cast<S*>(mean.rawData()),
                               static_cast<S*>(rstd.rawData()), false);
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::layerNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                    const Tensor& mean, const Tensor& rstd, const Tensor& gx,
                                    const Tensor* gw, const Tensor* gb) {
  const int dev = gx.device().index;
  setDevice(dev);
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "layerNormBackward", [&] {
    withStatType(rstd.dtype(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      normBackward<scalar_t, S>(dev, gy, x, w, static_cast<const S*>(mean.rawData()),
                                static_cast<const S*>(rstd.rawData()), gx, gw, gb, false);
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::rmsNorm(const Tensor& x, const Tensor* w, double eps, const Tensor& y,
                          const Tensor& rstd) {
  const int dev = y.device().index;
  setDevice(dev);
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "rmsNorm", [&] {
    withStatType(rstd.dtype(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      normForward<scalar_t, S>(dev, x, w, nullptr, eps, y, static_cast<S*>(nullptr),
                               static_cast<S*>(rstd.rawData()), true);
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::rmsNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                  const Tensor& rstd, const Tensor& gx, const Tensor* gw) {
  const int dev = gx.device().index;
  setDevice(dev);
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "rmsNormBackward", [&] {
    withStatType(rstd.dtype(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      normBackward<scalar_t, S>(dev, gy, x, w, static_cast<const S*>(nullptr),
                                static_cast<const S*>(rstd.rawData()), gx, gw, nullptr, true);
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::crossEntropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                               double label_smoothing, const Tensor& loss, const Tensor& lse) {
  const int dev = loss.device().index;
  setDevice(dev);
  LATHE_CHECK(target.dtype() == DType::i64, "crossEntropy on cuda: targets must be i64, got ",
              describe(target));
  const int64_t C = logits.size(-1), N = logits.numel() / C;
  LATHE_CUDA_DISPATCH_FLOAT(logits.dtype(), "crossEntropy", [&] {
    using T = scalar_t;
    withStatType(lse.dtype(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      crossEntropyKernel<T, S><<<static_cast<unsigned>(N), rowThreads(C), 0, streamFor(dev)>>>(
          static_cast<const T*>(logits.rawData()), static_cast<const int64_t*>(target.rawData()), C,
          ignore_index, label_smoothing, static_cast<T*>(loss.rawData()),
          static_cast<S*>(lse.rawData()));
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::crossEntropyBackward(const Tensor& logits, const Tensor& target,
                                       const Tensor& lse, const Tensor& grad_loss,
                                       int64_t ignore_index, double label_smoothing,
                                       const Tensor& gx) {
  const int dev = gx.device().index;
  setDevice(dev);
  const int64_t C = logits.size(-1), N = logits.numel() / C;
  LATHE_CUDA_DISPATCH_FLOAT(logits.dtype(), "crossEntropyBackward", [&] {
    using T = scalar_t;
    withStatType(lse.dtype(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      crossEntropyBackwardKernel<T, S>
          <<<static_cast<unsigned>(N), rowThreads(C), 0, streamFor(dev)>>>(
              static_cast<const T*>(logits.rawData()),
              static_cast<const int64_t*>(target.rawData()), static_cast<const S*>(lse.rawData()),
              static_cast<const T*>(grad_loss.rawData()), C, ignore_index, label_smoothing,
              static_cast<T*>(gx.rawData()));
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

}  // namespace lathe::cuda
