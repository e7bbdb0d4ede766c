// Reference reductions. The input is viewed with kept dims first and reduced dims last, so each
// output element reduces one strided sub-block; accumulation is in double (integers in i64).
#include <cmath>
#include <limits>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {
namespace {

struct ReducePlan {
  Shape kept_shape, kept_strides;  // over the input, kept dims
  Shape red_shape, red_strides;    // reduced dims
  int64_t outputs = 1, count = 1;
};

ReducePlan planReduce(const Tensor& x, const std::vector<int>& dims) {
  ReducePlan p;
  for (int d = 0; d < x.dim(); ++d) {
    const bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    (reduced ? p.red_shape : p.kept_shape).push_back(x.shape()[static_cast<size_t>(d)]);
    (reduced ? p.red_strides : p.kept_strides).push_back(x.strides()[static_cast<size_t>(d)]);
  }
  p.outputs = shapeNumel(p.kept_shape);
  p.count = shapeNumel(p.red_shape);
  return p;
}

int64_t offsetOf(int64_t linear, const Shape& shape, const Shape& strides) {
  int64_t off = 0;
  for (size_t d = shape.size(); d-- > 0;) {
    off += (linear % shape[d]) * strides[d];
    linear /= shape[d];
  }
  return off;
}

}  // namespace

void ReferenceBackend::reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims,
                              const Tensor& out) {
  const ReducePlan p = planReduce(x, dims);
  LATHE_DISPATCH_ALL(x.dtype(), "reduce", [&] {
    using T = scalar_t;
    using Acc = std::conditional_t<std::is_integral_v<T>, int64_t, double>;
    const T* px = static_cast<const T*>(x.rawData());
    T* po = static_cast<T*>(out.rawData());
    parallelFor(p.outputs, std::max<int64_t>(p.count, 1), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const int64_t base = offsetOf(o, p.kept_shape, p.kept_strides);
        Acc acc = 0;
        bool first = true, nan = false;
        for (int64_t r = 0; r < p.count; ++r) {
          const Acc v =
              static_cast<Acc>(toDouble(px[base + offsetOf(r, p.red_shape, p.red_strides)]));
          if constexpr (!std::is_integral_v<T>) {
            if (std::isnan(v)) nan = true;
          }
          if (op == ReduceOp::sum || op == ReduceOp::mean) {
            acc += v;
          } else if (first || (op == ReduceOp::max ? v > acc : v < acc)) {
            acc = v;
          }
          first = false;
        }
        double result = static_cast<double>(acc);
        if (op == ReduceOp::mean) result /= static_cast<double>(p.count);
        if (nan) result = std::numeric_limits<double>::quiet_NaN();
        po[o] = fromDouble<T>(result);
      }
    });
  });
}

void ReferenceBackend::argReduce(bool is_max, const Tensor& x, int dim, const Tensor& out) {
  const ReducePlan p = planReduce(x, {dim});
  int64_t* po = out.data<int64_t>();
  LATHE_DISPATCH_ALL(x.dtype(), "argReduce", [&] {
    const scalar_t* px = static_cast<const scalar_t*>(x.rawData());
    const int64_t stride = p.red_strides[0];
    parallelFor(p.outputs, p.count, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const int64_t base = offsetOf(o, p.kept_shape, p.kept_strides);
        int64_t best = 0;
        double bv = toDouble(px[base]);
        for (int64_t r = 1; r < p.count && !std::isnan(bv); ++r) {
          const double v = toDouble(px[base + r * stride]);
          if (std::isnan(v) || (is_max ? v > bv : v < bv)) {
            bv = v;
            best = r;
          }
        }
        po[o] = best;
      }
    });
  });
}

}  // namespace lathe::cpu
