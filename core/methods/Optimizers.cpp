// The optimizer methods: each builds the run's optimizer from its validated parameters. A run
// has exactly one (the config defaults to AdamW when none is listed).
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

class SgdMethod final : public Method {
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
  const MethodInfo& info() const override { return staticInfo(); }
  bool makesOptimizer() const override { return true; }
  double learningRate() const override { return params_.at("lr").get<double>(); }
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

class AdamWMethod final : public Method {
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
  const MethodInfo& info() const override { return staticInfo(); }
  bool makesOptimizer() const override { return true; }
  double learningRate() const override { return params_.at("lr").get<double>(); }
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

}  // namespace

void registerOptimizerMethods(MethodRegistry& registry) {
  registry.add(SgdMethod::staticInfo(), [] { return std::make_unique<SgdMethod>(); });
  registry.add(AdamWMethod::staticInfo(), [] { return std::make_unique<AdamWMethod>(); });
  registry.addConflict("sgd", "adamw", "a run trains with one optimizer");
}

}  // namespace lathe::methods
