// Branch-free f32 exp and tanh for the fast CPU kernels: no libm call, so loops over them
// vectorise (the softmax of fast/Attention.cpp, tanh and GELU in fast/Elementwise.cpp). Both are
// Cephes' polynomials; relative error about 2e-7 (expf) and 1.4e-7 (tanhf, as libm's 1.6e-7).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace lathe::cpu {

// e^x for x already in [-87, 88] (and not NaN): 2^n * p(r) with r = x - n ln2 in
// [-ln2/2, ln2/2], Cephes' polynomial for p.
[[gnu::always_inline]] inline float expInRange(float xc) {
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  return y * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

// e^x: inputs below -87 (and -inf, the masked scores of attention) give exactly 0, inputs above
// 88 are clamped there. Written with selects so it vectorises.
[[gnu::always_inline]] inline float expApprox(float x) {
  const float xc = std::min(std::max(x, -87.0f), 88.0f);
  return x < -87.0f ? 0.0f : expInRange(xc);
}

// An odd polynomial below |x| = 0.625, 1 - 2 / (e^2|x| + 1) above; NaN stays NaN, +-inf give +-1.
// The selects vectorise only where the compiler may assume FP exceptions do not trap
// (-fno-trapping-math, set for fast/Elementwise.cpp).
[[gnu::always_inline]] inline float tanhApprox(float x) {
  const float ax = std::fabs(x);
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  // Past |x| = 9.01 tanh is 1 in f32 (2 / (e + 1) < 2^-25); the clamp keeps e finite.
  const float e = expApprox(2.0f * std::min(ax, 10.0f));
  const float big = std::copysign(1.0f - 2.0f / (e + 1.0f), x);
  const float t = ax < 0.625f ? small : big;
  return x != x ? x : t;
}

}  // namespace lathe::cpu
