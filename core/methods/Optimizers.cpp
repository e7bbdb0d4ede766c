// The optimizer methods: each builds the run's optimizer from its validated parameters. A run
// has exactly one (the config defaults to AdamW when none is listed), so every pair conflicts.
#include "core/base/Error.h"
#include "core/methods/Method.h"

namespace lathe::methods {
namespace {

optim::DecayRule decayRule(const nlohmann::json& p) {
  return p.at("decay") == "all" ? optim::DecayRule::all : optim::DecayRule::matricesOnly;
}

ParamSpec lrParam(double def) {
  return {"lr", ParamType::number, def, 0.0, 10.0, true, {}, "", "peak learning rate"};
}
ParamSpec number(const char* name, double def, double lo, double hi, const char* help,
                 bool log_scale = false) {
  return {name, ParamType::number, def, lo, hi, log_scale, {}, "", help};
}
ParamSpec boolean(const char* name, bool def, const char* help) {
  return {name, ParamType::boolean, def, 0, 0, false, {}, "", help};
}
ParamSpec decayParam() {
  return {"decay",
          ParamType::choice,
          "matrices",
          0,
          0,
          false,
          {"matrices", "all"},
          "",
          "which parameters get weight decay: matrices only (no decay for biases, norms and "
          "embeddings), or all"};
}

// What every optimizer method shares: its static info, that it makes the run's optimizer, and
// the "lr" parameter as the base learning rate.
template <typename Derived>
class OptimizerMethod : public Method {
 public:
  const MethodInfo& info() const override { return Derived::staticInfo(); }
  bool makesOptimizer() const override { return true; }
  double learningRate() const override { return params_.at("lr").get<double>(); }
};

class SgdMethod final : public OptimizerMethod<SgdMethod> {
 public:
  static const MethodInfo& staticInfo() {
    static const MethodInfo info{
        "sgd",
        "SGD",
        "optimizer",
        "Stochastic gradient descent with momentum (heavy-ball or Nesterov) and L2 weight decay",
        {lrParam(0.01),
         {"momentum", ParamType::number, 0.9, 0.0, 0.999, false, {}, "", "momentum factor"},
         {"nesterov", ParamType::boolean, false, 0, 0, false, {}, "", "Nesterov momentum"},
         {"weight_decay", ParamType::number, 0.0, 0.0, 1.0, false, {}, "", "L2 penalty"},
         decayParam()}};
    return info;
  }
  std::unique_ptr<optim::Optimizer> makeOptimizer(Model& model) override {
    optim::SgdOptions o;
    o.lr = learningRate();
    o.momentum = params_.at("momentum").get<double>();
    o.nesterov = params_.at("nesterov").get<bool>();
    o.weight_decay = params_.at("weight_decay").get<double>();
    o.decay = decayRule(params_);
    LATHE_CHECK(!o.nesterov || o.momentum > 0, "sgd.nesterov needs momentum > 0");
    return optim::makeSgd(model, o);
  }
};

class AdamWMethod final : public OptimizerMethod<AdamWMethod> {
 public:
  static const MethodInfo& staticInfo() {
    static const MethodInfo info{
        "adamw",
        "AdamW",
        "optimizer",
        "Adam with decoupled weight decay (Loshchilov & Hutter); two f32 states per parameter",
        {lrParam(1e-3),
         {"beta1", ParamType::number, 0.9, 0.0, 0.9999, false, {}, "", "first-moment decay"},
         {"beta2", ParamType::number, 0.999, 0.0, 0.99999, false, {}, "", "second-moment decay"},
         {"eps", ParamType::number, 1e-8, 0.0, 1.0, true, {}, "", "denominator epsilon"},
         {"weight_decay",
          ParamType::number,
          0.01,
          0.0,
          1.0,
          false,
          {},
          "",
          "decoupled weight decay"},
         decayParam()}};
    return info;
  }
  std::unique_ptr<optim::Optimizer> makeOptimizer(Model& model) override {
    optim::AdamWOptions o;
    o.lr = learningRate();
    o.beta1 = params_.at("beta1").get<double>();
    o.beta2 = params_.at("beta2").get<double>();
    o.eps = params_.at("eps").get<double>();
    o.weight_decay = params_.at("weight_decay").get<double>();
    o.decay = decayRule(params_);
    return optim::makeAdamW(model, o);
  }
};

class LionMethod final : public OptimizerMethod<LionMethod> {
 public:
  static const MethodInfo& staticInfo() {
    static const MethodInfo info{
        "lion",
        "Lion",
        "optimizer",
        "Sign of interpolated momentum (Chen et al. 2023); one f32 state per parameter, half of "
        "AdamW's. Use a 3-10x smaller lr and a 3-10x larger weight decay than AdamW",
        {lrParam(1e-4),
         number("beta1", 0.9, 0.0, 0.9999, "interpolation between momentum and gradient"),
         number("beta2", 0.99, 0.0, 0.99999, "momentum decay"),
         number("weight_decay", 0.0, 0.0, 10.0, "decoupled weight decay"), decayParam()}};
    return info;
  }
  std::unique_ptr<optim::Optimizer> makeOptimizer(Model& model) override {
    optim::LionOptions o;
    o.lr = learningRate();
    o.beta1 = params_.at("beta1").get<double>();
    o.beta2 = params_.at("beta2").get<double>();
    o.weight_decay = params_.at("weight_decay").get<double>();
    o.decay = decayRule(params_);
    return optim::makeLion(model, o);
  }
};

class SophiaMethod final : public OptimizerMethod<SophiaMethod> {
 public:
  static const MethodInfo& staticInfo() {
    static const MethodInfo info{
        "sophia",
        "Sophia",
        "optimizer",
        "Clipped diagonal second-order steps (Liu et al. 2023): momentum over a diagonal Hessian "
        "estimate refreshed every k steps by an extra pass; two f32 states per parameter",
        {lrParam(1e-4),
         {"estimator",
          ParamType::choice,
          "gnb",
          0,
          0,
          false,
          {"gnb", "hutchinson"},
          "",
          "gnb (Sophia-G): Gauss-Newton-Bartlett, B * g * g for the gradient g of the loss "
          "against labels sampled from the model's own outputs (one extra forward + backward "
          "every k steps); hutchinson (Sophia-H): u * (H u) for a random +-1 vector u, with H u "
          "taken as the finite difference (grad(p + fd_eps u) - grad(p)) / fd_eps because "
          "Lathe's autograd has no double backward (two extra forward + backward passes)"},
         number("beta1", 0.96, 0.0, 0.9999, "momentum decay"),
         number("beta2", 0.99, 0.0, 0.99999, "Hessian estimate decay (per estimate)"),
         number("gamma", 0.01, 1e-6, 10.0,
                "scale of the Hessian in the denominator max(gamma h, eps); smaller clips more "
                "coordinates (the paper uses 0.01 for Sophia-H, 0.05 for Sophia-G)",
                true),
         number("eps", 1e-12, 1e-30, 1.0, "denominator floor", true),
         {"hessian_every",
          ParamType::integer,
          10,
          1,
          100000,
          false,
          {},
          "steps",
          "k: refresh the Hessian estimate on steps 1, k + 1, 2k + 1, ..."},
         number("fd_eps", 1e-3, 1e-8, 1.0,
                "hutchinson only: finite-difference step along u, since Lathe's autograd has no "
                "double "
                "backward (forward differences: "
                "truncation error O(fd_eps), f32 rounding about 1e-7 |g| / fd_eps)",
                true),
         number("weight_decay", 0.1, 0.0, 10.0, "decoupled weight decay"),
         decayParam()}};
    return info;
  }
  std::unique_ptr<optim::Optimizer> makeOptimizer(Model& model) override {
    optim::SophiaOptions o;
    o.lr = learningRate();
    o.estimator = params_.at("estimator") == "hutchinson"
                      ? optim::HessianEstimator::hutchinson
                      : optim::HessianEstimator::gaussNewtonBartlett;
    o.beta1 = params_.at("beta1").get<double>();
    o.beta2 = params_.at("beta2").get<double>();
    o.gamma = params_.at("gamma").get<double>();
    o.eps = params_.at("eps").get<double>();
    o.hessian_every = params_.at("hessian_every").get<int64_t>();
    o.fd_eps = params_.at("fd_eps").get<double>();
    o.weight_decay = params_.at("weight_decay").get<double>();
    o.decay = decayRule(params_);
    return optim::makeSophia(model, o);
  }
};

class AdafactorMethod final : public OptimizerMethod<AdafactorMethod> {
 public:
  static const MethodInfo& staticInfo() {
    static const MethodInfo info{
        "adafactor",
        "Adafactor",
        "optimizer",
        "Factored second moments (Shazeer & Stern 2018; Hugging Face's formulas): a row and a "
        "column vector per matrix instead of a full state, update clipping, no momentum by "
        "default",
        {lrParam(1e-3),
         boolean("relative_step", false,
                 "ignore lr and use min(1e-2, 1/sqrt(step)) (the paper's relative step size)"),
         boolean("scale_parameter", false, "multiply the step size by max(eps2, RMS(parameter))"),
         boolean("warmup_init", false,
                 "with relative_step: min(1e-6 step, 1/sqrt(step)) (needs relative_step)"),
         number("beta1", 0.0, 0.0, 0.9999,
                "first-moment decay; 0 = no first moment (saves a full state)"),
         number("decay_rate", -0.8, -10.0, -1e-6,
                "second-moment schedule: beta2 at step t is 1 - t^decay_rate"),
         number("clip_threshold", 1.0, 1e-6, 1e6,
                "update clipping d: the update is divided by max(1, RMS(update) / d)"),
         number("eps1", 1e-30, 1e-45, 1.0, "added to the squared gradient", true),
         number("eps2", 1e-3, 0.0, 1.0, "floor of the parameter RMS (scale_parameter)", true),
         number("weight_decay", 0.0, 0.0, 10.0, "decoupled weight decay (times the step size)"),
         decayParam()}};
    return info;
  }
  std::unique_ptr<optim::Optimizer> makeOptimizer(Model& model) override {
    optim::AdafactorOptions o;
    o.lr = learningRate();
    o.relative_step = params_.at("relative_step").get<bool>();
    o.scale_parameter = params_.at("scale_parameter").get<bool>();
    o.warmup_init = params_.at("warmup_init").get<bool>();
    o.beta1 = params_.at("beta1").get<double>();
    o.decay_rate = params_.at("decay_rate").get<double>();
    o.clip_threshold = params_.at("clip_threshold").get<double>();
    o.eps1 = params_.at("eps1").get<double>();
    o.eps2 = params_.at("eps2").get<double>();
    o.weight_decay = params_.at("weight_decay").get<double>();
    o.decay = decayRule(params_);
    LATHE_CHECK(!o.warmup_init || o.relative_step,
                "adafactor.warmup_init needs relative_step = true");
    return optim::makeAdafactor(model, o);
  }
};

class AdamW8bitMethod final : public OptimizerMethod<AdamW8bitMethod> {
 public:
  static const MethodInfo& staticInfo() {
    static const MethodInfo info{
        "adamw8bit",
        "AdamW 8-bit",
        "optimizer",
        "AdamW with block-wise 8-bit quantized moments (Dettmers et al. 2022): about a quarter "
        "of AdamW's state bytes, f32 master weights",
        {lrParam(1e-3),
         number("beta1", 0.9, 0.0, 0.9999, "first-moment decay"),
         number("beta2", 0.999, 0.0, 0.99999, "second-moment decay"),
         number("eps", 1e-8, 0.0, 1.0, "denominator epsilon", true),
         number("weight_decay", 0.01, 0.0, 1.0, "decoupled weight decay"),
         {"block_size",
          ParamType::choice,
          "2048",
          0,
          0,
          false,
          {"2048", "256"},
          "elements",
          "elements per quantization block (one f32 absmax each); 256 is more precise, 2048 "
          "smaller"},
         {"min_8bit_size",
          ParamType::integer,
          4096,
          0,
          1e12,
          false,
          {},
          "elements",
          "parameters with fewer elements keep f32 moments (biases, norms)"},
         decayParam()}};
    return info;
  }
  std::unique_ptr<optim::Optimizer> makeOptimizer(Model& model) override {
    optim::AdamW8bitOptions o;
    o.lr = learningRate();
    o.beta1 = params_.at("beta1").get<double>();
    o.beta2 = params_.at("beta2").get<double>();
    o.eps = params_.at("eps").get<double>();
    o.weight_decay = params_.at("weight_decay").get<double>();
    o.block_size = std::stoll(params_.at("block_size").get<std::string>());
    o.min_8bit_size = params_.at("min_8bit_size").get<int64_t>();
    o.decay = decayRule(params_);
    return optim::makeAdamW8bit(model, o);
  }
};

}  // namespace

void registerOptimizerMethods(MethodRegistry& registry) {
  registry.add(SgdMethod::staticInfo(), [] { return std::make_unique<SgdMethod>(); });
  registry.add(AdamWMethod::staticInfo(), [] { return std::make_unique<AdamWMethod>(); });
  registry.add(LionMethod::staticInfo(), [] { return std::make_unique<LionMethod>(); });
  registry.add(SophiaMethod::staticInfo(), [] { return std::make_unique<SophiaMethod>(); });
  registry.add(AdafactorMethod::staticInfo(), [] { return std::make_unique<AdafactorMethod>(); });
  registry.add(AdamW8bitMethod::staticInfo(), [] { return std::make_unique<AdamW8bitMethod>(); });
  const std::vector<std::string> optimizers = {"sgd",    "adamw",     "lion",
                                               "sophia", "adafactor", "adamw8bit"};
  for (size_t i = 0; i < optimizers.size(); ++i)
    for (size_t j = i + 1; j < optimizers.size(); ++j)
      registry.addConflict(optimizers[i], optimizers[j], "a run trains with one optimizer");
}

}  // namespace lathe::methods
