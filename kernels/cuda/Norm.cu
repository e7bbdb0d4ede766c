// Row-wise CUDA kernels: softmax / log-softmax, layer norm, RMS norm and cross-entropy over
// logits, forward and backward. One block per row; the row is read two or three times (it stays
// in L1/L2 for rows up to a few thousand elements), statistics accumulate in f32 (f64 for f64).
// Weight/bias gradients are column sums done by a second kernel that walks rows with threads
// spread over columns (coalesced), so no atomics and deterministic results.
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

// gw[c] = sum_n gy[n,c] * xhat[n,c]; gb[c] = sum_n gy[n,c].
template <typename T, typename S>
__global__ void normParamGradKernel(const T* gy, const T* x, const S* mean_in, const S* rstd_in,
                                    T* gw, T* gb, int64_t N, int64_t C) {
  using A = sacc_t<T>;
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A sw = 0, sb = 0;
    for (int64_t n = 0; n < N; ++n) {
      const A g = static_cast<A>(load(gy[n * C + c]));
      const A mean = mean_in ? static_cast<A>(mean_in[n]) : A(0);
      sw += g * (static_cast<A>(load(x[n * C + c])) - mean) * static_cast<A>(rstd_in[n]);
      sb += g;
    }
    if (gw) gw[c] = store<T>(sw);
    if (gb) gb[c] = store<T>(sb);
  }
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

void CudaBackend::layerNorm(const Tensor& x, const Tensor* w, const Tensor* b, double eps,
                            const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  const int dev = y.device().index;
  setDevice(dev);
  const int64_t C = x.size(-1), N = x.numel() / C;
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "layerNorm", [&] {
    using T = scalar_t;
    withStatType(rstd.dtype(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      normKernel<T, S><<<static_cast<unsigned>(N), rowThreads(C), 0, streamFor(dev)>>>(
          static_cast<const T*>(x.rawData()), ptr<T>(w), ptr<T>(b), eps,
          static_cast<T*>(y.rawData()), static_cast<S*>(mean.rawData()),
          static_cast<S*>(rstd.rawData()), C, false);
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::layerNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                    const Tensor& mean, const Tensor& rstd, const Tensor& gx,
                                    const Tensor* gw, const Tensor* gb) {
  const int dev = gx.device().index;
  setDevice(dev);
  const int64_t C = x.size(-1), N = x.numel() / C;
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "layerNormBackward", [&] {
    using T = scalar_t;
    withStatType(rstd.dtype(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      const S* pm = static_cast<const S*>(mean.rawData());
      const S* pr = static_cast<const S*>(rstd.rawData());
      normBackwardKernel<T, S><<<static_cast<unsigned>(N), rowThreads(C), 0, streamFor(dev)>>>(
          static_cast<const T*>(gy.rawData()), static_cast<const T*>(x.rawData()), ptr<T>(w), pm,
          pr, static_cast<T*>(gx.rawData()), C, false);
      if (gw || gb)
        normParamGradKernel<T, S><<<blocksFor(C), 256, 0, streamFor(dev)>>>(
            static_cast<const T*>(gy.rawData()), static_cast<const T*>(x.rawData()), pm, pr,
            gw ? static_cast<T*>(gw->rawData()) : nullptr,
            gb ? static_cast<T*>(gb->rawData()) : nullptr, N, C);
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::rmsNorm(const Tensor& x, const Tensor* w, double eps, const Tensor& y,
                          const Tensor& rstd) {
  const int dev = y.device().index;
  setDevice(dev);
  const int64_t C = x.size(-1), N = x.numel() / C;
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "rmsNorm", [&] {
    using T = scalar_t;
    withStatType(rstd.dtype(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      normKernel<T, S><<<static_cast<unsigned>(N), rowThreads(C), 0, streamFor(dev)>>>(
          static_cast<const T*>(x.rawData()), ptr<T>(w), nullptr, eps, static_cast<T*>(y.rawData()),
          nullptr, static_cast<S*>(rstd.rawData()), C, true);
    });
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::rmsNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                  const Tensor& rstd, const Tensor& gx, const Tensor* gw) {
  const int dev = gx.device().index;
  setDevice(dev);
  const int64_t C = x.size(-1), N = x.numel() / C;
  LATHE_CUDA_DISPATCH_FLOAT(x.dtype(), "rmsNormBackward", [&] {
    using T = scalar_t;
    withStatType(rstd.dtype(), [&](auto* tag) {
      using S = std::remove_pointer_t<decltype(tag)>;
      const S* pr = static_cast<const S*>(rstd.rawData());
      normBackwardKernel<T, S><<<static_cast<unsigned>(N), rowThreads(C), 0, streamFor(dev)>>>(
          static_cast<const T*>(gy.rawData()), static_cast<const T*>(x.rawData()), ptr<T>(w),
          nullptr, pr, static_cast<T*>(gx.rawData()), C, true);
      if (gw)
        normParamGradKernel<T, S><<<blocksFor(C), 256, 0, streamFor(dev)>>>(
            static_cast<const T*>(gy.rawData()), static_cast<const T*>(x.rawData()), nullptr, pr,
            static_cast<T*>(gw->rawData()), nullptr, N, C);
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
