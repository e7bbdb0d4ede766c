// Reference random kernels on the counter-based Philox stream (core/tensor/Random.h): element
// i of a draw depends only on (seed, offset + i), so any thread split gives the same numbers.
#include "core/tensor/Random.h"

#include <cmath>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {

void ReferenceBackend::randomUniform(const Tensor& out, RandomState rs, double low, double high) {
  LATHE_DISPATCH_ALL(out.dtype(), "randomUniform", [&] {
    scalar_t* po = static_cast<scalar_t*>(out.rawData());
    parallelFor(out.numel(), 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const double u = philoxUniform(rs, static_cast<uint64_t>(i));
        if constexpr (std::is_integral_v<scalar_t>) {
          const double v = std::floor(low + u * (high - low));
          po[i] = static_cast<scalar_t>(std::min(v, high - 1));
        } else {
          po[i] = fromDouble<scalar_t>(low + u * (high - low));
        }
      }
    });
  });
}

void ReferenceBackend::randomNormal(const Tensor& out, RandomState rs, double mean, double std) {
  LATHE_DISPATCH_FLOAT(out.dtype(), "randomNormal", [&] {
    scalar_t* po = static_cast<scalar_t*>(out.rawData());
    parallelFor(out.numel(), 32, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        po[i] = fromDouble<scalar_t>(mean + std * philoxNormal(rs, static_cast<uint64_t>(i)));
    });
  });
}

void ReferenceBackend::dropout(const Tensor& x, double p, RandomState rs, const Tensor& out,
                               const Tensor& mask) {
  uint8_t* pm = mask.data<uint8_t>();
  const double scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  LATHE_DISPATCH_FLOAT(x.dtype(), "dropout", [&] {
    const scalar_t* px = static_cast<const scalar_t*>(x.rawData());
    scalar_t* po = static_cast<scalar_t*>(out.rawData());
    parallelFor(x.numel(), 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const bool keep = philoxUniform(rs, static_cast<uint64_t>(i)) >= p;
        pm[i] = keep ? 1 : 0;
        po[i] = fromDouble<scalar_t>(keep ? toDouble(px[i]) * scale : 0.0);
      }
    });
  });
}

}  // namespace lathe::cpu
