// Elementwise ops: broadcasting binary ops, scalar ops, activations and where, with their
// gradient rules. Activation backwards use fused *_bw kernels (one pass over memory).
#include <cmath>
#include <limits>

#include "core/ops/Autocast.h"
#include "core/ops/OpsCommon.h"

namespace lathe {
namespace detail {

Tensor broadcastView(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  const size_t lead = shape.size() - t.shape().size();
  Shape st(shape.size(), 0);
  for (size_t i = lead; i < shape.size(); ++i)
    st[i] = t.shape()[i - lead] == shape[i] ? t.strides()[i - lead] : 0;
  return Tensor::makeView(t, shape, st, t.offset());
}

std::vector<int> normDims(const Tensor& t, const std::vector<int>& dims, const char* op) {
  std::vector<int> out;
  if (dims.empty()) {
    for (int i = 0; i < t.dim(); ++i) out.push_back(i);
    return out;
  }
  std::vector<bool> seen(static_cast<size_t>(std::max(t.dim(), 1)), false);
  for (int d : dims) {
    const int nd = t.normDim(d);
    LATHE_CHECK(!seen[static_cast<size_t>(nd)], op, ": dimension ", d, " repeated for ",
                describe(t));
    seen[static_cast<size_t>(nd)] = true;
    out.push_back(nd);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Shape keepdimShape(const Shape& s, const std::vector<int>& dims) {
  Shape k = s;
  for (int d : dims) k[static_cast<size_t>(d)] = 1;
  return k;
}

Tensor zeroScalar(const Tensor& t) {
  return Tensor::zeros({}, t.dtype(), t.device());
}

void requireFloating(const Tensor& t, const char* op, const char* arg) {
  LATHE_CHECK(isFloating(t.dtype()) && t.dtype() != DType::f8e4m3 && t.dtype() != DType::f8e5m2, op,
              ": ", arg, " must be f32, f64, f16 or bf16, got ", describe(t));
}

void requireIndex(const Tensor& t, Device device, const char* op, const char* arg) {
  LATHE_CHECK(t.dtype() == DType::i64 || t.dtype() == DType::i32, op, ": ", arg,
              " must be an i64 or i32 index tensor, got ", describe(t));
  LATHE_CHECK(t.device() == device, op, ": ", arg, " is on ", t.device().str(), ", expected ",
              device.str());
}

}  // namespace detail

using detail::broadcastView;

Shape broadcastShapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    LATHE_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shapeStr(a), " and ", shapeStr(b),
                " cannot be broadcast together (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sumToShape(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const size_t lead = g.shape().size() - shape.size();
  std::vector<int> dims;
  for (size_t i = 0; i < g.shape().size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1))
      dims.push_back(static_cast<int>(i));
  Tensor r = dims.empty() ? g : sum(g, dims, true);
  return r.reshape(shape);
}

void checkSameDevice(const Tensor& a, const Tensor& b, const char* op) {
  LATHE_CHECK(a.device() == b.device(), op, ": operands are on different devices: ", describe(a),
              " and ", describe(b));
}

void checkSameDType(const Tensor& a, const Tensor& b, const char* op) {
  LATHE_CHECK(a.dtype() == b.dtype(), op, ": operands have different dtypes: ", describe(a),
              " and ", describe(b), " (convert one with .to(dtype))");
}

void checkFloating(const Tensor& a, const char* op) {
  detail::requireFloating(a, op, "input");
}

namespace {

// Runs a binary kernel on broadcast views of a and b.
Tensor binaryKernel(BinaryOp op, const Tensor& a, const Tensor& b, DType out_dtype,
                    const char* name) {
  checkSameDevice(a, b, name);
  checkSameDType(a, b, name);
  const Shape s = broadcastShapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(s, out_dtype, a.device());
  if (out.numel() > 0) backendFor(a).binary(op, broadcastView(a, s), broadcastView(b, s), out);
  return out;
}

Tensor unaryKernel(UnaryOp op, const Tensor& a, double p0 = 0, double p1 = 0) {
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (out.numel() > 0) backendFor(a).unary(op, a, out, p0, p1);
  return out;
}

Tensor arith(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  LATHE_CHECK(a.dtype() != DType::b8, name, ": bool operands are not supported (", describe(a),
              ")");
  return binaryKernel(op, a, b, a.dtype(), name);
}

Tensor floatUnary(UnaryOp op, const Tensor& a, const char* name, double p0 = 0, double p1 = 0) {
  checkFloating(a, name);
  return unaryKernel(op, a, p0, p1);
}

}  // namespace

// ---- binary arithmetic ----
Tensor add(const Tensor& a, const Tensor& b) {
  if (auto p = autocast::promote(a, b)) return add(p->first, p->second);
  Tensor out = arith(BinaryOp::add, a, b, "add");
  Shape sa = a.shape(), sb = b.shape();
  return recordUnary("Add", {a, b}, out, [sa, sb](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sumToShape(g[0], sa), sumToShape(g[0], sb)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  if (auto p = autocast::promote(a, b)) return sub(p->first, p->second);
  Tensor out = arith(BinaryOp::sub, a, b, "sub");
  Shape sa = a.shape(), sb = b.shape();
  return recordUnary("Sub", {a, b}, out, [sa, sb](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sumToShape(g[0], sa), sumToShape(neg(g[0]), sb)};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  if (auto p = autocast::promote(a, b)) return mul(p->first, p->second);
  Tensor out = arith(BinaryOp::mul, a, b, "mul");
  if (!needsGrad({&a, &b})) return out;
  const bool ga = a.requiresGrad(), gb = b.requiresGrad();
  SavedTensor sa(gb ? a : Tensor(), "mul.a");
  SavedTensor sb(ga ? b : Tensor(), "mul.b");
  Shape sha = a.shape(), shb = b.shape();
  return recordUnary("Mul", {a, b}, out, [sa, sb, ga, gb, sha, shb](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{ga ? sumToShape(mul(g[0], sb.get()), sha) : Tensor(),
                               gb ? sumToShape(mul(g[0], sa.get()), shb) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  if (auto p = autocast::promote(a, b)) return div(p->first, p->second);
  Tensor out = arith(BinaryOp::div, a, b, "div");
  if (!needsGrad({&a, &b})) return out;
  SavedTensor sb(b, "div.b"), so(out, "div.out");
  bool ga = a.requiresGrad(), gb = b.requiresGrad();
  Shape sha = a.shape(), shb = b.shape();
  return recordUnary("Div", {a, b}, out, [sb, so, ga, gb, sha, shb](const std::vector<Tensor>& g) {
    Tensor gq = div(g[0], sb.get());
    return std::vector<Tensor>{ga ? sumToShape(gq, sha) : Tensor(),
                               gb ? sumToShape(neg(mul(gq, so.get())), shb) : Tensor()};
  });
}

Tensor pow(const Tensor& a, const Tensor& b) {
  checkFloating(a, "pow");
  Tensor out = arith(BinaryOp::pow, a, b, "pow");
  if (!needsGrad({&a, &b})) return out;
  SavedTensor sa(a, "pow.a"), sb(b, "pow.b"), so(out, "pow.out");
  bool ga = a.requiresGrad(), gb = b.requiresGrad();
  Shape sha = a.shape(), shb = b.shape();
  return recordUnary(
      "Pow", {a, b}, out, [sa, sb, so, ga, gb, sha, shb](const std::vector<Tensor>& g) {
        Tensor da, db;
        if (ga) da = sumToShape(mul(g[0], mul(sb.get(), pow(sa.get(), sub(sb.get(), 1.0)))), sha);
        if (gb) db = sumToShape(mul(g[0], mul(so.get(), log(sa.get()))), shb);
        return std::vector<Tensor>{da, db};
      });
}

namespace {
Tensor minMax(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  Tensor out = arith(op, a, b, name);
  if (!needsGrad({&a, &b})) return out;
  SavedTensor sa(a, "a"), sb(b, "b");
  Shape sha = a.shape(), shb = b.shape();
  const bool is_max = op == BinaryOp::maximum;
  return recordUnary(is_max ? "Maximum" : "Minimum", {a, b}, out,
                     [sa, sb, sha, shb, is_max](const std::vector<Tensor>& g) {
                       // Ties share the gradient equally.
                       Tensor x = sa.get(), y = sb.get();
                       Tensor wins_a = is_max ? gt(x, y) : lt(x, y);
                       Tensor tie = eq(x, y);
                       Tensor half = mul(g[0], 0.5);
                       Tensor z = detail::zeroScalar(g[0]);
                       Tensor da = add(where(wins_a, g[0], z), where(tie, half, z));
                       Tensor db = sub(g[0], da);
                       return std::vector<Tensor>{sumToShape(da, sha), sumToShape(db, shb)};
                     });
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) {
  return minMax(BinaryOp::maximum, a, b, "maximum");
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  return minMax(BinaryOp::minimum, a, b, "minimum");
}

// ---- comparisons ----
Tensor eq(const Tensor& a, const Tensor& b) {
  return binaryKernel(BinaryOp::eq, a, b, DType::b8, "eq");
}
Tensor ne(const Tensor& a, const Tensor& b) {
  return binaryKernel(BinaryOp::ne, a, b, DType::b8, "ne");
}
Tensor lt(const Tensor& a, const Tensor& b) {
  return binaryKernel(BinaryOp::lt, a, b, DType::b8, "lt");
}
Tensor le(const Tensor& a, const Tensor& b) {
  return binaryKernel(BinaryOp::le, a, b, DType::b8, "le");
}
Tensor gt(const Tensor& a, const Tensor& b) {
  return binaryKernel(BinaryOp::gt, a, b, DType::b8, "gt");
}
Tensor ge(const Tensor& a, const Tensor& b) {
  return binaryKernel(BinaryOp::ge, a, b, DType::b8, "ge");
}
Tensor gt(const Tensor& a, double s) {
  return gt(a, Tensor::full({}, s, a.dtype(), a.device()));
}
Tensor lt(const Tensor& a, double s) {
  return lt(a, Tensor::full({}, s, a.dtype(), a.device()));
}

// ---- scalar ops ----
Tensor add(const Tensor& a, double s) {
  LATHE_CHECK(a.dtype() != DType::b8, "add: bool tensor ", describe(a));
  return recordUnary("AddScalar", {a}, unaryKernel(UnaryOp::add_scalar, a, s),
                     [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
}
Tensor sub(const Tensor& a, double s) {
  return add(a, -s);
}

Tensor mul(const Tensor& a, double s) {
  LATHE_CHECK(a.dtype() != DType::b8, "mul: bool tensor ", describe(a));
  return recordUnary(
      "MulScalar", {a}, unaryKernel(UnaryOp::mul_scalar, a, s),
      [s](const std::vector<Tensor>& g) { return std::vector<Tensor>{mul(g[0], s)}; });
}
Tensor div(const Tensor& a, double s) {
  checkFloating(a, "div");
  return mul(a, 1.0 / s);
}

Tensor rsub(double s, const Tensor& a) {
  return recordUnary("RSubScalar", {a}, unaryKernel(UnaryOp::rsub_scalar, a, s),
                     [](const std::vector<Tensor>& g) { return std::vector<Tensor>{neg(g[0])}; });
}

Tensor rdiv(double s, const Tensor& a) {
  Tensor out = floatUnary(UnaryOp::rdiv_scalar, a, "rdiv", s);
  if (!needsGrad({&a})) return out;
  SavedTensor sa(a, "rdiv.a"), so(out, "rdiv.out");
  return recordUnary("RDivScalar", {a}, out, [sa, so](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{neg(div(mul(g[0], so.get()), sa.get()))};
  });
}

Tensor pow(const Tensor& a, double e) {
  Tensor out = floatUnary(UnaryOp::pow_scalar, a, "pow", e);
  if (!needsGrad({&a})) return out;
  SavedTensor sa(a, "pow.a");
  return recordUnary("PowScalar", {a}, out, [sa, e](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{mul(g[0], mul(pow(sa.get(), e - 1.0), e))};
  });
}

// ---- unary math ----
Tensor neg(const Tensor& a) {
  LATHE_CHECK(a.dtype() != DType::b8, "neg: bool tensor ", describe(a));
  return recordUnary("Neg", {a}, unaryKernel(UnaryOp::neg, a),
                     [](const std::vector<Tensor>& g) { return std::vector<Tensor>{neg(g[0])}; });
}

// Unary ops whose gradient is g * f(saved input or output).
#define LATHE_SAVE_AND_RECORD(NAME, OUT, SAVED, EXPR)                    \
  if (!needsGrad({&a})) return OUT;                                      \
  SavedTensor s(SAVED, NAME);                                            \
  return recordUnary(NAME, {a}, OUT, [=](const std::vector<Tensor>& g) { \
    const Tensor& v = s.get();                                           \
    return std::vector<Tensor>{EXPR};                                    \
  })

Tensor exp(const Tensor& a) {
  Tensor out = floatUnary(UnaryOp::exp, a, "exp");
  LATHE_SAVE_AND_RECORD("Exp", out, out, mul(g[0], v));
}
Tensor log(const Tensor& a) {
  Tensor out = floatUnary(UnaryOp::log, a, "log");
  LATHE_SAVE_AND_RECORD("Log", out, a, div(g[0], v));
}
Tensor sqrt(const Tensor& a) {
  Tensor out = floatUnary(UnaryOp::sqrt, a, "sqrt");
  LATHE_SAVE_AND_RECORD("Sqrt", out, out, div(mul(g[0], 0.5), v));
}
Tensor rsqrt(const Tensor& a) {
  Tensor out = floatUnary(UnaryOp::rsqrt, a, "rsqrt");
  LATHE_SAVE_AND_RECORD("Rsqrt", out, out, mul(mul(g[0], pow(v, 3.0)), -0.5));
}
Tensor abs(const Tensor& a) {
  Tensor out = unaryKernel(UnaryOp::abs, a);
  LATHE_SAVE_AND_RECORD("Abs", out, a, mul(g[0], unaryKernel(UnaryOp::sign, v)));
}
Tensor square(const Tensor& a) {
  Tensor out = unaryKernel(UnaryOp::square, a);
  LATHE_SAVE_AND_RECORD("Square", out, a, mul(mul(g[0], v), 2.0));
}
Tensor sin(const Tensor& a) {
  Tensor out = floatUnary(UnaryOp::sin, a, "sin");
  LATHE_SAVE_AND_RECORD("Sin", out, a, mul(g[0], cos(v)));
}
Tensor cos(const Tensor& a) {
  Tensor out = floatUnary(UnaryOp::cos, a, "cos");
  LATHE_SAVE_AND_RECORD("Cos", out, a, neg(mul(g[0], sin(v))));
}

Tensor clamp(const Tensor& a, std::optional<double> lo, std::optional<double> hi) {
  const double l = lo.value_or(-std::numeric_limits<double>::infinity());
  const double h = hi.value_or(std::numeric_limits<double>::infinity());
  LATHE_CHECK(l <= h, "clamp: lower bound ", l, " is above upper bound ", h);
  Tensor out = unaryKernel(UnaryOp::clamp, a, l, h);
  // Gradient passes where the input was inside [lo, hi] (where clamping changed nothing).
  LATHE_SAVE_AND_RECORD(
      "Clamp", out, a,
      where(eq(unaryKernel(UnaryOp::clamp, v, l, h), v), g[0], detail::zeroScalar(g[0])));
}

// Activations with fused backward kernels.
namespace {
Tensor activation(UnaryOp op, BinaryOp bw, bool save_output, const Tensor& a, const char* name) {
  Tensor out = floatUnary(op, a, name);
  if (!needsGrad({&a})) return out;
  SavedTensor s(save_output ? out : a, name);
  return recordUnary(name, {a}, out, [s, bw](const std::vector<Tensor>& g) {
    const Tensor& v = s.get();
    Tensor r = Tensor::empty(v.shape(), v.dtype(), v.device());
    if (r.numel() > 0) backendFor(v).binary(bw, g[0], v, r);
    return std::vector<Tensor>{r};
  });
}
}  // namespace

Tensor relu(const Tensor& a) {
  return activation(UnaryOp::relu, BinaryOp::relu_bw, false, a, "Relu");
}
Tensor gelu(const Tensor& a, bool tanh_approx) {
  return tanh_approx ? activation(UnaryOp::gelu_tanh, BinaryOp::gelu_tanh_bw, false, a, "GeluTanh")
                     : activation(UnaryOp::gelu, BinaryOp::gelu_bw, false, a, "Gelu");
}
Tensor silu(const Tensor& a) {
  return activation(UnaryOp::silu, BinaryOp::silu_bw, false, a, "Silu");
}
Tensor sigmoid(const Tensor& a) {
  return activation(UnaryOp::sigmoid, BinaryOp::sigmoid_bw, true, a, "Sigmoid");
}
Tensor tanh(const Tensor& a) {
  return activation(UnaryOp::tanh, BinaryOp::tanh_bw, true, a, "Tanh");
}

// ---- where ----
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  LATHE_CHECK(cond.dtype() == DType::b8, "where: condition must be bool, got ", describe(cond));
  checkSameDevice(cond, a, "where");
  checkSameDevice(a, b, "where");
  checkSameDType(a, b, "where");
  const Shape s =
      broadcastShapes(cond.shape(), broadcastShapes(a.shape(), b.shape(), "where"), "where");
  Tensor out = Tensor::empty(s, a.dtype(), a.device());
  if (out.numel() > 0)
    backendFor(a).where(broadcastView(cond, s), broadcastView(a, s), broadcastView(b, s), out);
  if (!needsGrad({&a, &b})) return out;
  SavedTensor sc(cond, "where.cond");
  Shape sha = a.shape(), shb = b.shape();
  return recordUnary("Where", {a, b}, out, [sc, sha, shb](const std::vector<Tensor>& g) {
    Tensor z = detail::zeroScalar(g[0]);
    return std::vector<Tensor>{sumToShape(where(sc.get(), g[0], z), sha),
                               sumToShape(where(sc.get(), z, g[0]), shb)};
  });
}

Tensor maskedFill(const Tensor& a, const Tensor& mask, double value) {
  return where(mask, Tensor::full({}, value, a.dtype(), a.device()), a);
}

}  // namespace lathe
