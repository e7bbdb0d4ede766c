// Sophia (Liu et al. 2023, "Sophia: A Scalable Stochastic Second-order Optimizer for Language
// Model Pre-training"), Algorithm 3: momentum, an exponential moving average of a diagonal
// Hessian estimate refreshed every k steps, decoupled weight decay and the per-coordinate
// clipped preconditioned step clip(m / max(gamma h, eps), 1). The estimate comes from the
// training loop's extra pass (GradientPass): Gauss-Newton-Bartlett (Sophia-G) or Hutchinson
// with a finite-difference Hessian-vector product (Sophia-H; no double backward in autograd).
// Everything is tensor ops over the flat groups in bounded slices (CPU and CUDA alike).
#include <cmath>

#include "core/ops/Ops.h"
#include "core/optim/OptimCommon.h"
#include "core/optim/Optimizer.h"
#include "core/tensor/Random.h"

namespace lathe::optim {
namespace {

using internal::checkOption;
using internal::kStepChunk;
using internal::nonNegative;
using internal::unitInterval;

class Sophia final : public Optimizer {
 public:
  Sophia(Module& model, const SophiaOptions& o)
      : Optimizer(model, "makeSophia", o.lr, o.decay,
                  std::vector<std::string>{"exp_avg", "hessian"}),
        o_(o) {}
  std::string name() const override { return "sophia"; }

  // Steps 1, k + 1, 2k + 1, ... refresh the estimate (the paper's t mod k = 1).
  CurvatureLoss curvatureWanted() const override {
    if (stepCount() % o_.hessian_every != 0) return CurvatureLoss::none;
    return o_.estimator == HessianEstimator::gaussNewtonBartlett ? CurvatureLoss::sampledLabels
                                                                 : CurvatureLoss::taskLoss;
  }

  void estimateCurvature(const GradientPass& pass) override {
    if (o_.estimator == HessianEstimator::gaussNewtonBartlett)
      gaussNewtonBartlett(pass);
    else
      hutchinson(pass);
  }

 protected:
  void stepGroup(const ParameterBuffer::Group& group, bool decayed,
                 const std::vector<Tensor>& state, int64_t /*step*/) override {
    NoGradGuard no_grad;
    MemoryTagScope tag(MemoryTag::workspace);
    const DType dt = state[0].dtype();
    const double lr = this->lr(), wd = decayed ? o_.weight_decay : 0.0;
    internal::forChunks(group.params.numel(), kStepChunk, [&](int64_t b, int64_t e) {
      Tensor p = group.params.slice(0, b, e), m = state[0].slice(0, b, e);
      const Tensor h = state[1].slice(0, b, e);
      const Tensor g = group.grads.slice(0, b, e).to(dt);
      m.copy_(add(mul(m, o_.beta1), mul(g, 1.0 - o_.beta1)));
      Tensor pf = p.to(dt);
      if (wd != 0.0) pf = mul(pf, 1.0 - lr * wd);
      const Tensor ratio = clamp(div(m, clamp(mul(h, o_.gamma), o_.eps, std::nullopt)), -1.0, 1.0);
      p.copy_(sub(pf, mul(ratio, lr)));
    });
  }

 private:
  // The pass records a graph and runs backward, whatever the caller's grad mode.
  static int64_t runPass(const GradientPass& pass) {
    EnableGradGuard grad;
    return pass();
  }

  // h = b2 h + (1 - b2) h_hat for one group, unless h_hat has a non-finite value (an overflowed
  // pass): then this estimate is dropped and h keeps its value.
  void updateHessian(size_t gi, const Tensor& h_hat) {
    const Tensor& h = groupState(gi)[1];
    if (!std::isfinite(sum(h_hat.to(DType::f64)).item())) return;
    Tensor(h).copy_(add(mul(h, o_.beta2), mul(h_hat, 1.0 - o_.beta2)));
    h.storage()->bumpVersion();
  }

  // Algorithm 2: h_hat = B * g_s * g_s, g_s the gradient of the mean loss over B terms against
  // sampled labels.
  void gaussNewtonBartlett(const GradientPass& pass) {
    const int64_t terms = runPass(pass);
    NoGradGuard no_grad;
    LATHE_CHECK(terms > 0, name(), ": the curvature pass averaged ", terms, " loss terms");
    MemoryTagScope tag(MemoryTag::workspace);
    const auto& groups = buffer().groups();
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      if (!groups[gi].trainable) continue;
      const DType dt = groupState(gi)[1].dtype();
      updateHessian(gi, mul(square(groups[gi].grads.to(dt)), static_cast<double>(terms)));
    }
  }

  // Algorithm 1 with H u = (grad(p + fd_eps u) - grad(p)) / fd_eps on one batch: both passes
  // start from the same random state (identical dropout masks, identical batch), and the
  // parameters are restored bit-exactly from a copy.
  void hutchinson(const GradientPass& pass) {
    NoGradGuard no_grad;
    MemoryTagScope tag(MemoryTag::workspace);
    const auto& groups = buffer().groups();
    std::vector<Tensor> u(groups.size()), g0(groups.size()), saved(groups.size());
    for (size_t gi = 0; gi < groups.size(); ++gi)
      if (groups[gi].trainable)
        u[gi] = rademacher(groups[gi].params.numel(), groupState(gi)[1].dtype(), groups[gi].device);
    const RandomState rs = rngState();
    runPass(pass);
    for (size_t gi = 0; gi < groups.size(); ++gi)
      if (groups[gi].trainable) g0[gi] = groups[gi].grads.clone();
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      if (!groups[gi].trainable) continue;
      const Tensor& p = groups[gi].params;
      saved[gi] = p.clone();
      Tensor(p).copy_(add(p.to(u[gi].dtype()), mul(u[gi], o_.fd_eps)));
      p.storage()->bumpVersion();
    }
    setRngState(rs);
    runPass(pass);
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      if (!groups[gi].trainable) continue;
      const Tensor& p = groups[gi].params;
      Tensor(p).copy_(saved[gi]);
      p.storage()->bumpVersion();
      const DType dt = u[gi].dtype();
      const Tensor hvp = div(sub(groups[gi].grads.to(dt), g0[gi].to(dt)), o_.fd_eps);
      updateHessian(gi, mul(u[gi], hvp));
    }
  }

  SophiaOptions o_;
};

}  // namespace

Tensor rademacher(int64_t n, DType dtype, Device device) {
  NoGradGuard no_grad;
  const Tensor heads = lt(rand({n}, DType::f32, device), 0.5);
  return sub(mul(heads.to(dtype), 2.0), 1.0);
}

std::unique_ptr<Optimizer> makeSophia(Module& model, const SophiaOptions& o) {
  const char* who = "makeSophia";
  checkOption(nonNegative(o.lr), who, "lr", o.lr, ">= 0");
  checkOption(unitInterval(o.beta1), who, "beta1", o.beta1, "in [0, 1)");
  checkOption(unitInterval(o.beta2), who, "beta2", o.beta2, "in [0, 1)");
  checkOption(std::isfinite(o.gamma) && o.gamma > 0.0, who, "gamma", o.gamma, "> 0");
  checkOption(std::isfinite(o.eps) && o.eps > 0.0, who, "eps", o.eps, "> 0");
  checkOption(nonNegative(o.weight_decay), who, "weight_decay", o.weight_decay, ">= 0");
  checkOption(o.hessian_every >= 1, who, "hessian_every", static_cast<double>(o.hessian_every),
              ">= 1");
  checkOption(std::isfinite(o.fd_eps) && o.fd_eps > 0.0, who, "fd_eps", o.fd_eps, "> 0");
  return std::make_unique<Sophia>(model, o);
}

}  // namespace lathe::optim
