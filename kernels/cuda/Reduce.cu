// Reductions on CUDA: one block per output element; threads stride over the reduced sub-block
// (kept and reduced dims each packed with their input strides), then a warp-shuffle tree.
// Accumulation: f32 for f32/f16/bf16, f64 for f64, i64 for integers.
#include <cfloat>
#include <type_traits>

#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {

template <typename T>
using racc_t = std::conditional_t<std::is_integral_v<T>, int64_t, acc_t<T>>;

struct Packed {
  StridedArgs<1> kept, red;
  int64_t outputs = 1, count = 1;
};

Packed pack(const Tensor& x, const std::vector<int>& dims) {
  Shape ks, kst, rs, rst;
  for (int d = 0; d < x.dim(); ++d) {
    const bool r = std::find(dims.begin(), dims.end(), d) != dims.end();
    (r ? rs : ks).push_back(x.shape()[static_cast<size_t>(d)]);
    (r ? rst : kst).push_back(x.strides()[static_cast<size_t>(d)]);
  }
  Packed p;
  // Kept dims must not be coalesced away from the output's row-major order: packStrided keeps
  // row-major order, so linear output index i maps to the same element.
  const Shape* k1[1] = {&kst};
  const Shape* r1[1] = {&rst};
  p.kept = packStrided<1>(ks, k1);
  p.red = packStrided<1>(rs, r1);
  p.outputs = shapeNumel(ks);
  p.count = shapeNumel(rs);
  return p;
}

template <typename A>
__device__ __forceinline__ A combine(ReduceOp op, A a, A b) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::mean: return a + b;
    case ReduceOp::max: return (a != a || a > b) ? a : b;  // NaN wins
    case ReduceOp::min: return (a != a || a < b) ? a : b;
  }
  return a;
}

template <typename A>
__device__ A identity(ReduceOp op) {
  if (op == ReduceOp::max) return std::is_integral_v<A> ? A(INT64_MIN) : A(-INFINITY);
  if (op == ReduceOp::min) return std::is_integral_v<A> ? A(INT64_MAX) : A(INFINITY);
  return A(0);
}

template <typename T>
__global__ void reduceKernel(ReduceOp op, const T* x, T* out, Packed p) {
  using A = racc_t<T>;
  __shared__ A partial[32];
  for (int64_t o = blockIdx.x; o < p.outputs; o += gridDim.x) {
    int64_t base[1];
    stridedOffsets(p.kept, o, base);
    A acc = identity<A>(op);
    for (int64_t r = threadIdx.x; r < p.count; r += blockDim.x) {
      int64_t off[1];
      stridedOffsets(p.red, r, off);
      acc = combine(op, acc, static_cast<A>(load(x[base[0] + off[0]])));
    }
    for (int s = 16; s > 0; s /= 2)
      acc = combine(op, acc, static_cast<A>(__shfl_down_sync(0xffffffffu, acc, s)));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) partial[warp] = acc;
    __syncthreads();
    if (warp == 0) {
      const int nw = (blockDim.x + 31) / 32;
      acc = lane < nw ? partial[lane] : identity<A>(op);
      for (int s = 16; s > 0; s /= 2)
        acc = combine(op, acc, static_cast<A>(__shfl_down_sync(0xffffffffu, acc, s)));
      if (lane == 0) {
        if (op == ReduceOp::mean) acc = acc / static_cast<A>(p.count);
        out[o] = store<T>(acc);
      }
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void argKernel(bool is_max, const T* x, int64_t* out, Packed p) {
  using A = racc_t<T>;
  __shared__ A best_v[32];
  __shared__ int64_t best_i[32];
  for (int64_t o = blockIdx.x; o < p.outputs; o += gridDim.x) {
    int64_t base[1];
    stridedOffsets(p.kept, o, base);
    A bv = 0;
    int64_t bi = -1;
    for (int64_t r = threadIdx.x; r < p.count; r += blockDim.x) {
      int64_t off[1];
      stridedOffsets(p.red, r, off);
      const A v = static_cast<A>(load(x[base[0] + off[0]]));
      const bool better = bi < 0 || (bv == bv && (v != v || (is_max ? v > bv : v < bv)));
      if (better) {
        bv = v;
        bi = r;
      }
    }
    // Ties and NaN: the first index wins, as on the CPU.
    for (int s = 16; s > 0; s /= 2) {
      const A ov = __shfl_down_sync(0xffffffffu, bv, s);
      const int64_t oi = __shfl_down_sync(0xffffffffu, bi, s);
      if (oi >= 0 &&
          (bi < 0 ||
           (bv == bv && (ov != ov || (is_max ? ov > bv : ov < bv) || (ov == bv && oi < bi))) ||
           (bv != bv && ov != ov && oi < bi))) {
        bv = ov;
        bi = oi;
      }
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
      best_v[warp] = bv;
      best_i[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      const int nw = (blockDim.x + 31) / 32;
      A v0 = best_v[0];
      int64_t i0 = best_i[0];
      for (int w = 1; w < nw; ++w) {
        const A ov = best_v[w];
        const int64_t oi = best_i[w];
        if (oi < 0) continue;
        if (i0 < 0 ||
            (v0 == v0 && (ov != ov || (is_max ? ov > v0 : ov < v0) || (ov == v0 && oi < i0))) ||
            (v0 != v0 && ov != ov && oi < i0)) {
          v0 = ov;
          i0 = oi;
        }
      }
      out[o] = i0;
    }
    __syncthreads();
  }
}

unsigned threadsFor(int64_t count) {
  return count >= 256 ? 256u : 32u;
}
unsigned gridFor(int64_t outputs) {
  return static_cast<unsigned>(std::min<int64_t>(outputs, 65535LL * 16));
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims,
                         const Tensor& out) {
  const int dev = out.device().index;
  setDevice(dev);
  const Packed p = pack(x, dims);
  LATHE_CUDA_DISPATCH_ALL(x.dtype(), "reduce", [&] {
    using T = scalar_t;
    if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, __nv_fp8_e4m3> ||
                  std::is_same_v<T, __nv_fp8_e5m2>) {
      fail("reduce on cuda: dtype ", dtypeName(x.dtype()), " is not supported");
    } else {
      reduceKernel<T><<<gridFor(p.outputs), threadsFor(p.count), 0, streamFor(dev)>>>(
          op, static_cast<const T*>(x.rawData()), static_cast<T*>(out.rawData()), p);
    }
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::argReduce(bool is_max, const Tensor& x, int dim, const Tensor& out) {
  const int dev = out.device().index;
  setDevice(dev);
  const Packed p = pack(x, {dim});
  LATHE_CUDA_DISPATCH_ALL(x.dtype(), "argReduce", [&] {
    using T = scalar_t;
    if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, __nv_fp8_e4m3> ||
                  std::is_same_v<T, __nv_fp8_e5m2>) {
      fail("argmax/argmin on cuda: dtype ", dtypeName(x.dtype()), " is not supported");
    } else {
      argKernel<T><<<gridFor(p.outputs), threadsFor(p.count), 0, streamFor(dev)>>>(
          is_max, static_cast<const T*>(x.rawData()), static_cast<int64_t*>(out.rawData()), p);
    }
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

}  // namespace lathe::cuda
