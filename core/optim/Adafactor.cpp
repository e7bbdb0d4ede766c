// Adafactor (Shazeer & Stern 2018) with the update of Hugging Face transformers'
// optimization.Adafactor (the common PyTorch implementation): factored second moments for
// parameters of dim >= 2 (row means over the last dim, column means over the one before), a full
// second moment for vectors, update clipping by RMS, the b2_t = 1 - t^decay_rate schedule, and
// optional relative step sizes and parameter scaling. Steps go parameter by parameter over views
// of the flat buffers (the factored state is per matrix); all tensor ops, no host reads.
#include <algorithm>
#include <cmath>

#include "core/ops/Ops.h"
#include "core/optim/OptimCommon.h"
#include "core/optim/Optimizer.h"

namespace lathe::optim {
namespace {

using internal::checkOption;
using internal::nonNegative;
using internal::unitInterval;
using internal::viewOf;

// Root mean square as a 0-d tensor.
Tensor rms(const Tensor& x) {
  return sqrt(mean(square(x)));
}

class Adafactor final : public Optimizer {
 public:
  Adafactor(Module& model, const AdafactorOptions& o)
      : Optimizer(model, "makeAdafactor", o.lr, o.decay, layout(o)), o_(o) {}
  std::string name() const override { return "adafactor"; }

 protected:
  void stepGroup(const ParameterBuffer::Group& group, bool decayed,
                 const std::vector<Tensor>& /*state*/, int64_t step) override {
    NoGradGuard no_grad;
    MemoryTagScope tag(MemoryTag::workspace);
    const double t = static_cast<double>(step);
    const double rel =
        o_.relative_step ? std::min(o_.warmup_init ? 1e-6 * t : 1e-2, 1.0 / std::sqrt(t)) : lr();
    const double beta2t = 1.0 - std::pow(t, o_.decay_rate);
    const double wd = decayed ? o_.weight_decay : 0.0;
    for (size_t si = 0; si < group.slots.size(); ++si) {
      const ParameterBuffer::Slot& slot = group.slots[si];
      const Shape& shape = slot.param.shape();
      if (slot.param.numel() == 0) continue;
      const std::vector<Tensor>& st = paramState(group, si);
      const DType dt = st[0].dtype();
      Tensor p = viewOf(group.params, shape, slot.offset);
      const Tensor g = viewOf(group.grads, shape, slot.offset).to(dt);
      const Tensor pf = p.to(dt);
      const Tensor g2 = add(square(g), o_.eps1);
      Tensor u;
      if (shape.size() >= 2) {
        const Tensor &row = st[0], &col = st[1];
        const int r = static_cast<int>(shape.size()) - 1;  // the row state's last dim
        Tensor(row).copy_(add(mul(row, beta2t), mul(mean(g2, {r}), 1.0 - beta2t)));
        Tensor(col).copy_(add(mul(col, beta2t), mul(mean(g2, {r - 1}), 1.0 - beta2t)));
        // v_hat = row col / mean(row): rsqrt(row / mean(row)) [.., R, 1] x rsqrt(col) [.., 1, C]
        const Tensor rf = rsqrt(div(row, mean(row, {r - 1}, true))).unsqueeze(r);
        const Tensor cf = rsqrt(col).unsqueeze(r - 1);
        u = mul(mul(rf, cf), g);
      } else {
        const Tensor& v = st[0];
        Tensor(v).copy_(add(mul(v, beta2t), mul(g2, 1.0 - beta2t)));
        u = mul(rsqrt(v), g);
      }
      u = div(u, clamp(div(rms(u), o_.clip_threshold), 1.0, std::nullopt));
      // Step size: a number, or a 0-d tensor with parameter scaling (no host read).
      Tensor step_t;
      if (o_.scale_parameter) {
        step_t = mul(clamp(rms(pf), o_.eps2, std::nullopt), rel);
        u = mul(u, step_t);
      } else {
        u = mul(u, rel);
      }
      if (o_.beta1 > 0.0) {
        const Tensor& m = st.back();
        Tensor(m).copy_(add(mul(m, o_.beta1), mul(u, 1.0 - o_.beta1)));
        u = m;
      }
      Tensor out = pf;
      if (wd != 0.0)
        out = sub(out, o_.scale_parameter ? mul(out, mul(step_t, wd)) : mul(out, wd * rel));
      p.copy_(sub(out, u));
    }
  }

 private:
  // Per parameter: exp_avg_sq_row (shape[:-1]) and exp_avg_sq_col (shape[:-2] + [C]) for
  // dim >= 2, exp_avg_sq (the shape) otherwise; exp_avg (the shape) when beta1 > 0.
  static StateLayout layout(const AdafactorOptions& o) {
    return [beta1 = o.beta1](const std::string&, const Tensor& p) {
      const DType dt = stateDtype(p.dtype());
      const Shape& s = p.shape();
      std::vector<ParamState> out;
      if (s.size() >= 2) {
        Shape col(s.begin(), s.end() - 2);
        col.push_back(s.back());
        out.push_back({"exp_avg_sq_row", Shape(s.begin(), s.end() - 1), dt});
        out.push_back({"exp_avg_sq_col", col, dt});
      } else {
        out.push_back({"exp_avg_sq", s, dt});
      }
      if (beta1 > 0.0) out.push_back({"exp_avg", s, dt});
      return out;
    };
  }

  AdafactorOptions o_;
};

}  // namespace

std::unique_ptr<Optimizer> makeAdafactor(Module& model, const AdafactorOptions& o) {
  const char* who = "makeAdafactor";
  checkOption(nonNegative(o.lr), who, "lr", o.lr, ">= 0");
  checkOption(unitInterval(o.beta1), who, "beta1", o.beta1, "in [0, 1) (0 = no first moment)");
  checkOption(std::isfinite(o.decay_rate) && o.decay_rate < 0.0, who, "decay_rate", o.decay_rate,
              "< 0 (b2_t = 1 - t^decay_rate)");
  checkOption(std::isfinite(o.clip_threshold) && o.clip_threshold > 0.0, who, "clip_threshold",
              o.clip_threshold, "> 0");
  checkOption(std::isfinite(o.eps1) && o.eps1 > 0.0, who, "eps1", o.eps1, "> 0");
  checkOption(nonNegative(o.eps2), who, "eps2", o.eps2, ">= 0");
  checkOption(nonNegative(o.weight_decay), who, "weight_decay", o.weight_decay, ">= 0");
  LATHE_CHECK(!o.warmup_init || o.relative_step, who,
              ": option warmup_init needs relative_step (it shapes the relative step size)");
  return std::make_unique<Adafactor>(model, o);
}

}  // namespace lathe::optim
