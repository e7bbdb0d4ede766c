// Elementwise CUDA kernels: strided copy/convert, fill, arange, unary, binary (broadcast through
// strides), where, triangle. Contiguous operands take a vectorised path (16-byte loads and
// stores: 4 floats or 8 halves per access); others walk coalesced dims with per-operand strides.
// Math runs in f32 for the 16-bit types, f64 for f64, and f64 for integers (as the CPU does).
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

// 16 bytes of T, for vectorised loads.
template <typename T>
struct alignas(16) Vec {
  static constexpr int kN = 16 / sizeof(T) > 0 ? 16 / sizeof(T) : 1;
  T v[kN];
};

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

template <typename T>
__global__ void unaryContiguous(UnaryOp op, const T* __restrict__ x, T* __restrict__ out, int64_t n,
                                calc_t<T> a, calc_t<T> b) {
  using C = calc_t<T>;
  constexpr int kN = Vec<T>::kN;
  const int64_t nvec = n / kN;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < nvec;
       i += stride) {
    Vec<T> in = reinterpret_cast<const Vec<T>*>(x)[i], res;
#pragma unroll
    for (int k = 0; k < kN; ++k)
      res.v[k] = store<T>(applyUnary<C>(op, static_cast<C>(load(in.v[k])), a, b));
    reinterpret_cast<Vec<T>*>(out)[i] = res;
  }
  for (int64_t i = nvec * kN + blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride)
    out[i] = store<T>(applyUnary<C>(op, static_cast<C>(load(x[i])), a, b));
}

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
__global__ void binaryContiguous(BinaryOp op, const T* __restrict__ x, const T* __restrict__ y,
                                 O* __restrict__ out, int64_t n) {
  using C = calc_t<T>;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = store<O>(applyBinary<C>(op, static_cast<C>(load(x[i])), static_cast<C>(load(y[i]))));
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

bool isComparison(BinaryOp op) {
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

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) {
  const int dev = out.device().index;
  setDevice(dev);
  cudaStream_t st = streamFor(dev);
  const int64_t n = out.numel();
  LATHE_CUDA_DISPATCH_ALL(x.dtype(), "unary", [&] {
    using T = scalar_t;
    if constexpr (std::is_same_v<T, bool>) {
      fail("unary op on a bool tensor ", describe(x));
    } else {
      using C = calc_t<T>;
      const T* px = static_cast<const T*>(x.rawData());
      T* po = static_cast<T*>(out.rawData());
      if (x.isContiguous() && aligned16(px) && aligned16(po)) {
        unaryContiguous<T>
            <<<blocksFor(n / Vec<T>::kN + 1), 256, 0, st>>>(op, px, po, n, C(a), C(b));
      } else {
        const Shape* strides[2] = {&out.strides(), &x.strides()};
        unaryStrided<T><<<blocksFor(n), 256, 0, st>>>(
            op, px, po, n, packStrided<2>(out.shape(), strides), C(a), C(b));
      }
    }
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::binary(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  const int dev = out.device().index;
  setDevice(dev);
  cudaStream_t st = streamFor(dev);
  const int64_t n = out.numel();
  const bool contiguous =
      x.isContiguous() && y.isContiguous() && x.shape() == out.shape() && y.shape() == out.shape();
  const Shape* strides[3] = {&out.strides(), &x.strides(), &y.strides()};
  const StridedArgs<3> args = packStrided<3>(out.shape(), strides);
  LATHE_CUDA_DISPATCH_ALL(x.dtype(), "binary", [&] {
    using T = scalar_t;
    const T* px = static_cast<const T*>(x.rawData());
    const T* py = static_cast<const T*>(y.rawData());
    auto launch = [&](auto* po) {
      using O = std::remove_pointer_t<decltype(po)>;
      if (contiguous)
        binaryContiguous<T, O><<<blocksFor(n), 256, 0, st>>>(op, px, py, po, n);
      else
        binaryStrided<T, O><<<blocksFor(n), 256, 0, st>>>(op, px, py, po, n, args);
    };
    if (isComparison(op))
      launch(static_cast<bool*>(out.rawData()));
    else
      launch(static_cast<T*>(out.rawData()));
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
