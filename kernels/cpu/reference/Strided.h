// Strided iteration for the reference kernels: walks N operands of one shape (each with its own
// strides, 0 for broadcast dims) in row-major order, after merging dims that are contiguous for
// every operand. Rows of the innermost dim are split across OpenMP threads; with unit inner
// strides the inner loop is a plain indexed loop the compiler can vectorise.
#pragma once

#include <omp.h>

#include <array>
#include <cstdint>
#include <vector>

#include "core/tensor/Tensor.h"

namespace lathe::cpu {

// Below this many elements a kernel runs on one thread (thread start-up costs more).
inline constexpr int64_t kParallelGrain = 32768;

template <size_t N>
struct StridedPlan {
  std::vector<int64_t> shape;                   // coalesced
  std::array<std::vector<int64_t>, N> strides;  // coalesced, per operand
};

template <size_t N>
StridedPlan<N> planStrided(const Shape& shape, const std::array<const Shape*, N>& strides) {
  StridedPlan<N> p;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;  // size-1 dims never move the offset
    if (!p.shape.empty()) {
      bool mergeable = true;
      for (size_t k = 0; k < N; ++k)
        if (p.strides[k].back() != (*strides[k])[d] * shape[d]) mergeable = false;
      if (mergeable) {
        p.shape.back() *= shape[d];
        for (size_t k = 0; k < N; ++k) p.strides[k].back() = (*strides[k])[d];
        continue;
      }
    }
    p.shape.push_back(shape[d]);
    for (size_t k = 0; k < N; ++k) p.strides[k].push_back((*strides[k])[d]);
  }
  if (p.shape.empty()) {
    p.shape.push_back(1);
    for (size_t k = 0; k < N; ++k) p.strides[k].push_back(0);
  }
  return p;
}

// Calls f(offsets) for every element, offsets[k] being operand k's element offset (relative to
// its data pointer). f must be safe to call concurrently for distinct elements.
template <size_t N, typename F>
void forEachStrided(const Shape& shape, const std::array<const Shape*, N>& strides, F&& f) {
  const StridedPlan<N> p = planStrided<N>(shape, strides);
  const int nd = static_cast<int>(p.shape.size());
  const int64_t inner = p.shape.back();
  int64_t rows = 1;
  for (int d = 0; d + 1 < nd; ++d) rows *= p.shape[static_cast<size_t>(d)];
  std::array<int64_t, N> inner_stride;
  bool unit = true;
  for (size_t k = 0; k < N; ++k) {
    inner_stride[k] = p.strides[k].back();
    if (inner_stride[k] != 1) unit = false;
  }
  const int64_t total = rows * inner;

  auto run_rows = [&](int64_t r0, int64_t r1, int64_t i0, int64_t i1) {
    for (int64_t r = r0; r < r1; ++r) {
      std::array<int64_t, N> base{};
      int64_t rem = r;
      for (int d = nd - 2; d >= 0; --d) {
        const int64_t idx = rem % p.shape[static_cast<size_t>(d)];
        rem /= p.shape[static_cast<size_t>(d)];
        for (size_t k = 0; k < N; ++k) base[k] += idx * p.strides[k][static_cast<size_t>(d)];
      }
      std::array<int64_t, N> off;
      if (unit) {
        for (int64_t i = i0; i < i1; ++i) {
          for (size_t k = 0; k < N; ++k) off[k] = base[k] + i;
          f(off);
        }
      } else {
        for (int64_t i = i0; i < i1; ++i) {
          for (size_t k = 0; k < N; ++k) off[k] = base[k] + i * inner_stride[k];
          f(off);
        }
      }
    }
  };

  if (total < kParallelGrain) {
    run_rows(0, rows, 0, inner);
  } else if (rows == 1) {
    // One long row: split it into chunks.
    const int64_t chunks = (inner + kParallelGrain - 1) / kParallelGrain;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; ++c)
      run_rows(0, 1, c * kParallelGrain, std::min(inner, (c + 1) * kParallelGrain));
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) run_rows(r, r + 1, 0, inner);
  }
}

// Runs body(begin, end) over [0, n) on the thread pool when n * cost_per_item is large enough.
template <typename F>
void parallelFor(int64_t n, int64_t cost_per_item, F&& body) {
  if (n <= 1 || n * cost_per_item < kParallelGrain) {
    if (n > 0) body(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t b = t * chunk, e = std::min(n, b + chunk);
    if (b < e) body(b, e);
  }
}

}  // namespace lathe::cpu
