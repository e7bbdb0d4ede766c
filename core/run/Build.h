// The model, methods and optimizer of a run config, built one way for every consumer: the
// Runner, `lathe-cli estimate` and `lathe-bench train` hold exactly the parameters, gradients and
// optimizer state a run holds.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/methods/Method.h"
#include "core/nn/Presets.h"
#include "core/optim/LrSchedule.h"
#include "core/optim/Optimizer.h"
#include "core/run/RunConfig.h"
#include "core/train/Trainer.h"

namespace lathe::run {

struct BuiltRun {
  std::shared_ptr<Model> model;
  int64_t params_initial = 0;                             // before the methods changed the model
  std::vector<std::unique_ptr<methods::Method>> methods;  // in config order
  methods::Method* optimizer_method = nullptr;            // one of `methods`
  std::unique_ptr<optim::Optimizer> optimizer;
  double lr = 0;  // the optimizer's base learning rate
};

// Seeds the random stream with the config's seed, builds the model on `device`, configures every
// method, applies the non-optimizer ones in order and builds the optimizer. Throws naming the
// config when no method makes an optimizer.
BuiltRun buildRun(const RunConfig& config, Device device);

// The config's training options with every method's configureTraining applied.
train::TrainOptions trainOptionsFor(const RunConfig& config, const BuiltRun& run);

// The run's LR schedule over `total_steps`; a warm-up not shorter than the run is cut to a tenth
// of it, reported through `log` when given.
optim::LrSchedule scheduleFor(const RunConfig& config, double lr, int64_t total_steps,
                              const std::function<void(const std::string&)>& log = {});

}  // namespace lathe::run
