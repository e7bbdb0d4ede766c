// The activation checkpointing method: trades compute for activation memory on the gpt and
// cnn presets (Model::setCheckpointing). full keeps each checkpointed block's input only and
// re-runs the block in backward; selective keeps matmul / conv / attention outputs and re-runs
// only the cheap ops between them (norms, activations, layout copies). The model's parameters
// and outputs are unchanged; gradients are bit-identical to the unchecked model.
#include "core/base/Error.h"
#include "core/methods/Method.h"

namespace lathe::methods {
namespace {

class CheckpointingMethod final : public Method {
 public:
  static const MethodInfo& staticInfo() {
    static const MethodInfo info{
        "activation_checkpointing",
        "Activation checkpointing",
        "memory",
        "recompute activations in backward instead of keeping them (gpt and cnn presets)",
        {{"mode",
          ParamType::choice,
          "full",
          0,
          0,
          false,
          {"full", "selective"},
          "",
          "full: keep each checkpointed block's input only and re-run the whole block in "
          "backward (most memory saved, about one extra forward); selective: keep matmul, conv "
          "and attention outputs, re-run only norms, activations and layout copies"},
         {"every_k",
          ParamType::integer,
          1,
          1,
          1000000,
          false,
          {},
          "blocks",
          "checkpoint blocks 0, k, 2k, ... (transformer blocks, ResNet blocks, LeNet conv "
          "stages); 1 checkpoints every block"}}};
    return info;
  }
  const MethodInfo& info() const override { return staticInfo(); }

  void apply(Model& model) override {
    const std::string mode_name = params_.at("mode").get<std::string>();
    const int64_t every_k = params_.at("every_k").get<int64_t>();
    const CheckpointMode mode = parseCheckpointMode(mode_name, "activation_checkpointing.mode");
    const int64_t blocks = model.setCheckpointing(mode, every_k);
    report_.name = info().name;
    report_.params_before = report_.params_after = model.numParameters();
    report_.trainable_before = report_.trainable_after = model.numParameters(true);
    int64_t bytes = 0;
    for (const Tensor& p : model.parameters()) bytes += static_cast<int64_t>(p.nbytes());
    report_.bytes_before = report_.bytes_after = bytes;
    report_.note = mode_name + " activation checkpointing on " + std::to_string(blocks) +
                   " block(s) of " + model.typeName() + " (every " + std::to_string(every_k) +
                   "); parameters unchanged";
  }
  MethodReport report() const override { return report_; }

 private:
  MethodReport report_;
};

}  // namespace

void registerCheckpointingMethods(MethodRegistry& registry) {
  registry.add(CheckpointingMethod::staticInfo(),
               [] { return std::make_unique<CheckpointingMethod>(); });
}

}  // namespace lathe::methods
