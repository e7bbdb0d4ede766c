// Random kernels on the counter-based Philox stream shared with the CPU (core/tensor/Random.h):
// element i of a draw uses counter offset + i, so the same seed gives the same numbers and the
// same dropout mask on the CPU and on any GPU.
#include <type_traits>

#include "core/tensor/Random.h"
#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {

template <typename T>
__global__ void uniformKernel(T* out, int64_t n, RandomState rs, double low, double high) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double u = philoxUniform(rs, static_cast<uint64_t>(i));
    if constexpr (std::is_integral_v<T>) {
      double v = floor(low + u * (high - low));
      out[i] = static_cast<T>(v < high - 1 ? v : high - 1);
    } else {
      out[i] = store<T>(low + u * (high - low));
    }
  }
}

template <typename T>
__global__ void normalKernel(T* out, int64_t n, RandomState rs, double mean, double std) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = store<T>(mean + std * philoxNormal(rs, static_cast<uint64_t>(i)));
}

template <typename T>
__global__ void dropoutKernel(const T* x, T* out, uint8_t* mask, int64_t n, double p,
                              RandomState rs) {
  const double scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool keep = philoxUniform(rs, static_cast<uint64_t>(i)) >= p;
    mask[i] = keep ? 1 : 0;
    out[i] = store<T>(keep ? static_cast<double>(load(x[i])) * scale : 0.0);
  }
}

}  // namespace

void CudaBackend::randomUniform(const Tensor& out, RandomState rs, double low, double high) {
  const int dev = out.device().index;
  setDevice(dev);
  const int64_t n = out.numel();
  LATHE_CUDA_DISPATCH_ALL(out.dtype(), "randomUniform", [&] {
    if constexpr (std::is_same_v<scalar_t, bool> || std::is_same_v<scalar_t, __nv_fp8_e4m3> ||
                  std::is_same_v<scalar_t, __nv_fp8_e5m2>) {
      fail("randomUniform on cuda: dtype ", dtypeName(out.dtype()), " is not supported");
    } else {
      uniformKernel<scalar_t><<<blocksFor(n), 256, 0, streamFor(dev)>>>(
          static_cast<scalar_t*>(out.rawData()), n, rs, low, high);
    }
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::randomNormal(const Tensor& out, RandomState rs, double mean, double std) {
  const int dev = out.device().index;
  setDevice(dev);
  const int64_t n = out.numel();
  LATHE_CUDA_DISPATCH_FLOAT(out.dtype(), "randomNormal", [&] {
    normalKernel<scalar_t><<<blocksFor(n), 256, 0, streamFor(dev)>>>(
        static_cast<scalar_t*>(out.rawData()), n, rs, mean, std);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::dropout(const Tensor& x, double p, RandomState rs, const Tensor& out,
                          const Tensor& mask) {
  const int dev = out.device().index;
  setDevice(dev);
  const int64_t n = out.numel();
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "dropout", [&] {
    dropoutKernel<scalar_t><<<blocksFor(n), 256, 0, streamFor(dev)>>>(
        static_cast<const scalar_t*>(x.rawData()), static_cast<scalar_t*>(out.rawData()),
        static_cast<uint8_t*>(mask.rawData()), n, p, rs);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

}  // namespace lathe::cuda
