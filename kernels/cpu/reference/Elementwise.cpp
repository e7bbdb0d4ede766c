// Reference elementwise kernels: copy/convert, fill, arange, unary, binary, where, triangle.
// Arithmetic happens in compute_t<T> (f32 for 16/8-bit floats) and in double for integers.
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {
namespace {

template <typename T>
using calc_t = std::conditional_t<std::is_integral_v<T>, double, compute_t<T>>;

template <typename C>
C geluExact(C x) {
  return static_cast<C>(0.5) * x *
         (static_cast<C>(1) + std::erf(x * static_cast<C>(0.7071067811865476)));
}
template <typename C>
C geluTanh(C x) {
  const C k = static_cast<C>(0.7978845608028654);  // sqrt(2/pi)
  return static_cast<C>(0.5) * x *
         (static_cast<C>(1) + std::tanh(k * (x + static_cast<C>(0.044715) * x * x * x)));
}
template <typename C>
C sigmoidOf(C x) {
  return static_cast<C>(1) / (static_cast<C>(1) + std::exp(-x));
}

template <typename C>
C applyUnary(UnaryOp op, C x, C a, C b) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return std::exp(x);
    case UnaryOp::log: return std::log(x);
    case UnaryOp::sqrt: return std::sqrt(x);
    case UnaryOp::rsqrt: return static_cast<C>(1) / std::sqrt(x);
    case UnaryOp::abs: return std::abs(x);
    case UnaryOp::sign: return static_cast<C>((x > 0) - (x < 0));
    case UnaryOp::reciprocal: return static_cast<C>(1) / x;
    case UnaryOp::square: return x * x;
    case UnaryOp::relu: return x > 0 ? x : static_cast<C>(0);
    case UnaryOp::gelu: return geluExact(x);
    case UnaryOp::gelu_tanh: return geluTanh(x);
    case UnaryOp::silu: return x * sigmoidOf(x);
    case UnaryOp::sigmoid: return sigmoidOf(x);
    case UnaryOp::tanh: return std::tanh(x);
    case UnaryOp::sin: return std::sin(x);
    case UnaryOp::cos: return std::cos(x);
    case UnaryOp::add_scalar: return x + a;
    case UnaryOp::mul_scalar: return x * a;
    case UnaryOp::rsub_scalar: return a - x;
    case UnaryOp::rdiv_scalar: return a / x;
    case UnaryOp::pow_scalar: return std::pow(x, a);
    case UnaryOp::clamp: return std::isnan(x) ? x : (x < a ? a : (x > b ? b : x));
    case UnaryOp::affine: return x * a + b;
  }
  return x;
}

template <typename C>
C applyBinary(BinaryOp op, C x, C y) {
  switch (op) {
    case BinaryOp::add: return x + y;
    case BinaryOp::sub: return x - y;
    case BinaryOp::mul: return x * y;
    case BinaryOp::div: return x / y;
    case BinaryOp::pow: return std::pow(x, y);
    case BinaryOp::maximum: return (std::isnan(x) || x > y) ? x : y;
    case BinaryOp::minimum: return (std::isnan(x) || x < y) ? x : y;
    case BinaryOp::eq: return x == y;
    case BinaryOp::ne: return x != y;
    case BinaryOp::lt: return x < y;
    case BinaryOp::le: return x <= y;
    case BinaryOp::gt: return x > y;
    case BinaryOp::ge: return x >= y;
    case BinaryOp::relu_bw: return y > 0 ? x : static_cast<C>(0);
    case BinaryOp::gelu_bw: {
      const C cdf = static_cast<C>(0.5) *
                    (static_cast<C>(1) + std::erf(y * static_cast<C>(0.7071067811865476)));
      const C pdf = std::exp(static_cast<C>(-0.5) * y * y) * static_cast<C>(0.3989422804014327);
      return x * (cdf + y * pdf);
    }
    case BinaryOp::gelu_tanh_bw: {
      const C k = static_cast<C>(0.7978845608028654), c = static_cast<C>(0.044715);
      const C inner = k * (y + c * y * y * y);
      const C t = std::tanh(inner);
      const C dinner = k * (static_cast<C>(1) + static_cast<C>(3) * c * y * y);
      return x * (static_cast<C>(0.5) * (static_cast<C>(1) + t) +
                  static_cast<C>(0.5) * y * (static_cast<C>(1) - t * t) * dinner);
    }
    case BinaryOp::silu_bw: {
      const C s = sigmoidOf(y);
      return x * s * (static_cast<C>(1) + y * (static_cast<C>(1) - s));
    }
    case BinaryOp::sigmoid_bw: return x * y * (static_cast<C>(1) - y);
    case BinaryOp::tanh_bw: return x * (static_cast<C>(1) - y * y);
  }
  return x;
}

bool isComparison(BinaryOp op) {
  return op == BinaryOp::eq || op == BinaryOp::ne || op == BinaryOp::lt || op == BinaryOp::le ||
         op == BinaryOp::gt || op == BinaryOp::ge;
}

}  // namespace

void ReferenceBackend::copy(const Tensor& src, const Tensor& dst) {
  LATHE_CHECK(src.device().isCpu() && dst.device().isCpu(), "reference copy: ", describe(src),
              " -> ", describe(dst), " involves a non-CPU device");
  if (src.dtype() == dst.dtype() && src.isContiguous() && dst.isContiguous()) {
    if (src.rawData() != dst.rawData()) std::memcpy(dst.rawData(), src.rawData(), dst.nbytes());
    return;
  }
  LATHE_DISPATCH_ALL(src.dtype(), "copy", [&] {
    using S = scalar_t;
    const S* s = static_cast<const S*>(src.rawData());
    LATHE_DISPATCH_ALL(dst.dtype(), "copy", [&] {
      using D = scalar_t;
      D* d = static_cast<D*>(dst.rawData());
      forEachStrided<2>(dst.shape(), {&dst.strides(), &src.strides()}, [&](const auto& o) {
        if constexpr (std::is_same_v<S, D>) {
          d[o[0]] = s[o[1]];
        } else if constexpr (std::is_integral_v<S> && std::is_integral_v<D>) {
          d[o[0]] = static_cast<D>(s[o[1]]);
        } else {
          d[o[0]] = fromDouble<D>(toDouble(s[o[1]]));
        }
      });
    });
  });
}

void ReferenceBackend::fill(const Tensor& dst, double value) {
  LATHE_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    const scalar_t v = fromDouble<scalar_t>(value);
    scalar_t* d = static_cast<scalar_t*>(dst.rawData());
    forEachStrided<1>(dst.shape(), {&dst.strides()}, [&](const auto& o) { d[o[0]] = v; });
  });
}

void ReferenceBackend::arange(const Tensor& dst, double start, double step) {
  LATHE_DISPATCH_ALL(dst.dtype(), "arange", [&] {
    scalar_t* d = static_cast<scalar_t*>(dst.rawData());
    const int64_t n = dst.numel();
    for (int64_t i = 0; i < n; ++i)
      d[i] = fromDouble<scalar_t>(start + static_cast<double>(i) * step);
  });
}

void ReferenceBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) {
  LATHE_DISPATCH_ALL(x.dtype(), "unary", [&] {
    using T = scalar_t;
    if constexpr (std::is_same_v<T, bool>) {
      fail("unary op on a bool tensor ", describe(x));
    } else {
      using C = calc_t<T>;
      const T* px = static_cast<const T*>(x.rawData());
      T* po = static_cast<T*>(out.rawData());
      const C ca = static_cast<C>(a), cb = static_cast<C>(b);
      forEachStrided<2>(out.shape(), {&out.strides(), &x.strides()}, [&](const auto& o) {
        po[o[0]] = static_cast<T>(applyUnary<C>(op, static_cast<C>(px[o[1]]), ca, cb));
      });
    }
  });
}

void ReferenceBackend::binary(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  LATHE_DISPATCH_ALL(x.dtype(), "binary", [&] {
    using T = scalar_t;
    using C = std::conditional_t<std::is_same_v<T, bool>, double, calc_t<T>>;
    const T* px = static_cast<const T*>(x.rawData());
    const T* py = static_cast<const T*>(y.rawData());
    const std::array<const Shape*, 3> st{&out.strides(), &x.strides(), &y.strides()};
    if (isComparison(op)) {
      bool* po = out.data<bool>();
      forEachStrided<3>(out.shape(), st, [&](const auto& o) {
        po[o[0]] = applyBinary<C>(op, static_cast<C>(px[o[1]]), static_cast<C>(py[o[2]])) != 0;
      });
    } else {
      T* po = static_cast<T*>(out.rawData());
      forEachStrided<3>(out.shape(), st, [&](const auto& o) {
        po[o[0]] =
            static_cast<T>(applyBinary<C>(op, static_cast<C>(px[o[1]]), static_cast<C>(py[o[2]])));
      });
    }
  });
}

void ReferenceBackend::where(const Tensor& cond, const Tensor& x, const Tensor& y,
                             const Tensor& out) {
  const bool* pc = cond.data<bool>();
  LATHE_DISPATCH_ALL(x.dtype(), "where", [&] {
    const scalar_t* px = static_cast<const scalar_t*>(x.rawData());
    const scalar_t* py = static_cast<const scalar_t*>(y.rawData());
    scalar_t* po = static_cast<scalar_t*>(out.rawData());
    forEachStrided<4>(out.shape(), {&out.strides(), &cond.strides(), &x.strides(), &y.strides()},
                      [&](const auto& o) { po[o[0]] = pc[o[1]] ? px[o[2]] : py[o[3]]; });
  });
}

void ReferenceBackend::triangle(const Tensor& x, const Tensor& out, int64_t k, bool upper) {
  const int64_t R = x.size(-2), Cn = x.size(-1);
  const int64_t mats = x.numel() / std::max<int64_t>(R * Cn, 1);
  LATHE_DISPATCH_ALL(x.dtype(), "triangle", [&] {
    const scalar_t* px = static_cast<const scalar_t*>(x.rawData());
    scalar_t* po = static_cast<scalar_t*>(out.rawData());
    const scalar_t zero = fromDouble<scalar_t>(0.0);
    for (int64_t m = 0; m < mats; ++m)
      for (int64_t i = 0; i < R; ++i)
        for (int64_t j = 0; j < Cn; ++j) {
          const int64_t idx = (m * R + i) * Cn + j;
          const bool keep = upper ? (j - i >= k) : (j - i <= k);
          po[idx] = keep ? px[idx] : zero;
        }
  });
}

}  // namespace lathe::cpu
