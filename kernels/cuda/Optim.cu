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

}  // namespace

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
