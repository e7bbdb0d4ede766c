// Fast fused AdamW step for f32 parameters with f32 state: the reference loop of
// reference/Optim.cpp eight lanes at a time on AVX (the scalar loop cannot vectorise: sqrtf
// may set errno). Every lane does the reference's operations in its order with IEEE-exact
// mul/add/div/sqrt and no FMA, so the update is bit-identical to the reference; the tail and
// CPUs without AVX run the scalar loop. One pass over p, g, m, v: memory-bound at ~16 bytes per
// parameter once the divide and square root are vectorised.
#include <cmath>

#include "kernels/cpu/CpuBackend.h"
#include "kernels/cpu/reference/Strided.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LATHE_FAST_OPTIM_X86 1
#endif

namespace lathe::cpu {
namespace {

struct AdamWConsts {
  float lr, b1, b2, eps, decay, bc1, bc2_sqrt, step_size, one_minus_b1, one_minus_b2;
};

AdamWConsts constsOf(const AdamWStep& s) {
  AdamWConsts c;
  c.lr = static_cast<float>(s.lr);
  c.b1 = static_cast<float>(s.beta1);
  c.b2 = static_cast<float>(s.beta2);
  c.eps = static_cast<float>(s.eps);
  c.decay = static_cast<float>(1.0 - s.lr * s.weight_decay);
  c.bc1 = static_cast<float>(1.0 - std::pow(s.beta1, static_cast<double>(s.step)));
  c.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(s.beta2, static_cast<double>(s.step))));
  c.step_size = c.lr / c.bc1;
  c.one_minus_b1 = 1 - c.b1;
  c.one_minus_b2 = 1 - c.b2;
  return c;
}

// The reference's loop body, element by element.
void adamwScalar(float* p, const float* g, float* m, float* v, int64_t b, int64_t e,
                 const AdamWConsts& c) {
  for (int64_t i = b; i < e; ++i) {
    const float gi = g[i];
    float pi = p[i] * c.decay;
    m[i] = m[i] * c.b1 + c.one_minus_b1 * gi;
    v[i] = v[i] * c.b2 + c.one_minus_b2 * gi * gi;
    const float denom = std::sqrt(v[i]) / c.bc2_sqrt + c.eps;
    pi -= c.step_size * m[i] / denom;
    p[i] = pi;
  }
}

#ifdef LATHE_FAST_OPTIM_X86
__attribute__((target("avx"))) void adamwAvx(float* p, const float* g, float* m, float* v,
                                             int64_t b, int64_t e, const AdamWConsts& c) {
  const __m256 decay = _mm256_set1_ps(c.decay), b1 = _mm256_set1_ps(c.b1),
               b2 = _mm256_set1_ps(c.b2), omb1 = _mm256_set1_ps(c.one_minus_b1),
               omb2 = _mm256_set1_ps(c.one_minus_b2), bc2 = _mm256_set1_ps(c.bc2_sqrt),
               eps = _mm256_set1_ps(c.eps), step = _mm256_set1_ps(c.step_size);
  int64_t i = b;
  for (; i + 8 <= e; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    __m256 pi = _mm256_mul_ps(_mm256_loadu_ps(p + i), decay);
    const __m256 mi =
        _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), b1), _mm256_mul_ps(omb1, gi));
    const __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2),
                                    _mm256_mul_ps(_mm256_mul_ps(omb2, gi), gi));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
    pi = _mm256_sub_ps(pi, _mm256_div_ps(_mm256_mul_ps(step, mi), denom));
    _mm256_storeu_ps(p + i, pi);
  }
  adamwScalar(p, g, m, v, i, e, c);
}

bool hasAvx() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") != 0;
  }();
  return yes;
}
#endif

}  // namespace

void CpuBackend::adamwStep(const Tensor& param, const Tensor& grad, const Tensor& m,
                           const Tensor& v, const AdamWStep& s) {
  const bool f32 = param.dtype() == DType::f32 && grad.dtype() == DType::f32 &&
                   m.dtype() == DType::f32 && v.dtype() == DType::f32;
  if (!f32 || !param.isContiguous() || !grad.isContiguous() || !m.isContiguous() ||
      !v.isContiguous())
    return ReferenceBackend::adamwStep(param, grad, m, v, s);
  const AdamWConsts c = constsOf(s);
  float* p = param.data<float>();
  const float* g = grad.data<float>();
  float* pm = m.data<float>();
  float* pv = v.data<float>();
  parallelFor(param.numel(), 8, [&](int64_t b, int64_t e) {
#ifdef LATHE_FAST_OPTIM_X86
    if (hasAvx()) return adamwAvx(p, g, pm, pv, b, e, c);
#endif
    adamwScalar(p, g, pm, pv, b, e, c);
  });
}

}  // namespace lathe::cpu
