// Lion (Chen et al. 2023): one momentum state, a sign update. A step is a short chain of tensor
// ops over each flat group in bounded slices, so it runs wherever the ops run (CPU, CUDA); the
// padding between parameters has zero gradient and momentum, so sign(0) = 0 leaves it at 0.
#include <cmath>

#include "core/ops/Ops.h"
#include "core/optim/OptimCommon.h"
#include "core/optim/Optimizer.h"

namespace lathe::optim {
namespace {

using internal::checkOption;
using internal::kStepChunk;
using internal::nonNegative;
using internal::unitInterval;

// torch.sign: -1, 0 or +1, in x's dtype.
Tensor signOf(const Tensor& x) {
  return sub(gt(x, 0.0).to(x.dtype()), lt(x, 0.0).to(x.dtype()));
}

class Lion final : public Optimizer {
 public:
  Lion(Module& model, const LionOptions& o)
      : Optimizer(model, "makeLion", o.lr, o.decay, std::vector<std::string>{"exp_avg"}), o_(o) {}
  std::string name() const override { return "lion"; }

 protected:
  void stepGroup(const ParameterBuffer::Group& group, bool decayed,
                 const std::vector<Tensor>& state, int64_t /*step*/) override {
    NoGradGuard no_grad;
    MemoryTagScope tag(MemoryTag::workspace);
    const DType dt = state[0].dtype();
    const double lr = this->lr(), wd = decayed ? o_.weight_decay : 0.0;
    internal::forChunks(group.params.numel(), kStepChunk, [&](int64_t b, int64_t e) {
      Tensor p = group.params.slice(0, b, e), m = state[0].slice(0, b, e);
      const Tensor g = group.grads.slice(0, b, e).to(dt);
      // The order of lucidrains/lion-pytorch: update from the interpolation, decay, step, then
      // the momentum.
      const Tensor c = add(mul(m, o_.beta1), mul(g, 1.0 - o_.beta1));
      Tensor pf = p.to(dt);
      if (wd != 0.0) pf = mul(pf, 1.0 - lr * wd);
      p.copy_(sub(pf, mul(signOf(c), lr)));
      m.copy_(add(mul(m, o_.beta2), mul(g, 1.0 - o_.beta2)));
    });
  }

 private:
  LionOptions o_;
};

}  // namespace

std::unique_ptr<Optimizer> makeLion(Module& model, const LionOptions& o) {
  const char* who = "makeLion";
  checkOption(nonNegative(o.lr), who, "lr", o.lr, ">= 0");
  checkOption(unitInterval(o.beta1), who, "beta1", o.beta1, "in [0, 1)");
  checkOption(unitInterval(o.beta2), who, "beta2", o.beta2, "in [0, 1)");
  checkOption(nonNegative(o.weight_decay), who, "weight_decay", o.weight_decay, ">= 0");
  return std::make_unique<Lion>(model, o);
}

}  // namespace lathe::optim
