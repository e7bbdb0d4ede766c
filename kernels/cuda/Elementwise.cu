// Elementwise CUDA kernels: strided copy/convert, fill, arange, unary, binary (broadcast through
// strides), where, triangle. Unary and binary ops over a contiguous output whose inputs share its
// layout or broadcast a row, column or scalar over it take the flat path (16-byte packs, a grid
// of one resident wave, 64-bit indices); others walk coalesced dims with per-operand strides.
// Math runs in f32 for the 16-bit types, f64 for f64, and f64 for integers (as the CPU does).
#include <algorithm>
#include <type_traits>

#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {

template <typename T>
using calc_t = std::conditional_t<std::is_integral_v<T>, double, acc_t<T>>;

template <typename C>
__device__ __forceinline__ C sigmoidOf(C x) {
  return C(1) / (C(1) + exp(-x));
}

template <typename C>
__device__ __forceinline__ C applyUnary(UnaryOp op, C x, C a, C b) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return exp(x);
    case UnaryOp::log: return log(x);
    case UnaryOp::sqrt: return sqrt(x);
    case UnaryOp::rsqrt: return C(1) / sqrt(x);
    case UnaryOp::abs: return x < C(0) ? -x : x;
    case UnaryOp::sign: return C((x > C(0)) - (x < C(0)));
    case UnaryOp::reciprocal: return C(1) / x;
    case UnaryOp::square: return x * x;
    case UnaryOp::relu: return x > C(0) ? x : C(0);
    case UnaryOp::gelu: return C(0.5) * x * (C(1) + erf(x * C(0.7071067811865476)));
    case UnaryOp::gelu_tanh: {
      const C k = C(0.7978845608028654);
      return C(0.5) * x * (C(1) + tanh(k * (x + C(0.044715) * x * x * x)));
    }
    case UnaryOp::silu: return x * sigmoidOf(x);
    case UnaryOp::sigmoid: return sigmoidOf(x);
    case UnaryOp::tanh: return tanh(x);
    case UnaryOp::sin: return sin(x);
    case UnaryOp::cos: return cos(x);
    case UnaryOp::add_scalar: return x + a;
    case UnaryOp::mul_scalar: return x * a;
    case UnaryOp::rsub_scalar: return a - x;
    case UnaryOp::rdiv_scalar: return a / x;
    case UnaryOp::pow_scalar: return pow(x, a);
    case UnaryOp::clamp: return isnan(x) ? x : (x < a ? a : (x > b ? b : x));
    case UnaryOp::affine: return x * a + b;
  }
  return x;
}

template <typename C>
__device__ __forceinline__ C applyBinary(BinaryOp op, C x, C y) {
  switch (op) {
    case BinaryOp::add: return x + y;
    case BinaryOp::sub: return x - y;
    case BinaryOp::mul: return x * y;
    case BinaryOp::div: return x / y;
    case BinaryOp::pow: return pow(x, y);
    case BinaryOp::maximum: return (isnan(x) || x > y) ? x : y;
    case BinaryOp::minimum: return (isnan(x) || x < y) ? x : y;
    case BinaryOp::eq: return x == y;
    case BinaryOp::ne: return x != y;
    case BinaryOp::lt: return x < y;
    case BinaryOp::le: return x <= y;
    case BinaryOp::gt: return x > y;
    case BinaryOp::ge: return x >= y;
    case BinaryOp::relu_bw: return y > C(0) ? x : C(0);
    case BinaryOp::gelu_bw: {
      const C cdf = C(0.5) * (C(1) + erf(y * C(0.7071067811865476)));
      const C pdf = exp(C(-0.5) * y * y) * C(0.3989422804014327);
      return x * (cdf + y * pdf);
    }
    case BinaryOp::gelu_tanh_bw: {
      const C k = C(0.7978845608028654), c = C(0.044715);
      const C t = tanh(k * (y + c * y * y * y));
      const C dinner = k * (C(1) + C(3) * c * y * y);
      return x * (C(0.5) * (C(1) + t) + C(0.5) * y * (C(1) - t * t) * dinner);
    }
    case BinaryOp::silu_bw: {
      const C s = sigmoidOf(y);
      return x * s * (C(1) + y * (C(1) - s));
    }
    case BinaryOp::sigmoid_bw: return x * y * (C(1) - y);
    case BinaryOp::tanh_bw: return x * (C(1) - y * y);
  }
  return x;
}

// ---- flat fast path ----
// The output is contiguous and every input either has the output's layout (full) or is a
// broadcast of a contiguous row vector (bias), column vector or scalar over it. Output element
// e of n is computed in packs of kN elements (16 bytes for the hot float types): a scalar head
// until the output pointer is aligned, the body in packs, a scalar tail. Full inputs whose
// alignment disagrees with the output's make the whole op scalar (still coalesced).
// Bytes in flight: the all-full kernels (the common case: same shapes) issue kUnroll = 4 packs
// per input per thread before any math, 2 x 4 x 16 = 128 bytes for a binary op, against the
// ~30 KB per SM that HBM3e needs at its latency; they take compile-time ops, so the loop has no
// switch. Costly math (sin, pow, erf) unrolls once; broadcasts and the rarer dtypes take a
// run-time op, one pack (or four elements) per thread, to bound the code size of this file.
constexpr int kFlatThreads = 256;

enum class Feed : uint8_t {
  full,     // in[e]
  row_vec,  // in[e % C], whole packs (C a multiple of the pack width, everything aligned)
  row,      // in[e % C], element by element
  col,      // in[e / C]
  scalar,   // in[0]
};

template <typename T, int K>
struct Flat {
  const T* in[K];
  Feed feed[K];
  int64_t n = 0;         // output elements
  int64_t C = 1;         // row length, for row and col feeds
  int64_t head = 0;      // scalar elements before the first pack (n when nothing is packed)
  bool all_full = true;  // every feed is Feed::full
};

// Row q = e / C and column r = e % C of output element e, 32-bit where it fits; out of line (a
// 64-bit division is long code) and only in the broadcast kernels.
struct RowCol {
  int64_t q = 0, r = 0;
};
__device__ __noinline__ RowCol rowCol(int64_t e, int64_t C) {
  if (((e | C) >> 32) == 0) {
    const uint32_t q32 = static_cast<uint32_t>(e) / static_cast<uint32_t>(C);
    return {q32, static_cast<uint32_t>(e) - q32 * static_cast<uint32_t>(C)};
  }
  const int64_t q = e / C;
  return {q, e - q * C};
}

template <bool kFull, typename T, int K>
__device__ __forceinline__ T elementAt(const Flat<T, K>& f, int k, int64_t e) {
  const T* p = f.in[k];
  if constexpr (!kFull) {
    switch (f.feed[k]) {
      case Feed::full: break;
      case Feed::row_vec:
      case Feed::row: return p[rowCol(e, f.C).r];
      case Feed::col: return p[rowCol(e, f.C).q];
      case Feed::scalar: return p[0];
    }
  }
  return p[e];
}

// Pack v of the body: output elements e .. e + kN - 1, e = head + v * kN.
template <bool kFull, int kN, typename T, int K>
__device__ __forceinline__ Pack<T, kN> packAt(const Flat<T, K>& f, int k, int64_t v) {
  using P = Pack<T, kN>;
  const T* p = f.in[k];
  if constexpr (!kFull) {
    P out;
    if (f.feed[k] == Feed::scalar) {
      const T s = p[0];
#pragma unroll
      for (int j = 0; j < kN; ++j) out.v[j] = s;
      return out;
    }
    if (f.feed[k] != Feed::full) {
      const RowCol rc = rowCol(f.head + v * kN, f.C);
      if (f.feed[k] == Feed::row_vec) return *reinterpret_cast<const P*>(p + rc.r);
      int64_t q = rc.q, r = rc.r;
#pragma unroll
      for (int j = 0; j < kN; ++j) {
        out.v[j] = f.feed[k] == Feed::row ? p[r] : p[q];
        if (++r == f.C) {
          r = 0;
          ++q;
        }
      }
      return out;
    }
  }
  return reinterpret_cast<const P*>(p + f.head)[v];
}

template <typename T, int K, typename F>
__device__ __forceinline__ auto applyFn(const F& fn, const T (&v)[K]) {
  using C = calc_t<T>;
  if constexpr (K == 1)
    return fn(static_cast<C>(load(v[0])));
  else
    return fn(static_cast<C>(load(v[0])), static_cast<C>(load(v[1])));
}

template <typename T, typename O, int K, int kN, int kUnroll, bool kFull, typename F>
__global__ void __launch_bounds__(kFlatThreads)
    flatKernel(F fn, Flat<T, K> f, O* __restrict__ out) {
  using PO = Pack<O, kN>;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t nv = (f.n - f.head) / kN;
  const int64_t body_end = f.head + nv * kN;
  auto scalarAt = [&](int64_t e) {
    T v[K];
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = elementAt<kFull>(f, k, e);
    out[e] = store<O>(applyFn<T, K>(fn, v));
  };
  for (int64_t e = tid; e < f.head; e += nthreads) scalarAt(e);
  for (int64_t e = body_end + tid; e < f.n; e += nthreads) scalarAt(e);

  PO* __restrict__ body = reinterpret_cast<PO*>(out + f.head);
  const int64_t chunk = static_cast<int64_t>(blockDim.x) * kUnroll;
  for (int64_t v0 = static_cast<int64_t>(blockIdx.x) * chunk + threadIdx.x; v0 < nv;
       v0 += static_cast<int64_t>(gridDim.x) * chunk) {
    Pack<T, kN> in[kUnroll][K];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + static_cast<int64_t>(u) * blockDim.x;
      if (v < nv) {
#pragma unroll
        for (int k = 0; k < K; ++k) in[u][k] = packAt<kFull, kN>(f, k, v);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + static_cast<int64_t>(u) * blockDim.x;
      if (v < nv) {
        PO r;
#pragma unroll
        for (int j = 0; j < kN; ++j) {
          T x[K];
#pragma unroll
          for (int k = 0; k < K; ++k) x[k] = in[u][k].v[j];
          r.v[j] = store<O>(applyFn<T, K>(fn, x));
        }
        body[v] = r;
      }
    }
  }
}

// The flat plan for out = fn(ins...) in packs of `width`, or false when the layout needs the
// strided kernels. `s` is the coalesced layout (operand 0 the output).
template <typename T, typename O, int K>
bool planFlat(const StridedArgs<K + 1>& s, int64_t n, const O* out, const T* const (&in)[K],
              int64_t width, Flat<T, K>& f) {
  f.n = n;
  f.C = 1;
  if (s.ndim > 2) return false;
  if (s.ndim == 2) {
    f.C = s.size[1];
    if (s.stride[0][0] != f.C || s.stride[0][1] != 1) return false;
  } else if (s.ndim == 1 && s.stride[0][0] != 1) {
    return false;
  }
  for (int k = 0; k < K; ++k) {
    f.in[k] = in[k];
    const int64_t* st = s.stride[k + 1];
    if (s.ndim == 0 || (s.ndim == 1 && st[0] == 1) || (s.ndim == 2 && st[0] == f.C && st[1] == 1))
      f.feed[k] = Feed::full;
    else if ((s.ndim == 1 && st[0] == 0) || (s.ndim == 2 && st[0] == 0 && st[1] == 0))
      f.feed[k] = Feed::scalar;
    else if (s.ndim == 2 && st[0] == 0 && st[1] == 1)
      f.feed[k] = Feed::row;
    else if (s.ndim == 2 && st[0] == 1 && st[1] == 0)
      f.feed[k] = Feed::col;
    else
      return false;
  }
  // Packs start where the output is aligned; full inputs must be aligned there too.
  const int64_t phase = static_cast<int64_t>(reinterpret_cast<uintptr_t>(out) / sizeof(O)) % width;
  f.head = std::min(n, (width - phase) % width);
  bool packed = isAligned(out, sizeof(O));
  f.all_full = true;
  for (int k = 0; k < K; ++k) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(in[k]) + f.head * sizeof(T);
    const bool at = addr % (width * sizeof(T)) == 0;
    if (f.feed[k] == Feed::full && !at) packed = false;
    if (f.feed[k] == Feed::row && f.head == 0 && at && f.C % width == 0) f.feed[k] = Feed::row_vec;
    if (f.feed[k] != Feed::full) f.all_full = false;
  }
  if (!packed) f.head = n;
  return true;
}

template <int kN, int kUnroll, bool kFull, typename T, typename O, int K, typename F>
void launchFlat(int dev, cudaStream_t st, const F& fn, const Flat<T, K>& f, O* out) {
  const int64_t packs = (f.n - f.head) / kN;
  const int64_t scalars = f.n - packs * kN;
  const int64_t per_block = static_cast<int64_t>(kFlatThreads) * kUnroll;
  const int64_t wanted =
      std::max((packs + per_block - 1) / per_block, (scalars + kFlatThreads - 1) / kFlatThreads);
  const unsigned grid =
      residentGrid<flatKernel<T, O, K, kN, kUnroll, kFull, F>>(dev, kFlatThreads, wanted);
  flatKernel<T, O, K, kN, kUnroll, kFull, F><<<grid, kFlatThreads, 0, st>>>(fn, f, out);
}

// Op functors: compile-time ops (the hot float types, so each kernel's loop has no switch) and
// run-time ops (everything else).
template <UnaryOp kOp, typename C>
struct UnaryFixed {
  C a, b;
  __device__ __forceinline__ C operator()(C x) const { return applyUnary<C>(kOp, x, a, b); }
};
template <typename C>
struct UnaryAny {
  UnaryOp op;
  C a, b;
  __device__ __forceinline__ C operator()(C x) const { return applyUnary<C>(op, x, a, b); }
};
template <BinaryOp kOp>
struct BinaryFixed {
  template <typename C>
  __device__ __forceinline__ C operator()(C x, C y) const {
    return applyBinary<C>(kOp, x, y);
  }
};
struct BinaryAny {
  BinaryOp op;
  template <typename C>
  __device__ __forceinline__ C operator()(C x, C y) const {
    return applyBinary<C>(op, x, y);
  }
};

// Ops whose math is a handful of instructions (4 packs in flight per thread); the rest are
// compute-heavy enough that one pack per thread keeps up, and would bloat the code 4-fold.
constexpr bool isCheap(UnaryOp op) {
  return !(op == UnaryOp::gelu || op == UnaryOp::gelu_tanh || op == UnaryOp::sin ||
           op == UnaryOp::cos || op == UnaryOp::pow_scalar);
}
constexpr bool isCheap(BinaryOp op) {
  return !(op == BinaryOp::pow || op == BinaryOp::gelu_bw || op == BinaryOp::gelu_tanh_bw ||
           op == BinaryOp::silu_bw);
}

template <typename T>
inline constexpr bool kFixedOps =
    std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

#define LATHE_OP_CASE(E, name) \
  case E::name: f(std::integral_constant<E, E::name>{}); break;

// Calls f(std::integral_constant<UnaryOp, op>{}).
template <typename F>
void withUnaryOp(UnaryOp op, F&& f) {
  switch (op) {
    LATHE_OP_CASE(UnaryOp, neg)
    LATHE_OP_CASE(UnaryOp, exp)
    LATHE_OP_CASE(UnaryOp, log)
    LATHE_OP_CASE(UnaryOp, sqrt)
    LATHE_OP_CASE(UnaryOp, rsqrt)
    LATHE_OP_CASE(UnaryOp, abs)
    LATHE_OP_CASE(UnaryOp, sign)
    LATHE_OP_CASE(UnaryOp, reciprocal)
    LATHE_OP_CASE(UnaryOp, square)
    LATHE_OP_CASE(UnaryOp, relu)
    LATHE_OP_CASE(UnaryOp, gelu)
    LATHE_OP_CASE(UnaryOp, gelu_tanh)
    LATHE_OP_CASE(UnaryOp, silu)
    LATHE_OP_CASE(UnaryOp, sigmoid)
    LATHE_OP_CASE(UnaryOp, tanh)
    LATHE_OP_CASE(UnaryOp, sin)
    LATHE_OP_CASE(UnaryOp, cos)
    LATHE_OP_CASE(UnaryOp, add_scalar)
    LATHE_OP_CASE(UnaryOp, mul_scalar)
    LATHE_OP_CASE(UnaryOp, rsub_scalar)
    LATHE_OP_CASE(UnaryOp, rdiv_scalar)
    LATHE_OP_CASE(UnaryOp, pow_scalar)
    LATHE_OP_CASE(UnaryOp, clamp)
    LATHE_OP_CASE(UnaryOp, affine)
  }
}

// Calls f(std::integral_constant<BinaryOp, op>{}).
template <typename F>
void withBinaryOp(BinaryOp op, F&& f) {
  switch (op) {
    LATHE_OP_CASE(BinaryOp, add)
    LATHE_OP_CASE(BinaryOp, sub)
    LATHE_OP_CASE(BinaryOp, mul)
    LATHE_OP_CASE(BinaryOp, div)
    LATHE_OP_CASE(BinaryOp, pow)
    LATHE_OP_CASE(BinaryOp, maximum)
    LATHE_OP_CASE(BinaryOp, minimum)
    LATHE_OP_CASE(BinaryOp, eq)
    LATHE_OP_CASE(BinaryOp, ne)
    LATHE_OP_CASE(BinaryOp, lt)
    LATHE_OP_CASE(BinaryOp, le)
    LATHE_OP_CASE(BinaryOp, gt)
    LATHE_OP_CASE(BinaryOp, ge)
    LATHE_OP_CASE(BinaryOp, relu_bw)
    LATHE_OP_CASE(BinaryOp, gelu_bw)
    LATHE_OP_CASE(BinaryOp, gelu_tanh_bw)
    LATHE_OP_CASE(BinaryOp, silu_bw)
    LATHE_OP_CASE(BinaryOp, sigmoid_bw)
    LATHE_OP_CASE(BinaryOp, tanh_bw)
  }
}
#undef LATHE_OP_CASE

template <typename T>
__global__ void unaryStrided(UnaryOp op, const T* x, T* out, int64_t n, StridedArgs<2> s,
                             calc_t<T> a, calc_t<T> b) {
  using C = calc_t<T>;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t off[2];
    stridedOffsets(s, i, off);
    out[off[0]] = store<T>(applyUnary<C>(op, static_cast<C>(load(x[off[1]])), a, b));
  }
}

template <typename T, typename O>
__global__ void binaryStrided(BinaryOp op, const T* x, const T* y, O* out, int64_t n,
                              StridedArgs<3> s) {
  using C = calc_t<T>;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t off[3];
    stridedOffsets(s, i, off);
    out[off[0]] = store<O>(
        applyBinary<C>(op, static_cast<C>(load(x[off[1]])), static_cast<C>(load(y[off[2]]))));
  }
}

template <typename S, typename D>
__global__ void copyStrided(const S* src, D* dst, int64_t n, StridedArgs<2> s) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t off[2];
    stridedOffsets(s, i, off);
    if constexpr (std::is_same_v<S, D>) {
      dst[off[0]] = src[off[1]];
    } else if constexpr (std::is_integral_v<S> && std::is_integral_v<D>) {
      dst[off[0]] = static_cast<D>(src[off[1]]);
    } else {
      dst[off[0]] = store<D>(static_cast<double>(load(src[off[1]])));
    }
  }
}

template <typename T>
__global__ void fillStrided(T* dst, T v, int64_t n, StridedArgs<1> s) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t off[1];
    stridedOffsets(s, i, off);
    dst[off[0]] = v;
  }
}

template <typename T>
__global__ void arangeKernel(T* dst, int64_t n, double start, double step) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = store<T>(start + static_cast<double>(i) * step);
}

template <typename T>
__global__ void whereStrided(const bool* c, const T* x, const T* y, T* out, int64_t n,
                             StridedArgs<4> s) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t off[4];
    stridedOffsets(s, i, off);
    out[off[0]] = c[off[1]] ? x[off[2]] : y[off[3]];
  }
}

template <typename T>
__global__ void triangleKernel(const T* x, T* out, int64_t n, int64_t R, int64_t Cn, int64_t k,
                               bool upper) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = i % Cn, r = (i / Cn) % R;
    const bool keep = upper ? (j - r >= k) : (j - r <= k);
    out[i] = keep ? x[i] : store<T>(0.0);
  }
}

// A host value converted to the device storage type T.
template <typename T>
T hostValue(double value) {
  if constexpr (std::is_same_v<T, __half>)
    return __double2half(value);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __double2bfloat16(value);
  else if constexpr (std::is_same_v<T, bool>)
    return value != 0.0;
  else if constexpr (std::is_same_v<T, __nv_fp8_e4m3> || std::is_same_v<T, __nv_fp8_e5m2>)
    return T(static_cast<float>(value));
  else
    return static_cast<T>(value);
}

constexpr bool isComparison(BinaryOp op) {
  return op == BinaryOp::eq || op == BinaryOp::ne || op == BinaryOp::lt || op == BinaryOp::le ||
         op == BinaryOp::gt || op == BinaryOp::ge;
}

}  // namespace

void copyDevice(const Tensor& src, const Tensor& dst) {
  const int dev = dst.device().index;
  setDevice(dev);
  cudaStream_t st = streamFor(dev);
  const int64_t n = dst.numel();
  if (n == 0) return;
  if (src.dtype() == dst.dtype() && src.isContiguous() && dst.isContiguous()) {
    LATHE_CUDA_CHECK(
        cudaMemcpyAsync(dst.rawData(), src.rawData(), dst.nbytes(), cudaMemcpyDeviceToDevice, st));
    return;
  }
  const Shape* strides[2] = {&dst.strides(), &src.strides()};
  const StridedArgs<2> args = packStrided<2>(dst.shape(), strides);
  LATHE_CUDA_DISPATCH_ALL(src.dtype(), "copy", [&] {
    using S = scalar_t;
    LATHE_CUDA_DISPATCH_ALL(dst.dtype(), "copy", [&] {
      copyStrided<S, scalar_t><<<blocksFor(n), 256, 0, st>>>(
          static_cast<const S*>(src.rawData()), static_cast<scalar_t*>(dst.rawData()), n, args);
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::fill(const Tensor& dst, double value) {
  const int dev = dst.device().index;
  setDevice(dev);
  const int64_t n = dst.numel();
  const Shape* strides[1] = {&dst.strides()};
  const StridedArgs<1> args = packStrided<1>(dst.shape(), strides);
  LATHE_CUDA_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    const scalar_t v = hostValue<scalar_t>(value);
    fillStrided<scalar_t><<<blocksFor(n), 256, 0, streamFor(dev)>>>(
        static_cast<scalar_t*>(dst.rawData()), v, n, args);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::arange(const Tensor& dst, double start, double step) {
  const int dev = dst.device().index;
  setDevice(dev);
  const int64_t n = dst.numel();
  LATHE_CUDA_DISPATCH_ALL(dst.dtype(), "arange", [&] {
    arangeKernel<scalar_t><<<blocksFor(n), 256, 0, streamFor(dev)>>>(
        static_cast<scalar_t*>(dst.rawData()), n, start, step);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

namespace {

// Pack width and depth of the run-time-op kernels: one 16-byte pack for the hot float types,
// else four single elements.
template <typename T>
inline constexpr int kAnyWidth = kFixedOps<T> ? kVecWidth<T> : 1;
template <typename T>
inline constexpr int kAnyUnroll = kFixedOps<T> ? 1 : 4;

template <typename T>
void unaryTyped(int dev, cudaStream_t st, UnaryOp op, const Tensor& x, const Tensor& out,
                const StridedArgs<2>& args, double a, double b) {
  using C = calc_t<T>;
  const int64_t n = out.numel();
  const T* in[1] = {static_cast<const T*>(x.rawData())};
  T* po = static_cast<T*>(out.rawData());
  Flat<T, 1> f;
  if (!planFlat<T, T, 1>(args, n, po, in, kAnyWidth<T>, f)) {
    unaryStrided<T><<<blocksFor(n), 256, 0, st>>>(op, in[0], po, n, args, C(a), C(b));
    return;
  }
  if constexpr (kFixedOps<T>) {
    if (f.all_full) {
      withUnaryOp(op, [&](auto k) {
        constexpr UnaryOp kOp = decltype(k)::value;
        constexpr int kUnroll = isCheap(kOp) ? 4 : 1;
        launchFlat<kVecWidth<T>, kUnroll, true>(dev, st, UnaryFixed<kOp, C>{C(a), C(b)}, f, po);
      });
      return;
    }
  }
  launchFlat<kAnyWidth<T>, kAnyUnroll<T>, false>(dev, st, UnaryAny<C>{op, C(a), C(b)}, f, po);
}

// O is bool for comparisons, T otherwise.
template <typename T, typename O>
void binaryTyped(int dev, cudaStream_t st, BinaryOp op, const Tensor& x, const Tensor& y,
                 const Tensor& out, const StridedArgs<3>& args) {
  const int64_t n = out.numel();
  const T* in[2] = {static_cast<const T*>(x.rawData()), static_cast<const T*>(y.rawData())};
  O* po = static_cast<O*>(out.rawData());
  Flat<T, 2> f;
  if (!planFlat<T, O, 2>(args, n, po, in, kAnyWidth<T>, f)) {
    binaryStrided<T, O><<<blocksFor(n), 256, 0, st>>>(op, in[0], in[1], po, n, args);
    return;
  }
  if constexpr (kFixedOps<T>) {
    if (f.all_full) {
      withBinaryOp(op, [&](auto k) {
        constexpr BinaryOp kOp = decltype(k)::value;
        constexpr int kUnroll = isCheap(kOp) ? 4 : 1;
        if constexpr (isComparison(kOp) == std::is_same_v<O, bool>)
          launchFlat<kVecWidth<T>, kUnroll, true>(dev, st, BinaryFixed<kOp>{}, f, po);
      });
      return;
    }
  }
  launchFlat<kAnyWidth<T>, kAnyUnroll<T>, false>(dev, st, BinaryAny{op}, f, po);
}

}  // namespace

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) {
  const int dev = out.device().index;
  setDevice(dev);
  if (out.numel() == 0) return;
  const Shape* strides[2] = {&out.strides(), &x.strides()};
  const StridedArgs<2> args = packStrided<2>(out.shape(), strides);
  LATHE_CUDA_DISPATCH_ALL(x.dtype(), "unary", [&] {
    if constexpr (std::is_same_v<scalar_t, bool>)
      fail("unary op on a bool tensor ", describe(x));
    else
      unaryTyped<scalar_t>(dev, streamFor(dev), op, x, out, args, a, b);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::binary(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  const int dev = out.device().index;
  setDevice(dev);
  if (out.numel() == 0) return;
  const Shape* strides[3] = {&out.strides(), &x.strides(), &y.strides()};
  const StridedArgs<3> args = packStrided<3>(out.shape(), strides);
  LATHE_CUDA_DISPATCH_ALL(x.dtype(), "binary", [&] {
    if (isComparison(op))
      binaryTyped<scalar_t, bool>(dev, streamFor(dev), op, x, y, out, args);
    else
      binaryTyped<scalar_t, scalar_t>(dev, streamFor(dev), op, x, y, out, args);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::where(const Tensor& cond, const Tensor& x, const Tensor& y, const Tensor& out) {
  const int dev = out.device().index;
  setDevice(dev);
  const int64_t n = out.numel();
  const Shape* strides[4] = {&out.strides(), &cond.strides(), &x.strides(), &y.strides()};
  const StridedArgs<4> args = packStrided<4>(out.shape(), strides);
  LATHE_CUDA_DISPATCH_ALL(x.dtype(), "where", [&] {
    whereStrided<scalar_t><<<blocksFor(n), 256, 0, streamFor(dev)>>>(
        static_cast<const bool*>(cond.rawData()), static_cast<const scalar_t*>(x.rawData()),
        static_cast<const scalar_t*>(y.rawData()), static_cast<scalar_t*>(out.rawData()), n, args);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::triangle(const Tensor& x, const Tensor& out, int64_t k, bool upper) {
  const int dev = out.device().index;
  setDevice(dev);
  const int64_t n = out.numel();
  LATHE_CUDA_DISPATCH_ALL(x.dtype(), "triangle", [&] {
    triangleKernel<scalar_t><<<blocksFor(n), 256, 0, streamFor(dev)>>>(
        static_cast<const scalar_t*>(x.rawData()), static_cast<scalar_t*>(out.rawData()), n,
        x.size(-2), x.size(-1), k, upper);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

}  // namespace lathe::cuda
