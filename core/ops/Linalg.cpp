// Linear algebra ops: matmul (NumPy semantics) and linear, with their gradient rules. The kernel
// sees 2-D or 3-D contiguous operands plus trans flags: a plain transpose of a contiguous tensor
// is passed as its memory with a flag, never copied, and the gradients use the same flags
// (dA = G @ op(B)^T, dB = op(A)^T @ G), so backward makes no transposed copies either.
// Shapes: op(A) [.., M, K], op(B) [.., K, N], out [.., M, N].
#include "core/ops/Autocast.h"
#include "core/ops/Fp8.h"
#include "core/ops/OpsCommon.h"

namespace lathe {
namespace {

// A kernel operand: contiguous memory `mem` holding the logical matrix, or its transpose when
// `trans` is set.
struct Operand {
  Tensor mem;
  bool trans = false;
};

Operand flipped(const Operand& o) {
  return {o.mem, !o.trans};
}

// The operand for a logical [.., R, C] tensor t (called without grad recording): t itself when
// contiguous, t's memory with trans when t is a transposed contiguous tensor, else a copy.
Operand operandOf(const Tensor& t) {
  if (t.isContiguous()) return {t, false};
  if (t.dim() >= 2) {
    Tensor tt = t.transpose(-1, -2);
    if (tt.isContiguous()) return {tt, true};
  }
  return {t.contiguous(), false};
}

int64_t rowsOf(const Operand& o) {
  return o.trans ? o.mem.size(-1) : o.mem.size(-2);
}
int64_t colsOf(const Operand& o) {
  return o.trans ? o.mem.size(-2) : o.mem.size(-1);
}

// out = op(A) @ op(B) (+ bias [N]) for kernel operands of equal rank (2 or 3) and batch.
Tensor runMatmul(const Operand& a, const Operand& b, const Tensor* bias) {
  const int64_t M = rowsOf(a), K = colsOf(a), N = colsOf(b);
  Shape s{M, N};
  if (a.mem.dim() == 3) s.insert(s.begin(), a.mem.shape()[0]);
  Tensor out = Tensor::empty(s, a.mem.dtype(), a.mem.device());
  if (out.numel() == 0) return out;
  Backend& be = backendFor(a.mem);
  if (K == 0) {
    // An empty inner dimension sums nothing: the result is the bias (or zero).
    if (bias != nullptr) {
      be.copy(detail::broadcastView(*bias, s), out);
    } else {
      be.fill(out, 0.0);
    }
    return out;
  }
  be.matmul(a.mem, b.mem, bias, out, a.trans, b.trans, false);
  return out;
}

// Gradients in the logical orientation of op(A) and op(B), given G = d out in operand form.
// dA needs only B (and A's flag), dB only A (and B's flag).
Tensor gradOfA(bool trans_a, const Operand& b, const Operand& g) {
  if (!trans_a) return runMatmul(g, flipped(b), nullptr);      // G @ op(B)^T
  return runMatmul(b, flipped(g), nullptr).transpose(-1, -2);  // (op(B) @ G^T)^T
}
Tensor gradOfB(const Operand& a, bool trans_b, const Operand& g) {
  if (!trans_b) return runMatmul(flipped(a), g, nullptr);      // op(A)^T @ G
  return runMatmul(flipped(g), a, nullptr).transpose(-1, -2);  // (G^T @ op(A))^T
}

void checkOperands(const Tensor& a, const Tensor& b, const char* op) {
  LATHE_CHECK(a.defined() && b.defined(), op, ": undefined operand");
  checkSameDevice(a, b, op);
  checkSameDType(a, b, op);
  detail::requireFloating(a, op, "first operand");
}

Shape concatShape(Shape s, std::initializer_list<int64_t> tail) {
  s.insert(s.end(), tail.begin(), tail.end());
  return s;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (autocast::wantsLow(a, b)) return matmul(autocast::low(a), autocast::low(b));
  checkOperands(a, b, "matmul");
  LATHE_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: ", describe(a), " @ ", describe(b),
              ": operands must have at least one dimension");
  const Shape sa = a.shape(), sb = b.shape();
  Shape pa = sa, pb = sb;  // 1-D operands promoted: [K] -> [1, K] (left), [K, 1] (right)
  if (pa.size() == 1) pa.insert(pa.begin(), 1);
  if (pb.size() == 1) pb.push_back(1);
  const int64_t M = pa[pa.size() - 2], K = pa.back(), N = pb.back();
  LATHE_CHECK(K == pb[pb.size() - 2], "matmul: shapes ", shapeStr(sa), " and ", shapeStr(sb),
              " do not match: ", describe(a), " has ", K, " columns but ", describe(b), " has ",
              pb[pb.size() - 2], " rows");
  const Shape ba(pa.begin(), pa.end() - 2), bb(pb.begin(), pb.end() - 2);
  const size_t nb = std::max(ba.size(), bb.size());
  Shape batch(nb);
  for (size_t i = 0; i < nb; ++i) {
    const int64_t da = i < nb - ba.size() ? 1 : ba[i - (nb - ba.size())];
    const int64_t db = i < nb - bb.size() ? 1 : bb[i - (nb - bb.size())];
    LATHE_CHECK(da == db || da == 1 || db == 1, "matmul: shapes ", shapeStr(sa), " and ",
                shapeStr(sb), " have batch dimensions that cannot be broadcast (", da, " vs ", db,
                ")");
    batch[i] = da == 1 ? db : da;
  }
  Shape out_shape = batch;  // the result, with the promoted 1-D dims dropped again
  if (sa.size() > 1) out_shape.push_back(M);
  if (sb.size() > 1) out_shape.push_back(N);

  // b without a real batch: fold a's batch into its rows (one 2-D kernel call, no copies).
  const bool fold = shapeNumel(bb) == 1;
  Operand A, B;
  {
    NoGradGuard no_grad;
    const Tensor a2 = a.detach().reshape(pa), b2 = b.detach().reshape(pb);
    if (fold) {
      A = operandOf(a2.reshape({shapeNumel(ba) * M, K}));
      B = operandOf(b2.reshape({K, N}));
    } else {
      const int64_t nbatch = shapeNumel(batch);
      const Operand af = operandOf(detail::broadcastView(a2, concatShape(batch, {M, K})));
      const Operand bf = operandOf(detail::broadcastView(b2, concatShape(batch, {K, N})));
      A = {af.mem.reshape({nbatch, af.mem.size(-2), af.mem.size(-1)}), af.trans};
      B = {bf.mem.reshape({nbatch, bf.mem.size(-2), bf.mem.size(-1)}), bf.trans};
    }
  }
  Tensor out = runMatmul(A, B, nullptr);
  const Shape kernel_out = out.shape();
  out = Tensor::makeView(out, out_shape, contiguousStrides(out_shape), 0);
  if (!needsGrad({&a, &b})) return out;

  const bool ga = a.requiresGrad(), gb = b.requiresGrad();
  const SavedTensor saved_a(gb ? A.mem : Tensor(), "matmul.a");
  const SavedTensor saved_b(ga ? B.mem : Tensor(), "matmul.b");
  const bool ta = A.trans, tb = B.trans;
  const Shape full_a = fold ? pa : concatShape(batch, {M, K});
  const Shape full_b = fold ? pb : concatShape(batch, {K, N});
  return recordUnary("Matmul", {a, b}, out, [=](const std::vector<Tensor>& g) {
    const Operand G = operandOf(g[0].reshape(kernel_out));
    Tensor da, db;
    if (ga) da = sumToShape(gradOfA(ta, {saved_b.get(), tb}, G).reshape(full_a), pa).reshape(sa);
    if (gb) db = sumToShape(gradOfB({saved_a.get(), ta}, tb, G).reshape(full_b), pb).reshape(sb);
    return std::vector<Tensor>{da, db};
  });
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  if (Fp8State* fp8_state = fp8::active()) return fp8::linear(*fp8_state, x, w, b);
  if (autocast::wantsLow(x, w, b))
    return linear(autocast::low(x), autocast::low(w), autocast::low(b));
  checkOperands(x, w, "linear");
  LATHE_CHECK(w.dim() == 2, "linear: weight ", describe(w), " must be 2-D [out, in]");
  LATHE_CHECK(x.dim() >= 1 && x.shape().back() == w.shape()[1], "linear: input ", describe(x),
              " does not match weight ", describe(w),
              ": expected the input's last dimension to be ", w.shape()[1],
              " (weight is [out, in])");
  const int64_t in = w.shape()[1], out_features = w.shape()[0];
  if (b.defined()) {
    checkSameDevice(x, b, "linear");
    checkSameDType(x, b, "linear");
    LATHE_CHECK(b.dim() == 1 && b.shape()[0] == out_features, "linear: bias ", describe(b),
                " does not match weight ", describe(w), ": expected shape [", out_features, "]");
  }
  const Shape sx = x.shape();
  Shape out_shape(sx.begin(), sx.end() - 1);
  out_shape.push_back(out_features);
  const int64_t rows = shapeNumel(Shape(sx.begin(), sx.end() - 1));

  // x [rows, in] @ w^T [in, out]: a contiguous weight is the transposed operand, so no copy.
  Operand X, Wt;
  Tensor bias;
  {
    NoGradGuard no_grad;
    X = operandOf(x.detach().reshape({rows, in}));
    Wt = operandOf(w.detach().transpose(0, 1));
    if (b.defined()) bias = b.detach().contiguous();
  }
  Tensor out = runMatmul(X, Wt, bias.defined() ? &bias : nullptr);
  out = Tensor::makeView(out, out_shape, contiguousStrides(out_shape), 0);
  if (!needsGrad({&x, &w, &b})) return out;

  const bool gx = x.requiresGrad(), gw = w.requiresGrad();
  const bool gb = b.defined() && b.requiresGrad();
  const SavedTensor saved_x(gw ? X.mem : Tensor(), "linear.x");
  const SavedTensor saved_w(gx ? Wt.mem : Tensor(), "linear.w");
  const bool tx = X.trans, tw = Wt.trans;
  return recordUnary("Linear", {x, w, b}, out, [=](const std::vector<Tensor>& g) {
    const Tensor g2 = g[0].reshape({rows, out_features});
    const Operand G = operandOf(g2);
    Tensor dx, dw, db;
    if (gx) dx = gradOfA(tx, {saved_w.get(), tw}, G).reshape(sx);
    if (gw) dw = gradOfB({saved_x.get(), tx}, tw, G).transpose(0, 1);
    if (gb) db = sum(g2, {0});
    return std::vector<Tensor>{dx, dw, db};
  });
}

}  // namespace lathe
