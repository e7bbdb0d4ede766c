// Model presets built from a JSON architecture spec (the "model" object of a run config):
//   {"type": "mlp", "input_dim": 784, "hidden": [256, 128], "classes": 10, ...}
//   {"type": "cnn", "variant": "lenet" | "resnet", "in_channels": 1, "image_size": 28, ...}
//   {"type": "gpt", "vocab_size": 50257, "block_size": 1024, "n_layer": 12, ...}
// ("lenet" and "resnet" are accepted as types too). Each family documents its fields and
// defaults (MlpConfig below, Cnn.h, Gpt.h). A bad spec is a lathe::Error naming
// the field by path, e.g. "model.n_head: expected a divisor of d_model (768), got 5"; unknown
// fields are errors. The normalised spec (every field explicit) is what a model file stores.
//
// FLOPs (analytic, from the spec; weight-layer multiply-adds x 2, biases, activations, norms,
// pooling and softmax not counted):
//   mlp/cnn, per sample: forward F = 2 * sum(MACs of Linear/Conv2d layers); train = 3 F.
//   gpt, per token with context T = block_size, N = parameters that take part in a matmul
//   (all but the position table, and but the token table when the head is untied):
//   train = 6 N + 12 L C T, forward = 2 N + 4 L C T (L layers, C = d_model; the attention term
//   counts the full context, as PaLM's MFU convention does, although causal attention does
//   about half).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/nn/Module.h"

namespace lathe {

struct ModelInfo {
  std::string type;  // "mlp", "cnn", "gpt"
  int64_t params = 0;
  int64_t trainable_params = 0;
  int64_t flop_params = 0;   // N of the FLOPs formula (gpt); all weights (mlp/cnn)
  double forward_flops = 0;  // per sample (mlp, cnn) or per token (gpt)
  double train_flops = 0;    // forward + backward
  std::string flops_per;     // "sample" or "token"
  std::string flops_formula;
};

// A module built from a spec; knows its (normalised) spec.
class Model : public Module {
 public:
  Model(std::string type_name, nlohmann::json spec);
  const nlohmann::json& spec() const { return spec_; }
  // The analytic figures of the spec, with the parameter counts measured on this module (they
  // differ from the analytic ones once a method changed the model).
  ModelInfo info() const;
  // Activation checkpointing of the model's blocks (transformer blocks, CNN stages/blocks):
  // blocks 0, k, 2k, ... get `mode`, the others none (every_k >= 1). Returns how many blocks
  // it set to `mode`. Models without blocks throw, naming their type.
  virtual int64_t setCheckpointing(CheckpointMode mode, int64_t every_k);

 private:
  nlohmann::json spec_;
};

// Validates a spec and fills every default; `path` names it in errors.
nlohmann::json normalizeModelSpec(const nlohmann::json& spec, const std::string& path = "model");
// Parameter counts and FLOPs of a spec without building it (no tensor is allocated).
ModelInfo analyzeModelSpec(const nlohmann::json& spec, const std::string& path = "model");
// The parameters buildModel(spec, {dtype}) allocates, counted from the spec (no tensor is
// allocated, so a model larger than memory can be sized): every parameter is in `dtype`, and
// bytes = params * dtypeSize(dtype), without the allocator's alignment padding. What the
// pre-launch estimate uses before it builds a model.
struct ParameterFootprint {
  int64_t params = 0;
  int64_t trainable_params = 0;
  DType dtype = DType::f32;
  int64_t bytes = 0;
};
ParameterFootprint parameterFootprint(const nlohmann::json& spec, DType dtype = DType::f32,
                                      const std::string& path = "model");
// Builds the preset, seeded by the global random stream (lathe::manualSeed).
std::shared_ptr<Model> buildModel(const nlohmann::json& spec, const ModuleOptions& opt = {},
                                  const std::string& path = "model");

// ---- mlp: Flatten -> [Linear -> activation -> Dropout] per hidden size -> Linear ----
// Fields: input_dim (required), classes (required), hidden ([]), activation ("relu"),
// dropout (0), bias (true). Input [N, input_dim] or [N, *] whose trailing dims multiply to it.
struct MlpConfig {
  int64_t input_dim = 0;
  std::vector<int64_t> hidden;
  int64_t classes = 0;
  std::string activation = "relu";
  double dropout = 0.0;
  bool bias = true;

  static MlpConfig parse(const nlohmann::json& spec, const std::string& path);
  nlohmann::json toJson() const;
  ModelInfo analyze() const;
};

class MlpModel : public Model {
 public:
  MlpModel(const MlpConfig& cfg, const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override;
  const MlpConfig& config() const { return cfg_; }

 private:
  MlpConfig cfg_;
  size_t layers_;
};

}  // namespace lathe
