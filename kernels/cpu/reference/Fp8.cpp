// fp8 reference kernels: delayed-scaling factors, quantization with its amax, and the scaled
// GEMM, as plain loops. Products of fp8 values are exact in float, and the sums accumulate in
// double, so the GEMM is at least as accurate as cuBLASLt's f32 accumulation.
#include <cmath>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {
namespace {

float fp8Max(DType t) {
  return t == DType::f8e4m3 ? 448.0f : 57344.0f;
}

uint8_t toFp8(DType t, float x) {
  // Saturate first: E5M2's conversion would otherwise give infinity above its largest value.
  const float m = fp8Max(t);
  if (x > m) x = m;
  if (x < -m) x = -m;
  return t == DType::f8e4m3 ? floatToFp8e4m3(x) : floatToFp8e5m2(x);
}

float fromFp8(DType t, uint8_t v) {
  return t == DType::f8e4m3 ? fp8e4m3ToFloat(v) : fp8e5m2ToFloat(v);
}

void checkFp8(const Tensor& t, const char* op, const char* what) {
  LATHE_CHECK(t.dtype() == DType::f8e4m3 || t.dtype() == DType::f8e5m2, op, ": ", what,
              " must be f8e4m3 or f8e5m2, got ", dtypeName(t.dtype()));
}

}  // namespace

void ReferenceBackend::fp8Scale(const Tensor& amax_history, double fp8_max, int margin,
                                const Tensor& scale, const Tensor& scale_inv) {
  const float* h = static_cast<const float*>(amax_history.rawData());
  float amax = 0.0f;
  for (int64_t i = 0; i < amax_history.numel(); ++i)
    if (std::isfinite(h[i]) && h[i] > amax) amax = h[i];
  float* s = static_cast<float*>(scale.rawData());
  if (amax > 0.0f) {
    const float sc = static_cast<float>(fp8_max / std::ldexp(1.0, margin)) / amax;
    s[0] = std::isfinite(sc) ? sc : 1.0f;
  } else {
    s[0] = 1.0f;
  }
  static_cast<float*>(scale_inv.rawData())[0] = 1.0f / s[0];
}

void ReferenceBackend::quantizeFp8(const Tensor& x, const Tensor& scale, const Tensor& q,
                                   const Tensor& q_t, const Tensor& amax) {
  LATHE_CHECK(x.dim() == 2, "quantizeFp8: x must be 2-D, got ", shapeStr(x.shape()));
  if (q.defined()) checkFp8(q, "quantizeFp8", "q");
  if (q_t.defined()) checkFp8(q_t, "quantizeFp8", "q_t");
  const int64_t R = x.size(0), C = x.size(1);
  const float s = static_cast<const float*>(scale.rawData())[0];
  uint8_t* pq = q.defined() ? static_cast<uint8_t*>(q.rawData()) : nullptr;
  uint8_t* pt = q_t.defined() ? static_cast<uint8_t*>(q_t.rawData()) : nullptr;
  float m = 0.0f;
  LATHE_DISPATCH_FLOAT(x.dtype(), "quantizeFp8", [&] {
    const scalar_t* px = static_cast<const scalar_t*>(x.rawData());
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) {
        const float v = static_cast<float>(px[r * C + c]);
        const float a = std::fabs(v);
        if (std::isnan(a) || a > m) m = std::isnan(m) ? m : a;
        const float y = v * s;
        if (pq) pq[r * C + c] = toFp8(q.dtype(), y);
        if (pt) pt[c * R + r] = toFp8(q_t.dtype(), y);
      }
  });
  static_cast<float*>(amax.rawData())[0] = m;
}

void ReferenceBackend::matmulFp8(const Tensor& a, const Tensor& b, const Tensor& a_scale_inv,
                                 const Tensor& b_scale_inv, const Tensor* bias, const Tensor& out) {
  checkFp8(a, "matmulFp8", "a");
  checkFp8(b, "matmulFp8", "b");
  const int64_t M = a.size(0), K = a.size(1), N = b.size(0);
  const double sa = static_cast<const float*>(a_scale_inv.rawData())[0];
  const double sb = static_cast<const float*>(b_scale_inv.rawData())[0];
  const uint8_t* pa = static_cast<const uint8_t*>(a.rawData());
  const uint8_t* pb = static_cast<const uint8_t*>(b.rawData());
  // Decode once: 256-entry tables.
  float ta[256], tb[256];
  for (int v = 0; v < 256; ++v) {
    ta[v] = fromFp8(a.dtype(), static_cast<uint8_t>(v));
    tb[v] = fromFp8(b.dtype(), static_cast<uint8_t>(v));
  }
  LATHE_DISPATCH_FLOAT(out.dtype(), "matmulFp8", [&] {
    scalar_t* po = static_cast<scalar_t*>(out.rawData());
    const scalar_t* pbias = bias ? static_cast<const scalar_t*>(bias->rawData()) : nullptr;
    parallelFor(M * N, 2 * K, [&](int64_t begin, int64_t end) {
      for (int64_t idx = begin; idx < end; ++idx) {
        const int64_t i = idx / N, j = idx % N;
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k)
          acc += static_cast<double>(ta[pa[i * K + k]]) * static_cast<double>(tb[pb[j * K + k]]);
        double y = acc * sa * sb;
        if (pbias) y += static_cast<double>(pbias[j]);
        po[idx] = static_cast<scalar_t>(y);
      }
    });
  });
}

}  // namespace lathe::cpu
