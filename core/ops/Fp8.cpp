#include "core/ops/Fp8.h"

#include "core/autograd/Autograd.h"
#include "core/backend/Backend.h"
#include "core/base/Error.h"
#include "core/ops/Ops.h"

namespace lathe {
namespace {

thread_local Fp8State* t_state = nullptr;

constexpr double kE4M3Max = 448.0, kE5M2Max = 57344.0;
enum Role { kInput = 0, kWeight = 1, kGrad = 2 };

struct Quantized {
  Tensor q, q_t;            // fp8 [R, C] and [C, R]; either may be undefined
  Tensor scale, scale_inv;  // f32 [1] each
};

// Quantizes x [R, C] for `role` of one layer: scale from the history, then the quantized
// tensor(s), with x's amax written into the history's next slot.
Quantized quantize(Fp8State& st, Fp8State::Meta& m, Role role, const Tensor& x, bool normal,
                   bool transposed) {
  const DType fmt = role == kGrad ? DType::f8e5m2 : DType::f8e4m3;
  const double fmax = role == kGrad ? kE5M2Max : kE4M3Max;
  Backend& be = backendFor(x);
  const Tensor history = m.history.select(0, role);
  const int64_t h = history.numel();
  const Tensor slot = history.slice(0, m.position[role], m.position[role] + 1);
  m.position[role] = (m.position[role] + 1) % h;
  Quantized out;
  out.scale = Tensor::empty({1}, DType::f32, x.device());
  out.scale_inv = Tensor::empty({1}, DType::f32, x.device());
  if (!m.seen[role]) {  // first use: measure the amax first (current scaling)
    be.quantizeFp8(x, out.scale, Tensor(), Tensor(), slot);
    m.seen[role] = true;
  }
  be.fp8Scale(history, fmax, st.recipe().margin, out.scale, out.scale_inv);
  const int64_t R = x.size(0), C = x.size(1);
  if (normal) out.q = Tensor::empty({R, C}, fmt, x.device());
  if (transposed) out.q_t = Tensor::empty({C, R}, fmt, x.device());
  be.quantizeFp8(x, out.scale, out.q, out.q_t, slot);
  return out;
}

// a [M, K] x b [N, K]^T in fp8, into `dtype` (bf16 or f32 directly, anything else through f32).
Tensor gemm(const Quantized& a, const Tensor& aq, const Quantized& b, const Tensor& bq,
            const Tensor* bias, DType dtype) {
  const DType kernel_dtype = dtype == DType::bf16 ? DType::bf16 : DType::f32;
  Tensor out = Tensor::empty({aq.size(0), bq.size(0)}, kernel_dtype, aq.device());
  backendFor(aq).matmulFp8(aq, bq, a.scale_inv, b.scale_inv, bias, out);
  return kernel_dtype == dtype ? out : out.to(dtype);
}

bool aligned(int64_t v) {
  return v % 16 == 0;
}

}  // namespace

Fp8State::Fp8State(Fp8Recipe recipe) : recipe_(recipe) {
  LATHE_CHECK(recipe.history >= 1 && recipe.history <= 1024, "fp8: amax history length ",
              recipe.history, " must be in [1, 1024]");
  LATHE_CHECK(recipe.margin >= 0 && recipe.margin <= 16, "fp8: margin ", recipe.margin,
              " must be in [0, 16]");
}

Fp8State::Meta& Fp8State::metaFor(const Tensor& weight) {
  Meta& m = metas_[weight.rawData()];
  if (!m.history.defined()) {
    MemoryTagScope tag(MemoryTag::optimizer_state);
    m.history = Tensor::zeros({3, recipe_.history}, DType::f32, weight.device());
  }
  return m;
}

std::pair<Tensor, Tensor> Fp8State::save(const Tensor& weight) const {
  const Meta& m = metas_.at(weight.rawData());
  std::vector<int64_t> pos;
  for (int r = 0; r < 3; ++r) pos.push_back(m.position[r]);
  for (int r = 0; r < 3; ++r) pos.push_back(m.seen[r] ? 1 : 0);
  return {m.history.to(Device::cpu()), Tensor::fromVector(pos, {6})};
}

void Fp8State::checkState(const Tensor& history, const Tensor& positions,
                          const std::string& what) const {
  LATHE_CHECK(history.shape() == Shape({3, recipe_.history}) && history.dtype() == DType::f32 &&
                  positions.shape() == Shape({6}) && positions.dtype() == DType::i64,
              what, ": fp8 scaling state of shape ", shapeStr(history.shape()),
              " does not match this run's amax history of ", recipe_.history, " (expected f32 [3, ",
              recipe_.history, "] and i64 [6])");
  const std::vector<int64_t> pos = positions.toInts();
  for (int r = 0; r < 3; ++r)
    LATHE_CHECK(pos[static_cast<size_t>(r)] >= 0 && pos[static_cast<size_t>(r)] < recipe_.history,
                what, ": fp8 history position ", pos[static_cast<size_t>(r)], " is out of range");
}

void Fp8State::restore(const Tensor& weight, const Tensor& history, const Tensor& positions,
                       const std::string& what) {
  checkState(history, positions, what);
  const std::vector<int64_t> pos = positions.toInts();
  Meta& m = metaFor(weight);
  m.history.copy_(history);
  for (int r = 0; r < 3; ++r) {
    m.position[r] = pos[static_cast<size_t>(r)];
    m.seen[r] = pos[static_cast<size_t>(r) + 3] != 0;
  }
}

Fp8AutocastGuard::Fp8AutocastGuard(Fp8State& state) : previous_(t_state) {
  t_state = &state;
}

Fp8AutocastGuard::~Fp8AutocastGuard() {
  t_state = previous_;
}

namespace fp8 {

Fp8State* active() {
  return t_state;
}

Tensor linear(Fp8State& st, const Tensor& x, const Tensor& w, const Tensor& b) {
  const bool floating = x.dtype() != DType::f64 && w.dtype() != DType::f64 &&
                        isFloating(x.dtype()) && isFloating(w.dtype());
  const int64_t in = w.dim() == 2 ? w.size(1) : 0, out_features = w.dim() == 2 ? w.size(0) : 0;
  const int64_t rows = x.dim() >= 1 && in > 0 ? x.numel() / in : 0;
  if (!floating || w.dim() != 2 || x.dim() < 1 || x.shape().back() != in || rows == 0 ||
      !aligned(rows) || !aligned(in) || !aligned(out_features) || x.device() != w.device()) {
    // Not an fp8 shape (or an error ops::linear reports): bf16 autocast as for any other op.
    if (floating && w.dim() == 2) st.countFallback();
    t_state = nullptr;
    struct Restore {
      Fp8State* s;
      ~Restore() { t_state = s; }
    } restore{&st};
    return ::lathe::linear(x, w, b);
  }
  st.countFp8();
  Fp8State::Meta& meta = st.metaFor(w);
  const bool gx = x.requiresGrad() && gradEnabled(), gw = w.requiresGrad() && gradEnabled();
  Quantized xq, wq;
  Tensor bias, y;
  {
    NoGradGuard no_grad;
    const Tensor x2 = x.detach().reshape({rows, in}).contiguous();
    const Tensor w2 = w.detach().contiguous();
    xq = quantize(st, meta, kInput, x2, true, gw);
    wq = quantize(st, meta, kWeight, w2, true, gx);
    if (b.defined()) bias = b.detach().to(DType::bf16).contiguous();
    y = gemm(xq, xq.q, wq, wq.q, bias.defined() ? &bias : nullptr, DType::bf16);
  }
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_features);
  y = y.reshape(out_shape);
  if (!needsGrad({&x, &w, &b})) return y;

  const bool gb = b.defined() && b.requiresGrad();
  const SavedTensor saved_xt(gw ? xq.q_t : Tensor(), "fp8_linear.x_t");
  const SavedTensor saved_wt(gx ? wq.q_t : Tensor(), "fp8_linear.w_t");
  const Tensor x_scale_inv = xq.scale_inv, w_scale_inv = wq.scale_inv;
  const Shape sx = x.shape();
  const DType dx_dtype = x.dtype(), dw_dtype = w.dtype(),
              db_dtype = b.defined() ? b.dtype() : w.dtype();
  Fp8State* state = &st;
  Fp8State::Meta* mp = &meta;  // std::map nodes do not move
  return recordUnary("Fp8Linear", {x, w, b}, y, [=](const std::vector<Tensor>& g) {
    NoGradGuard no_grad;
    const Tensor g2 = g[0].reshape({rows, out_features}).contiguous();
    const Quantized gq = quantize(*state, *mp, kGrad, g2, gx, gw);
    Tensor dx, dw, db;
    Quantized xs, ws;
    xs.scale_inv = x_scale_inv;
    ws.scale_inv = w_scale_inv;
    // dx [rows, in] = g [rows, out] . w_t [in, out]^T;  dw [out, in] = g_t [out, rows] . x_t [in,
    // rows]^T
    if (gx) dx = gemm(gq, gq.q, ws, saved_wt.get(), nullptr, dx_dtype).reshape(sx);
    if (gw) dw = gemm(gq, gq.q_t, xs, saved_xt.get(), nullptr, dw_dtype);
    if (gb) db = sum(g2.to(DType::f32), {0}).to(db_dtype);
    return std::vector<Tensor>{dx, dw, db};
  });
}

}  // namespace fp8
}  // namespace lathe
