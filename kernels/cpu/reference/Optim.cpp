// Fused optimizer steps over flat buffers, one pass each, following torch.optim's order of
// operations so results match PyTorch closely. Math in f32 (f64 for f64 params).
#include <cmath>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {

void ReferenceBackend::adamwStep(const Tensor& param, const Tensor& grad, const Tensor& m,
                                 const Tensor& v, const AdamWStep& s) {
  const int64_t n = param.numel();
  LATHE_DISPATCH_FLOAT(param.dtype(), "adamwStep", [&] {
    using T = scalar_t;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    T* p = static_cast<T*>(param.rawData());
    const T* g = static_cast<const T*>(grad.rawData());
    A* pm = static_cast<A*>(m.rawData());
    A* pv = static_cast<A*>(v.rawData());
    const A lr = static_cast<A>(s.lr), b1 = static_cast<A>(s.beta1), b2 = static_cast<A>(s.beta2);
    const A eps = static_cast<A>(s.eps), decay = static_cast<A>(1.0 - s.lr * s.weight_decay);
    const A bc1 = static_cast<A>(1.0 - std::pow(s.beta1, static_cast<double>(s.step)));
    const A bc2_sqrt =
        static_cast<A>(std::sqrt(1.0 - std::pow(s.beta2, static_cast<double>(s.step))));
    const A step_size = lr / bc1;
    parallelFor(n, 8, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const A gi = static_cast<A>(g[i]);
        A pi = static_cast<A>(p[i]) * decay;
        pm[i] = pm[i] * b1 + (1 - b1) * gi;
        pv[i] = pv[i] * b2 + (1 - b2) * gi * gi;
        const A denom = std::sqrt(pv[i]) / bc2_sqrt + eps;
        pi -= step_size * pm[i] / denom;
        p[i] = static_cast<T>(pi);
      }
    });
  });
}

void ReferenceBackend::sgdStep(const Tensor& param, const Tensor& grad, const Tensor& buf,
                               const SgdStep& s) {
  const int64_t n = param.numel();
  LATHE_CHECK(s.momentum == 0.0 || buf.defined(), "sgdStep: momentum ", s.momentum,
              " needs a momentum buffer");
  LATHE_DISPATCH_FLOAT(param.dtype(), "sgdStep", [&] {
    using T = scalar_t;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    T* p = static_cast<T*>(param.rawData());
    const T* g = static_cast<const T*>(grad.rawData());
    A* pb = buf.defined() ? static_cast<A*>(buf.rawData()) : nullptr;
    const A lr = static_cast<A>(s.lr), mom = static_cast<A>(s.momentum);
    const A damp = static_cast<A>(1.0 - s.dampening), wd = static_cast<A>(s.weight_decay);
    parallelFor(n, 4, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const A pi = static_cast<A>(p[i]);
        A d = static_cast<A>(g[i]) + wd * pi;
        if (pb) {
          pb[i] = s.first_step ? d : mom * pb[i] + damp * d;
          d = s.nesterov ? d + mom * pb[i] : pb[i];
        }
        p[i] = static_cast<T>(pi - lr * d);
      }
    });
  });
}

}  // namespace lathe::cpu
