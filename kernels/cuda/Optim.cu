// Fused optimizer steps on CUDA over flat buffers: one kernel, one pass over param, grad and
// states (vectorisable, memory bound). Same update order as the CPU reference and torch.optim.
#include <type_traits>

#include "kernels/cuda/CudaBackendImpl.h"
#include "kernels/cuda/CudaCommon.cuh"

namespace lathe::cuda {
namespace {

template <typename T, typename A>
__global__ void adamwKernel(T* p, const T* g, A* m, A* v, int64_t n, A step_size, A b1, A b2, A eps,
                            A decay, A bc2_sqrt) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const A gi = static_cast<A>(load(g[i]));
    A pi = static_cast<A>(load(p[i])) * decay;
    const A mi = m[i] * b1 + (A(1) - b1) * gi;
    const A vi = v[i] * b2 + (A(1) - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    pi -= step_size * mi / (sqrt(vi) / bc2_sqrt + eps);
    p[i] = store<T>(pi);
  }
}

template <typename T, typename A>
__global__ void sgdKernel(T* p, const T* g, A* buf, int64_t n, A lr, A mom, A damp, A wd,
                          bool nesterov, bool first) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const A pi = static_cast<A>(load(p[i]));
    A d = static_cast<A>(load(g[i])) + wd * pi;
    if (buf) {
      buf[i] = first ? d : mom * buf[i] + damp * d;
      d = nesterov ? d + mom * buf[i] : buf[i];
    }
    p[i] = store<T>(pi - lr * d);
  }
}

// 8-bit AdamW: one thread block of 256 threads per quantization block of 256 * ITEMS elements;
// element b + t + 256 k belongs to thread t (coalesced). The maps' midpoints sit in shared memory
// for the binary search; the new absmax is a block-wide max of the updated moments.
template <typename T, typename A, int ITEMS>
__global__ void __launch_bounds__(256)
    adamw8bitKernel(T* p, const T* g, uint8_t* qm, A* am, uint8_t* qv, A* av, const A* smap,
                    const A* umap, int64_t n, A step_size, A b1, A b2, A eps, A decay, A bc2_sqrt) {
  __shared__ A smid[256], umid[256], red[2][8];
  const int t = threadIdx.x;
  if (t < 255) {
    smid[t] = (smap[t] + smap[t + 1]) * A(0.5);
    umid[t] = (umap[t] + umap[t + 1]) * A(0.5);
  }
  const int64_t blk = blockIdx.x, base = blk * 256 * ITEMS;
  const A old_am = am[blk], old_av = av[blk];
  A m[ITEMS], v[ITEMS], mmax = 0, vmax = 0;
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const int64_t i = base + t + 256 * k;
    m[k] = 0;
    v[k] = 0;
    if (i >= n) continue;
    const A gi = static_cast<A>(load(g[i]));
    A mi = smap[qm[i]] * old_am * b1 + (A(1) - b1) * gi;
    A vi = umap[qv[i]] * old_av * b2 + (A(1) - b2) * gi * gi;
    A pi = static_cast<A>(load(p[i])) * decay;
    pi -= step_size * mi / (sqrt(vi) / bc2_sqrt + eps);
    p[i] = store<T>(pi);
    m[k] = mi;
    v[k] = vi;
    mmax = max(mmax, abs(mi));
    vmax = max(vmax, vi);
  }
  for (int off = 16; off > 0; off /= 2) {
    mmax = max(mmax, __shfl_xor_sync(0xffffffffu, mmax, off));
    vmax = max(vmax, __shfl_xor_sync(0xffffffffu, vmax, off));
  }
  if ((t & 31) == 0) {
    red[0][t / 32] = mmax;
    red[1][t / 32] = vmax;
  }
  __syncthreads();  // also publishes smid/umid
  mmax = red[0][0];
  vmax = red[1][0];
#pragma unroll
  for (int w = 1; w < 8; ++w) {
    mmax = max(mmax, red[0][w]);
    vmax = max(vmax, red[1][w]);
  }
  // An all-zero block divides by the smallest normal number: its codes are those of 0.
  const A tiny = sizeof(A) == 8 ? A(2.2250738585072014e-308) : A(1.17549435e-38f);
  const A mden = max(mmax, tiny), vden = max(vmax, tiny);
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const int64_t i = base + t + 256 * k;
    if (i >= n) continue;
    const A ym = m[k] / mden, yv = v[k] / vden;
    int lm = 0, lv = 0;
#pragma unroll
    for (int step = 128; step >= 1; step /= 2) {
      if (smid[lm + step - 1] < ym) lm += step;
      if (umid[lv + step - 1] < yv) lv += step;
    }
    qm[i] = static_cast<uint8_t>(lm);
    qv[i] = static_cast<uint8_t>(lv);
  }
  if (t == 0) {
    am[blk] = mmax;
    av[blk] = vmax;
  }
}

}  // namespace

void CudaBackend::adamw8bitStep(const Tensor& param, const Tensor& grad, const Tensor& qm,
                                const Tensor& am, const Tensor& qv, const Tensor& av,
                                const Tensor& signed_map, const Tensor& unsigned_map,
                                int64_t block_size, const AdamWStep& s) {
  const int dev = param.device().index;
  setDevice(dev);
  const int64_t n = param.numel(), blocks = (n + block_size - 1) / block_size;
  LATHE_CHECK(block_size == 256 || block_size == 2048, "adamw8bitStep on cuda: block size ",
              block_size, " is not supported (256 or 2048)");
  LATHE_CHECK(qm.numel() == n && qv.numel() == n && am.numel() == blocks && av.numel() == blocks,
              "adamw8bitStep: expected ", n, " codes and ", blocks, " absmax values per moment");
  if (n == 0) return;
  LATHE_CUDA_DISPATCH_FLOAT(param.dtype(), "adamw8bitStep", [&] {
    using T = scalar_t;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const A bc1 = static_cast<A>(1.0 - std::pow(s.beta1, static_cast<double>(s.step)));
    const A bc2_sqrt =
        static_cast<A>(std::sqrt(1.0 - std::pow(s.beta2, static_cast<double>(s.step))));
    auto launch = [&](auto kernel) {
      kernel<<<static_cast<unsigned>(blocks), 256, 0, streamFor(dev)>>>(
          static_cast<T*>(param.rawData()), static_cast<const T*>(grad.rawData()),
          static_cast<uint8_t*>(qm.rawData()), static_cast<A*>(am.rawData()),
          static_cast<uint8_t*>(qv.rawData()), static_cast<A*>(av.rawData()),
          static_cast<const A*>(signed_map.rawData()),
          static_cast<const A*>(unsigned_map.rawData()), n, static_cast<A>(s.lr) / bc1,
          static_cast<A>(s.beta1), static_cast<A>(s.beta2), static_cast<A>(s.eps),
          static_cast<A>(1.0 - s.lr * s.weight_decay), bc2_sqrt);
    };
    if (block_size == 256)
      launch(adamw8bitKernel<T, A, 1>);
    else
      launch(adamw8bitKernel<T, A, 8>);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::adamwStep(const Tensor& param, const Tensor& grad, const Tensor& m,
                            const Tensor& v, const AdamWStep& s) {
  const int dev = param.device().index;
  setDevice(dev);
  const int64_t n = param.numel();
  LATHE_CUDA_DISPATCH_FLOAT(param.dtype(), "adamwStep", [&] {
    using T = scalar_t;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const A bc1 = static_cast<A>(1.0 - std::pow(s.beta1, static_cast<double>(s.step)));
    const A bc2_sqrt =
        static_cast<A>(std::sqrt(1.0 - std::pow(s.beta2, static_cast<double>(s.step))));
    adamwKernel<T, A><<<blocksFor(n), 256, 0, streamFor(dev)>>>(
        static_cast<T*>(param.rawData()), static_cast<const T*>(grad.rawData()),
        static_cast<A*>(m.rawData()), static_cast<A*>(v.rawData()), n, static_cast<A>(s.lr) / bc1,
        static_cast<A>(s.beta1), static_cast<A>(s.beta2), static_cast<A>(s.eps),
        static_cast<A>(1.0 - s.lr * s.weight_decay), bc2_sqrt);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::sgdStep(const Tensor& param, const Tensor& grad, const Tensor& buf,
                          const SgdStep& s) {
  const int dev = param.device().index;
  setDevice(dev);
  const int64_t n = param.numel();
  LATHE_CHECK(s.momentum == 0.0 || buf.defined(), "sgdStep: momentum ", s.momentum,
              " needs a momentum buffer");
  LATHE_CUDA_DISPATCH_FLOAT(param.dtype(), "sgdStep", [&] {
    using T = scalar_t;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    sgdKernel<T, A><<<blocksFor(n), 256, 0, streamFor(dev)>>>(
        static_cast<T*>(param.rawData()), static_cast<const T*>(grad.rawData()),
        buf.defined() ? static_cast<A*>(buf.rawData()) : nullptr, n, static_cast<A>(s.lr),
        static_cast<A>(s.momentum), static_cast<A>(1.0 - s.dampening),
        static_cast<A>(s.weight_decay), s.nesterov, s.first_step);
  });
  LATHE_CUDA_LAUNCH_CHECK();
}

}  // namespace lathe::cuda
