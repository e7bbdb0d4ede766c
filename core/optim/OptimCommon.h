// Helpers shared by the optimizer implementations in core/optim (not a public header): option
// checks whose errors name the option and value, views into flat state, and chunked loops that
// bound the workspace of tensor-op optimizer steps.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/base/Error.h"
#include "core/tensor/Tensor.h"

namespace lathe::optim::internal {

// Elements per slice of a tensor-op optimizer step: each temporary of a slice is 4 MiB in f32,
// so the workspace stays bounded (a few slices) however large a group is, while slices stay
// large enough that per-op overhead (allocation, kernel launch) is negligible.
constexpr int64_t kStepChunk = int64_t{1} << 20;

inline Tensor viewOf(const Tensor& flat, const Shape& shape, int64_t offset) {
  return Tensor::makeView(flat, shape, contiguousStrides(shape), flat.offset() + offset);
}

inline void checkOption(bool ok, const char* who, const char* option, double value,
                        const char* expected) {
  LATHE_CHECK(ok, who, ": option ", option, " = ", value, " is invalid; expected ", expected);
}
inline bool nonNegative(double v) {
  return std::isfinite(v) && v >= 0.0;
}
inline bool unitInterval(double v) {  // [0, 1)
  return std::isfinite(v) && v >= 0.0 && v < 1.0;
}

// Calls fn(begin, end) over [0, n) in slices of at most `chunk` elements.
template <typename Fn>
void forChunks(int64_t n, int64_t chunk, Fn&& fn) {
  for (int64_t b = 0; b < n; b += chunk) fn(b, std::min(n, b + chunk));
}

}  // namespace lathe::optim::internal
