// Fast paths for the memory-bound kernels a training step runs many times: f32/f64 unary and
// binary ops on contiguous operands (a broadcast scalar allowed), f32 <-> f64 conversion, fill,
// and sum/mean over a leading or trailing block of dims. The op is a template parameter, so each
// inner loop is one branch-free expression the compiler vectorises (the reference walks strides
// and switches on the op per element, 5-20x slower). Arithmetic is the reference's expression
// for expression (same type, same order, no contraction), so results are bit-identical; sums
// accumulate in double like the reference, over fixed blocks (independent of the thread count),
// so they differ from it only in rounding order. One exception: f32 tanh, GELU (tanh form) and
// its backward use the branch-free tanhApprox (fast/VecMath.h), which vectorises, where libm's
// tanhf is a scalar call that took a third of a GPT training step; within f32 rounding of the
// reference (tested at 2e-6 relative), not identical. Anything else goes to the reference kernels.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/CpuBackend.h"
#include "kernels/cpu/fast/VecMath.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {
namespace {

// Elements per reduction partial: partials are summed in block order, so a sum's rounding does
// not depend on how many threads ran.
constexpr int64_t kSumBlock = 16384;
// These loops stream at several bytes per cycle, so a thread team (a fork and a join, and on a
// busy machine a wait for a descheduled worker) pays off only from ~100 us of work: 128 Ki
// elements per chunk, 4x the reference kernels' grain.
constexpr int64_t kStreamGrain = int64_t{1} << 17;

bool isF32OrF64(DType t) {
  return t == DType::f32 || t == DType::f64;
}

// Every stride 0: a broadcast scalar.
bool isBroadcastScalar(const Tensor& t) {
  for (int64_t s : t.strides())
    if (s != 0) return false;
  return true;
}

// body(begin, end) over [0, n) in kStreamGrain chunks across the pool (serial when small).
template <typename F>
void forChunks(int64_t n, F&& body) {
  if (n < 2 * kStreamGrain) {
    if (n > 0) body(int64_t{0}, n);
    return;
  }
  const int64_t chunks = (n + kStreamGrain - 1) / kStreamGrain;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) body(c * kStreamGrain, std::min(n, (c + 1) * kStreamGrain));
}

// body(begin, end) over [0, n) items holding `elements` elements in all: split across the pool
// like parallelFor, but only from 2 * kStreamGrain elements.
template <typename F>
void forItems(int64_t n, int64_t elements, F&& body) {
  if (elements < 2 * kStreamGrain || n < 2) {
    if (n > 0) body(int64_t{0}, n);
    return;
  }
  parallelFor(n, kParallelGrain, body);
}

constexpr float kGeluK = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluC = 0.044715f;

// ---- unary ----

template <typename T, typename F>
void mapUnary(const T* x, T* o, int64_t n, F f) {
  forChunks(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) o[i] = f(x[i]);
  });
}

// Returns false for ops without a fast path. C is the reference's compute type (T for f32/f64).
template <typename T>
bool fastUnary(UnaryOp op, const T* x, T* o, int64_t n, double pa, double pb) {
  const T a = static_cast<T>(pa), b = static_cast<T>(pb);
  switch (op) {
    case UnaryOp::neg: mapUnary(x, o, n, [](T v) { return -v; }); return true;
    case UnaryOp::abs: mapUnary(x, o, n, [](T v) { return std::abs(v); }); return true;
    case UnaryOp::square: mapUnary(x, o, n, [](T v) { return v * v; }); return true;
    case UnaryOp::reciprocal:
      mapUnary(x, o, n, [](T v) { return static_cast<T>(1) / v; });
      return true;
    case UnaryOp::relu:
      mapUnary(x, o, n, [](T v) { return v > 0 ? v : static_cast<T>(0); });
      return true;
    case UnaryOp::add_scalar: mapUnary(x, o, n, [a](T v) { return v + a; }); return true;
    case UnaryOp::mul_scalar: mapUnary(x, o, n, [a](T v) { return v * a; }); return true;
    case UnaryOp::rsub_scalar: mapUnary(x, o, n, [a](T v) { return a - v; }); return true;
    case UnaryOp::rdiv_scalar: mapUnary(x, o, n, [a](T v) { return a / v; }); return true;
    case UnaryOp::affine: mapUnary(x, o, n, [a, b](T v) { return v * a + b; }); return true;
    default: break;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (op == UnaryOp::tanh) {
      mapUnary(x, o, n, [](float v) { return tanhApprox(v); });
      return true;
    }
    if (op == UnaryOp::gelu_tanh) {
      mapUnary(x, o, n, [](float v) {
        return 0.5f * v * (1.0f + tanhApprox(kGeluK * (v + kGeluC * v * v * v)));
      });
      return true;
    }
  }
  return false;
}

// ---- binary ----

// o[i] = f(x[i], y[i]); a broadcast-scalar operand is read once (xs / ys).
template <typename T, typename F>
void mapBinary(const T* x, bool xs, const T* y, bool ys, T* o, int64_t n, F f) {
  forChunks(n, [&](int64_t b, int64_t e) {
    if (xs) {
      const T xv = x[0];
      for (int64_t i = b; i < e; ++i) o[i] = f(xv, y[i]);
    } else if (ys) {
      const T yv = y[0];
      for (int64_t i = b; i < e; ++i) o[i] = f(x[i], yv);
    } else {
      for (int64_t i = b; i < e; ++i) o[i] = f(x[i], y[i]);
    }
  });
}

template <typename T>
bool fastBinary(BinaryOp op, const T* x, bool xs, const T* y, bool ys, T* o, int64_t n) {
  switch (op) {
    case BinaryOp::add: mapBinary(x, xs, y, ys, o, n, [](T u, T v) { return u + v; }); return true;
    case BinaryOp::sub: mapBinary(x, xs, y, ys, o, n, [](T u, T v) { return u - v; }); return true;
    case BinaryOp::mul: mapBinary(x, xs, y, ys, o, n, [](T u, T v) { return u * v; }); return true;
    case BinaryOp::div: mapBinary(x, xs, y, ys, o, n, [](T u, T v) { return u / v; }); return true;
    case BinaryOp::maximum:
      mapBinary(x, xs, y, ys, o, n, [](T u, T v) { return (u != u || u > v) ? u : v; });
      return true;
    case BinaryOp::minimum:
      mapBinary(x, xs, y, ys, o, n, [](T u, T v) { return (u != u || u < v) ? u : v; });
      return true;
    case BinaryOp::relu_bw:
      mapBinary(x, xs, y, ys, o, n, [](T g, T v) { return v > 0 ? g : static_cast<T>(0); });
      return true;
    case BinaryOp::sigmoid_bw:
      mapBinary(x, xs, y, ys, o, n, [](T g, T v) { return g * v * (static_cast<T>(1) - v); });
      return true;
    case BinaryOp::tanh_bw:
      mapBinary(x, xs, y, ys, o, n, [](T g, T v) { return g * (static_cast<T>(1) - v * v); });
      return true;
    default: break;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (op == BinaryOp::gelu_tanh_bw) {  // (g, x): the reference's expression, branch-free tanh
      mapBinary(x, xs, y, ys, o, n, [](float g, float v) {
        const float t = tanhApprox(kGeluK * (v + kGeluC * v * v * v));
        const float dinner = kGeluK * (1.0f + 3.0f * kGeluC * v * v);
        return g * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * dinner);
      });
      return true;
    }
  }
  return false;
}

// ---- reductions ----

// Sum of p[0, n) in double: four independent accumulators (vectorisable, no reassociation
// needed), combined in a fixed order.
template <typename T>
double blockSum(const T* p, int64_t n) {
  double acc[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) acc[k] += static_cast<double>(p[i + k]);
  for (; i < n; ++i) acc[0] += static_cast<double>(p[i]);
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

// out[o] = sum of row o of x [outer, inner] / divisor (1 for sums, the count for means, as the
// reference divides); long rows are summed in kSumBlock partials.
template <typename T>
void sumRows(const T* x, T* out, int64_t outer, int64_t inner, double divisor) {
  if (outer == 1 || inner >= kSumBlock * 4) {
    const int64_t blocks = (inner + kSumBlock - 1) / kSumBlock;
    std::vector<double> partial(static_cast<size_t>(std::max<int64_t>(blocks, 1)));
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = x + o * inner;
      auto sum_blocks = [&](int64_t b0, int64_t b1) {
        for (int64_t blk = b0; blk < b1; ++blk) {
          const int64_t s = blk * kSumBlock;
          partial[static_cast<size_t>(blk)] = blockSum(row + s, std::min(kSumBlock, inner - s));
        }
      };
      if (inner < 2 * kStreamGrain) {
        sum_blocks(0, blocks);
      } else {
#pragma omp parallel for schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) sum_blocks(blk, blk + 1);
      }
      double total = 0;
      for (int64_t blk = 0; blk < blocks; ++blk) total += partial[static_cast<size_t>(blk)];
      out[o] = static_cast<T>(total / divisor);
    }
    return;
  }
  forItems(outer, outer * inner, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      out[o] = static_cast<T>(blockSum(x + o * inner, inner) / divisor);
  });
}

// out[k] = sum over r of x[r, k] (/ divisor) for x [outer, inner]: each output sums its column
// in row order, the reference's order, so the result is bit-identical; columns split across
// threads.
template <typename T>
void sumColumns(const T* x, T* out, int64_t outer, int64_t inner, double divisor) {
  forItems(inner, outer * inner, [&](int64_t k0, int64_t k1) {
    std::vector<double> acc(static_cast<size_t>(k1 - k0), 0.0);
    double* a = acc.data();
    const int64_t w = k1 - k0;
    for (int64_t r = 0; r < outer; ++r) {
      const T* row = x + r * inner + k0;
      for (int64_t k = 0; k < w; ++k) a[k] += static_cast<double>(row[k]);
    }
    for (int64_t k = 0; k < w; ++k) out[k0 + k] = static_cast<T>(a[k] / divisor);
  });
}

}  // namespace

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  const DType s = src.dtype(), d = dst.dtype();
  if (s != d && isF32OrF64(s) && isF32OrF64(d) && src.isContiguous() && dst.isContiguous() &&
      src.device().isCpu() && dst.device().isCpu()) {
    const int64_t n = dst.numel();
    if (s == DType::f32) {
      const float* ps = src.data<float>();
      double* pd = dst.data<double>();
      forChunks(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) pd[i] = static_cast<double>(ps[i]);
      });
    } else {
      const double* ps = src.data<double>();
      float* pd = dst.data<float>();
      forChunks(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) pd[i] = static_cast<float>(ps[i]);
      });
    }
    return;
  }
  ReferenceBackend::copy(src, dst);
}

void CpuBackend::fill(const Tensor& dst, double value) {
  if (!dst.isContiguous() || !isF32OrF64(dst.dtype())) return ReferenceBackend::fill(dst, value);
  const int64_t n = dst.numel();
  auto run = [&](auto* p) {
    using T = std::remove_pointer_t<decltype(p)>;
    const T v = static_cast<T>(value);
    if (v == 0 && !std::signbit(v)) {
      forChunks(n, [&](int64_t b, int64_t e) {
        std::memset(p + b, 0, static_cast<size_t>(e - b) * sizeof(T));
      });
    } else {
      forChunks(n, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
    }
  };
  if (dst.dtype() == DType::f32)
    run(dst.data<float>());
  else
    run(dst.data<double>());
}

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) {
  if (x.dtype() == out.dtype() && isF32OrF64(x.dtype()) && x.isContiguous() && out.isContiguous()) {
    const bool done =
        x.dtype() == DType::f32
            ? fastUnary<float>(op, x.data<float>(), out.data<float>(), out.numel(), a, b)
            : fastUnary<double>(op, x.data<double>(), out.data<double>(), out.numel(), a, b);
    if (done) return;
  }
  ReferenceBackend::unary(op, x, out, a, b);
}

void CpuBackend::binary(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  const DType t = out.dtype();
  if (isF32OrF64(t) && x.dtype() == t && y.dtype() == t && out.isContiguous()) {
    const bool xs = out.numel() > 1 && isBroadcastScalar(x);
    const bool ys = out.numel() > 1 && isBroadcastScalar(y);
    if ((xs || x.isContiguous()) && (ys || y.isContiguous()) && !(xs && ys)) {
      const bool done = t == DType::f32
                            ? fastBinary<float>(op, x.data<float>(), xs, y.data<float>(), ys,
                                                out.data<float>(), out.numel())
                            : fastBinary<double>(op, x.data<double>(), xs, y.data<double>(), ys,
                                                 out.data<double>(), out.numel());
      if (done) return;
    }
  }
  ReferenceBackend::binary(op, x, y, out);
}

void CpuBackend::reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims,
                        const Tensor& out) {
  const bool sum_like = op == ReduceOp::sum || op == ReduceOp::mean;
  if (!sum_like || !isF32OrF64(x.dtype()) || out.dtype() != x.dtype() || !x.isContiguous() ||
      !out.isContiguous() || x.numel() == 0)
    return ReferenceBackend::reduce(op, x, dims, out);
  // dims (sorted, distinct) must be a leading or a trailing block of x's dims.
  const int nd = x.dim();
  const auto k = static_cast<int>(dims.size());
  bool leading = true, trailing = true;
  for (int i = 0; i < k; ++i) {
    if (dims[static_cast<size_t>(i)] != i) leading = false;
    if (dims[static_cast<size_t>(i)] != nd - k + i) trailing = false;
  }
  if (!leading && !trailing) return ReferenceBackend::reduce(op, x, dims, out);
  int64_t reduced = 1;
  for (int d : dims) reduced *= x.shape()[static_cast<size_t>(d)];
  const int64_t kept = x.numel() / reduced;
  const double divisor = op == ReduceOp::mean ? static_cast<double>(reduced) : 1.0;
  auto run = [&](auto* px) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(px)>>;
    T* po = out.data<T>();
    if (trailing)
      sumRows<T>(px, po, kept, reduced, divisor);
    else
      sumColumns<T>(px, po, reduced, kept, divisor);
  };
  if (x.dtype() == DType::f32)
    run(static_cast<const float*>(x.rawData()));
  else
    run(static_cast<const double*>(x.rawData()));
}

}  // namespace lathe::cpu
