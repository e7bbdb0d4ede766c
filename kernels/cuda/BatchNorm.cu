// Batch normalisation on CUDA (x [N, C, S...] contiguous): one block per channel reduces over
// N*S values (f32 statistics, f64 for f64), updates the running stats like PyTorch (unbiased
// running variance, biased normalisation), and writes y; the backward is the training-mode
// gradient gx = w*invstd*(gy - mean(gy) - xhat*mean(gy*xhat)) with gw, gb from the same pass.
#include <type_traits>

#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {

template <typename T>
using bacc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename A>
__device__ A blockSum2(A v, A* sh) {
  for (int s = 16; s > 0; s /= 2) v += __shfl_down_sync(0xffffffffu, v, s);
  __syncthreads();
  if (threadIdx.x % 32 == 0) sh[threadIdx.x / 32] = v;
  __syncthreads();
  A t = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x + 31) / 32; ++w) t += sh[w];
  return t;
}

template <typename T, typename S>
__global__ void bnForward(const T* x, const T* w, const T* b, T* rm, T* rv, bool training,
                          double momentum, double eps, T* y, S* save_mean, S* save_inv, int64_t N,
                          int64_t C, int64_t Sp) {
  using A = bacc_t<T>;
  __shared__ A sh[32];
  const int64_t c = blockIdx.x, M = N * Sp;
  A m = 0, inv = 0;
  if (training) {
    for (int64_t i = threadIdx.x; i < M; i += blockDim.x)
      m += static_cast<A>(load(x[((i / Sp) * C + c) * Sp + i % Sp]));
    m = blockSum2(m, sh) / static_cast<A>(M);
    A v = 0;
    for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
      const A d = static_cast<A>(load(x[((i / Sp) * C + c) * Sp + i % Sp])) - m;
      v += d * d;
    }
    v = blockSum2(v, sh) / static_cast<A>(M);
    inv = A(1) / sqrt(v + static_cast<A>(eps));
    if (threadIdx.x == 0) {
      if (rm)
        rm[c] = store<T>((A(1) - static_cast<A>(momentum)) * static_cast<A>(load(rm[c])) +
                         static_cast<A>(momentum) * m);
      if (rv && M > 1)
        rv[c] = store<T>((A(1) - static_cast<A>(momentum)) * static_cast<A>(load(rv[c])) +
                         static_cast<A>(momentum) * v * static_cast<A>(M) / static_cast<A>(M - 1));
    }
  } else {
    m = static_cast<A>(load(rm[c]));
    inv = A(1) / sqrt(static_cast<A>(load(rv[c])) + static_cast<A>(eps));
  }
  if (threadIdx.x == 0) {
    save_mean[c] = static_cast<S>(m);
    save_inv[c] = static_cast<S>(inv);
  }
  const A scale = inv * (w ? static_cast<A>(load(w[c])) : A(1));
  const A shift = (b ? static_cast<A>(load(b[c])) : A(0)) - m * scale;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const int64_t k = ((i / Sp) * C + c) * Sp + i % Sp;
    y[k] = store<T>(static_cast<A>(load(x[k])) * scale + shift);
  }
}

template <typename T, typename S>
__global__ void bnBackward(const T* gy, const T* x, const T* w, const S* save_mean,
                           const S* save_inv, T* gx, T* gw, T* gb, int64_t N, int64_t C,
                           int64_t Sp) {
  using A = bacc_t<T>;
  __shared__ A sh[32];
  const int64_t c = blockIdx.x, M = N * Sp;
  const A m = static_cast<A>(save_mean[c]), inv = static_cast<A>(save_inv[c]);
  A sg = 0, sgx = 0;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const int64_t k = ((i / Sp) * C + c) * Sp + i % Sp;
    const A g = static_cast<A>(load(gy[k]));
    sg += g;
    sgx += g * (static_cast<A>(load(x[k])) - m) * inv;
  }
  sg = blockSum2(sg, sh);
  sgx = blockSum2(sgx, sh);
  if (threadIdx.x == 0) {
    if (gw) gw[c] = store<T>(sgx);
    if (gb) gb[c] = store<T>(sg);
  }
  const A kf = inv * (w ? static_cast<A>(load(w[c])) : A(1));
  const A mg = sg / static_cast<A>(M), mgx = sgx / static_cast<A>(M);
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const int64_t k = ((i / Sp) * C + c) * Sp + i % Sp;
    const A xh = (static_cast<A>(load(x[k])) - m) * inv;
    gx[k] = store<T>(kf * (static_cast<A>(load(gy[k])) - mg - xh * mgx));
  }
}

template <typename T>
T* mut(const Tensor* t) {
  return t ? static_cast<T*>(t->rawData()) : nullptr;
}

}  // namespace

void CudaBackend::batchNorm(const Tensor& x, const Tensor* w, const Tensor* b,
                            const Tensor* running_mean, const Tensor* running_var, bool training,
                            double momentum, double eps, const Tensor& y, const Tensor& save_mean,
                            const Tensor& save_invstd) {
  const int dev = y.device().index;
  setDevice(dev);
  const int64_t N = x.size(0), C = x.size(1), Sp = N * C == 0 ? 0 : x.numel() / (N * C);
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "batchNorm", [&] {
    using T = scalar_t;
    auto launch = [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      bnForward<T, S><<<static_cast<unsigned>(C), 256, 0, streamFor(dev)>>>(
          static_cast<const T*>(x.rawData()), mut<T>(w), mut<T>(b), mut<T>(running_mean),
          mut<T>(running_var), training, momentum, eps, static_cast<T*>(y.rawData()),
          static_cast<S*>(save_mean.rawData()), static_cast<S*>(save_invstd.rawData()), N, C, Sp);
    };
    if (save_mean.dtype() == DType::f64)
      launch(static_cast<double*>(nullptr));
    else
      launch(static_cast<float*>(nullptr));
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::batchNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                    const Tensor& save_mean, const Tensor& save_invstd,
                                    const Tensor& gx, const Tensor* gw, const Tensor* gb) {
  const int dev = gx.device().index;
  setDevice(dev);
  const int64_t N = x.size(0), C = x.size(1), Sp = N * C == 0 ? 0 : x.numel() / (N * C);
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "batchNormBackward", [&] {
    using T = scalar_t;
    auto launch = [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      bnBackward<T, S><<<static_cast<unsigned>(C), 256, 0, streamFor(dev)>>>(
          static_cast<const T*>(gy.rawData()), static_cast<const T*>(x.rawData()), mut<T>(w),
          static_cast<const S*>(save_mean.rawData()), static_cast<const S*>(save_invstd.rawData()),
          static_cast<T*>(gx.rawData()), mut<T>(gw), mut<T>(gb), N, C, Sp);
    };
    if (save_mean.dtype() == DType::f64)
      launch(static_cast<double*>(nullptr));
    else
      launch(static_cast<float*>(nullptr));
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

}  // namespace lathe::cuda
