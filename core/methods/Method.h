// Efficiency methods: one class each, registered by name with a parameter schema. The schema is
// the single source of the GUI's method panels, the CLI's config validation and
// `lathe-cli methods --json`; adding a method touches its own file, its test and one
// registration line. A method acts through hooks (DESIGN.md, Methods):
//   makeOptimizer   optimizer methods build the run's optimizer (exactly one per run)
//   configureTraining  precision methods set the Trainer's autocast dtype and loss scaling
//   apply           transform the model before training (LoRA, fake-quant, pruning masks, ...)
//   onStep          after each optimizer step (schedules such as gradual pruning)
//   extraLoss       a term added to the task loss (distillation)
//   beforeExport    merge / fold before the model is written
// and reports what it changed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/nn/Presets.h"
#include "core/optim/Optimizer.h"
#include "core/train/Trainer.h"

namespace lathe::methods {

enum class ParamType { integer, number, boolean, choice, string };
const char* paramTypeName(ParamType t);

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::number;
  nlohmann::json default_value;
  double min = -1e308, max = 1e308;  // integer / number
  bool log_scale = false;            // a hint for sliders (learning rates)
  std::vector<std::string> choices;  // choice
  std::string unit;                  // "", "steps", "bits", ...
  std::string help;
};

struct MethodInfo {
  std::string name;      // "adamw"
  std::string title;     // "AdamW"
  std::string category;  // "optimizer", "precision", "compression", "architecture", "parallelism"
  std::string summary;   // one line for the panel
  std::vector<ParamSpec> params;
};

// What a method changed, for the run's summary.
struct MethodReport {
  std::string name;
  int64_t params_before = 0, params_after = 0;
  int64_t trainable_before = 0, trainable_after = 0;
  int64_t bytes_before = 0, bytes_after = 0;  // parameter bytes
  std::string note;
};

class Method {
 public:
  virtual ~Method() = default;
  virtual const MethodInfo& info() const = 0;
  // `params` is the validated, defaults-filled parameter object (see MethodRegistry).
  virtual void configure(const nlohmann::json& params) { params_ = params; }
  const nlohmann::json& params() const { return params_; }

  virtual bool makesOptimizer() const { return false; }
  virtual std::unique_ptr<optim::Optimizer> makeOptimizer(Model& /*model*/) { return nullptr; }
  // The optimizer's base learning rate (schedules scale it).
  virtual double learningRate() const { return 0.0; }
  virtual void apply(Model& /*model*/) {}
  // Adjusts how the Trainer runs (precision methods: autocast dtype, loss scaling); called after
  // the training options are read from the config, before the Trainer is built.
  virtual void configureTraining(train::TrainOptions& /*options*/) const {}
  virtual void onStep(Model& /*model*/, int64_t /*step*/) {}
  virtual void beforeExport(Model& /*model*/) {}
  // What apply() changed (empty before apply or for methods that change nothing).
  virtual MethodReport report() const { return {}; }

 protected:
  nlohmann::json params_;
};

using MethodFactory = std::function<std::unique_ptr<Method>()>;

class MethodRegistry {
 public:
  // The process-wide registry with every built-in method.
  static MethodRegistry& instance();

  void add(MethodInfo info, MethodFactory factory);
  // Declares that two methods cannot run together, with the reason users see.
  void addConflict(const std::string& a, const std::string& b, const std::string& reason);

  bool contains(const std::string& name) const;
  const MethodInfo& info(const std::string& name) const;  // throws listing the known names
  std::vector<const MethodInfo*> all() const;             // in registration order
  std::unique_ptr<Method> create(const std::string& name) const;

  // Checks one method entry of a config ({"name": ..., params...}) against the schema and
  // returns it with every default filled. `path` ("methods[1]") prefixes error messages:
  // "methods[1].lr: expected a number in [0, 10], got \"fast\"".
  nlohmann::json validate(const nlohmann::json& entry, const std::string& path) const;
  // Throws naming the first conflicting pair and its reason.
  void checkConflicts(const std::vector<std::string>& names, const std::string& path) const;

  // Every method with its schema and the conflicts, as `lathe-cli methods --json` prints it.
  nlohmann::json toJson() const;

 private:
  MethodRegistry() = default;
  struct Entry {
    MethodInfo info;
    MethodFactory factory;
  };
  std::vector<Entry> entries_;
  struct Conflict {
    std::string a, b, reason;
  };
  std::vector<Conflict> conflicts_;
};

nlohmann::json paramSpecToJson(const ParamSpec& p);

// Registers the built-in methods (called once by MethodRegistry::instance()).
void registerOptimizerMethods(MethodRegistry& registry);
void registerPrecisionMethods(MethodRegistry& registry);
void registerCheckpointingMethods(MethodRegistry& registry);

}  // namespace lathe::methods
