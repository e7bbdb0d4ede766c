// Indexing kernels on CUDA. indexSelect/indexAdd see tensors as [outer, V, inner]; the index
// (contiguous i64, already range-checked by the op layer) picks rows of V. indexAdd uses atomics
// unless LATHE_DETERMINISTIC=1, where each thread owns a column and adds rows in index order
// (bit-reproducible, less parallel). gather/scatter follow torch semantics with full strides.
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {

bool deterministic() {
  static const bool on = [] {
    const char* e = std::getenv("LATHE_DETERMINISTIC");
    return e != nullptr && e[0] == '1';
  }();
  return on;
}

int64_t prodDims(const Shape& s, int b, int e) {
  int64_t n = 1;
  for (int d = b; d < e; ++d) n *= s[static_cast<size_t>(d)];
  return n;
}

template <typename T>
__global__ void indexSelectKernel(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t V,
                                  int64_t n, int64_t inner) {
  const int64_t total = outer * n * inner;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = e % inner, i = (e / inner) % n, o = e / (inner * n);
    out[e] = x[(o * V + idx[i]) * inner + c];
  }
}

template <typename T>
__device__ __forceinline__ void atomicAddT(T* p, T v) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> ||
                std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16> ||
                std::is_same_v<T, int32_t>) {
    atomicAdd(p, v);
  } else if constexpr (std::is_same_v<T, int64_t>) {
    atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
  } else {
    *p = store<T>(load(*p) + load(v));  // small types: not atomic (not used for gradients)
  }
}

template <typename T>
__global__ void indexAddAtomicKernel(T* dst, const int64_t* idx, const T* src, int64_t outer,
                                     int64_t V, int64_t n, int64_t inner) {
  const int64_t total = outer * n * inner;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = e % inner, i = (e / inner) % n, o = e / (inner * n);
    atomicAddT(&dst[(o * V + idx[i]) * inner + c], src[e]);
  }
}

template <typename T>
__global__ void indexAddOrderedKernel(T* dst, const int64_t* idx, const T* src, int64_t outer,
                                      int64_t V, int64_t n, int64_t inner) {
  const int64_t cols = outer * inner;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < cols;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = e % inner, o = e / inner;
    for (int64_t i = 0; i < n; ++i) {
      T* d = &dst[(o * V + idx[i]) * inner + c];
      *d = store<T>(load(*d) + load(src[(o * n + i) * inner + c]));
    }
  }
}

struct GatherArgs {
  int ndim = 0, dim = 0;
  int64_t size[kMaxDims];
  int64_t a[kMaxDims], ix[kMaxDims], b[kMaxDims];  // strides: indexed tensor, index, other
};

GatherArgs packGather(const Tensor& index, int dim, const Tensor& indexed, const Tensor& other) {
  LATHE_CHECK(index.dim() <= kMaxDims, "gather/scatter on cuda: at most ", kMaxDims, " dims, got ",
              describe(index));
  GatherArgs g;
  g.ndim = index.dim();
  g.dim = dim;
  for (int d = 0; d < g.ndim; ++d) {
    g.size[d] = index.shape()[static_cast<size_t>(d)];
    g.a[d] = indexed.strides()[static_cast<size_t>(d)];
    g.ix[d] = index.strides()[static_cast<size_t>(d)];
    g.b[d] = other.strides()[static_cast<size_t>(d)];
  }
  return g;
}

// For element e of the index: offsets in the indexed tensor (with the index value on `dim`),
// in the index, and in the other tensor.
__device__ __forceinline__ void gatherOffsets(const GatherArgs& g, int64_t e, const int64_t* idx,
                                              int64_t& oa, int64_t& ob) {
  int64_t oi = 0, rest = e, coord_dim = 0;
  oa = 0;
  ob = 0;
  for (int d = g.ndim - 1; d >= 0; --d) {
    const int64_t c = rest % g.size[d];
    rest /= g.size[d];
    oi += c * g.ix[d];
    ob += c * g.b[d];
    if (d != g.dim) oa += c * g.a[d];
  }
  coord_dim = idx[oi];
  oa += coord_dim * g.a[g.dim];
}

template <typename T>
__global__ void gatherKernel(const T* x, const int64_t* idx, T* out, int64_t n, GatherArgs g) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t ox, oo;
    gatherOffsets(g, e, idx, ox, oo);
    out[oo] = x[ox];
  }
}

template <typename T>
__global__ void scatterKernel(T* dst, const int64_t* idx, const T* src, int64_t n, GatherArgs g,
                              bool add) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t od, os;
    gatherOffsets(g, e, idx, od, os);
    if (add)
      atomicAddT(&dst[od], src[os]);
    else
      dst[od] = src[os];
  }
}

void requireI64(const Tensor& index, const char* op) {
  LATHE_CHECK(index.dtype() == DType::i64, op, " on cuda: index must be i64, got ",
              describe(index));
}

}  // namespace

void CudaBackend::indexSelect(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  requireI64(index, "indexSelect");
  const int dev = out.device().index;
  setDevice(dev);
  const int64_t outer = prodDims(x.shape(), 0, dim), inner = prodDims(x.shape(), dim + 1, x.dim());
  const int64_t V = x.shape()[static_cast<size_t>(dim)], n = index.numel();
  LATHE_CUDA_DISPATCH_ALL(x.dtype(), "indexSelect", [&] {
    indexSelectKernel<scalar_t><<<blocksFor(outer * n * inner), 256, 0, streamFor(dev)>>>(
        static_cast<const scalar_t*>(x.rawData()), static_cast<const int64_t*>(index.rawData()),
        static_cast<scalar_t*>(out.rawData()), outer, V, n, inner);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::indexAdd(const Tensor& dst, int dim, const Tensor& index, const Tensor& src) {
  requireI64(index, "indexAdd");
  const int dev = dst.device().index;
  setDevice(dev);
  const int64_t outer = prodDims(dst.shape(), 0, dim),
                inner = prodDims(dst.shape(), dim + 1, dst.dim());
  const int64_t V = dst.shape()[static_cast<size_t>(dim)], n = index.numel();
  LATHE_CUDA_DISPATCH_FLOAT(dst.dtype(), "indexAdd", [&] {
    auto* pd = static_cast<scalar_t*>(dst.rawData());
    auto* pi = static_cast<const int64_t*>(index.rawData());
    auto* ps = static_cast<const scalar_t*>(src.rawData());
    if (deterministic())
      indexAddOrderedKernel<scalar_t>
          <<<blocksFor(outer * inner), 256, 0, streamFor(dev)>>>(pd, pi, ps, outer, V, n, inner);
    else
      indexAddAtomicKernel<scalar_t><<<blocksFor(outer * n * inner), 256, 0, streamFor(dev)>>>(
          pd, pi, ps, outer, V, n, inner);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  requireI64(index, "gather");
  const int dev = out.device().index;
  setDevice(dev);
  const GatherArgs g = packGather(index, dim, x, out);
  const int64_t n = index.numel();
  LATHE_CUDA_DISPATCH_ALL(x.dtype(), "gather", [&] {
    gatherKernel<scalar_t><<<blocksFor(n), 256, 0, streamFor(dev)>>>(
        static_cast<const scalar_t*>(x.rawData()), static_cast<const int64_t*>(index.rawData()),
        static_cast<scalar_t*>(out.rawData()), n, g);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::scatter(const Tensor& dst, int dim, const Tensor& index, const Tensor& src,
                          bool add) {
  requireI64(index, "scatter");
  const int dev = dst.device().index;
  setDevice(dev);
  const GatherArgs g = packGather(index, dim, dst, src);
  const int64_t n = index.numel();
  LATHE_CUDA_DISPATCH_FLOAT(dst.dtype(), "scatter", [&] {
    scatterKernel<scalar_t><<<blocksFor(n), 256, 0, streamFor(dev)>>>(
        static_cast<scalar_t*>(dst.rawData()), static_cast<const int64_t*>(index.rawData()),
        static_cast<const scalar_t*>(src.rawData()), n, g, add);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

}  // namespace lathe::cuda
