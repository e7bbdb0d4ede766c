// Fused optimizer steps over flat buffers, one pass each, following torch.optim's order of
// operations so results match PyTorch closely. Math in f32 (f64 for f64 params).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {
namespace {

// AdamWStep's scalars in the compute type: decay = 1 - lr * wd, the bias corrections (computed
// in double), step_size = lr / bc1.
template <typename A>
struct AdamWScalars {
  explicit AdamWScalars(const AdamWStep& s)
      : b1(static_cast<A>(s.beta1)),
        b2(static_cast<A>(s.beta2)),
        eps(static_cast<A>(s.eps)),
        decay(static_cast<A>(1.0 - s.lr * s.weight_decay)),
        bc2_sqrt(static_cast<A>(std::sqrt(1.0 - std::pow(s.beta2, static_cast<double>(s.step))))),
        step_size(static_cast<A>(s.lr) /
                  static_cast<A>(1.0 - std::pow(s.beta1, static_cast<double>(s.step)))) {}
  A b1, b2, eps, decay, bc2_sqrt, step_size;
};

}  // namespace

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
    const AdamWScalars<A> k(s);
    const A b1 = k.b1, b2 = k.b2, eps = k.eps, decay = k.decay, bc2_sqrt = k.bc2_sqrt;
    const A step_size = k.step_size;
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

namespace lathe::cpu {
namespace {

// The index of the map value nearest to y (ties to the lower one): the number of midpoints
// below y, found by the same 8-step binary search as core/optim/Quantize8bit.
template <typename A>
uint8_t nearestCode(const A* mid, A y) {
  int lo = 0;
  for (int step = 128; step >= 1; step /= 2)
    if (mid[lo + step - 1] < y) lo += step;
  return static_cast<uint8_t>(lo);
}

}  // namespace

void ReferenceBackend::adamw8bitStep(const Tensor& param, const Tensor& grad, const Tensor& qm,
                                     const Tensor& am, const Tensor& qv, const Tensor& av,
                                     const Tensor& signed_map, const Tensor& unsigned_map,
                                     int64_t block_size, const AdamWStep& s) {
  const int64_t n = param.numel(), blocks = (n + block_size - 1) / block_size;
  LATHE_CHECK(qm.numel() == n && qv.numel() == n && am.numel() == blocks && av.numel() == blocks,
              "adamw8bitStep: expected ", n, " codes and ", blocks, " absmax values per moment");
  LATHE_DISPATCH_FLOAT(param.dtype(), "adamw8bitStep", [&] {
    using T = scalar_t;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    T* p = static_cast<T*>(param.rawData());
    const T* g = static_cast<const T*>(grad.rawData());
    uint8_t* cm = static_cast<uint8_t*>(qm.rawData());
    uint8_t* cv = static_cast<uint8_t*>(qv.rawData());
    A* pam = static_cast<A*>(am.rawData());
    A* pav = static_cast<A*>(av.rawData());
    const A* smap = static_cast<const A*>(signed_map.rawData());
    const A* umap = static_cast<const A*>(unsigned_map.rawData());
    A smid[255], umid[255];
    for (int i = 0; i < 255; ++i) {
      smid[i] = (smap[i] + smap[i + 1]) * A(0.5);
      umid[i] = (umap[i] + umap[i + 1]) * A(0.5);
    }
    const AdamWScalars<A> k(s);
    const A b1 = k.b1, b2 = k.b2, eps = k.eps, decay = k.decay, bc2_sqrt = k.bc2_sqrt;
    const A step_size = k.step_size;
    // An all-zero block divides by the smallest normal number: its codes are those of 0.
    const A tiny = std::numeric_limits<A>::min();
    parallelFor(blocks, 16 * block_size, [&](int64_t kb, int64_t ke) {
      std::vector<A> m(static_cast<size_t>(block_size)), v(static_cast<size_t>(block_size));
      for (int64_t blk = kb; blk < ke; ++blk) {
        const int64_t b = blk * block_size, e = std::min(n, b + block_size);
        A mmax = 0, vmax = 0;
        for (int64_t i = b; i < e; ++i) {
          const A gi = static_cast<A>(g[i]);
          A mi = smap[cm[i]] * pam[blk] * b1 + (1 - b1) * gi;
          A vi = umap[cv[i]] * pav[blk] * b2 + (1 - b2) * gi * gi;
          A pi = static_cast<A>(p[i]) * decay;
          pi -= step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
          p[i] = static_cast<T>(pi);
          m[static_cast<size_t>(i - b)] = mi;
          v[static_cast<size_t>(i - b)] = vi;
          mmax = std::max(mmax, std::fabs(mi));
          vmax = std::max(vmax, vi);
        }
        const A mden = std::max(mmax, tiny), vden = std::max(vmax, tiny);
        for (int64_t i = b; i < e; ++i) {
          cm[i] = nearestCode(smid, m[static_cast<size_t>(i - b)] / mden);
          cv[i] = nearestCode(umid, v[static_cast<size_t>(i - b)] / vden);
        }
        pam[blk] = mmax;
        pav[blk] = vmax;
      }
    });
  });
}

}  // namespace lathe::cpu
