#include "core/run/Build.h"

#include "core/base/Error.h"
#include "core/tensor/Random.h"

namespace lathe::run {

BuiltRun buildRun(const RunConfig& config, Device device) {
  BuiltRun r;
  manualSeed(config.seed);
  r.model = buildModel(config.model);
  r.model->to(device);
  r.params_initial = r.model->numParameters();
  auto& registry = methods::MethodRegistry::instance();
  for (const auto& m : config.methods) {
    auto method = registry.create(m.at("name").get<std::string>());
    method->configure(m);
    if (method->makesOptimizer())
      r.optimizer_method = method.get();
    else
      method->apply(*r.model);
    r.methods.push_back(std::move(method));
  }
  LATHE_CHECK(r.optimizer_method != nullptr, "config \"", config.name, "\": no optimizer method");
  r.optimizer = r.optimizer_method->makeOptimizer(*r.model);
  r.lr = r.optimizer_method->learningRate();
  return r;
}

train::TrainOptions trainOptionsFor(const RunConfig& config, const BuiltRun& run) {
  train::TrainOptions topt = config.trainOptions();
  for (const auto& m : run.methods) m->configureTraining(topt);
  return topt;
}

optim::LrSchedule scheduleFor(const RunConfig& config, double lr, int64_t total_steps,
                              const std::function<void(const std::string&)>& log) {
  optim::LrScheduleOptions sched = config.scheduleOptions(total_steps);
  if (sched.warmup_steps >= total_steps) {
    const int64_t w = total_steps / 10;
    if (log)
      log("training.schedule.warmup_steps (" + std::to_string(sched.warmup_steps) +
          ") is not below the run's " + std::to_string(total_steps) + " steps; using " +
          std::to_string(w) + " warm-up steps");
    sched.warmup_steps = w;
  }
  return optim::LrSchedule(lr, sched);
}

}  // namespace lathe::run
