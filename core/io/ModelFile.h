// Lathe model files: safetensors holding the model's state dict, with the normalised
// architecture spec in the metadata ("lathe.spec", JSON text) next to "format": "pt" and
// "lathe.version", so loadModel rebuilds the preset and loads the weights strictly. Tied
// weights are stored once (state dicts list them once).
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/nn/Presets.h"

namespace lathe {

inline constexpr const char* kModelSpecKey = "lathe.spec";

// Writes `model` to `path` atomically; `extra_metadata` is added (it may not override
// "lathe.spec").
void saveModel(const std::string& path, const Model& model,
               const std::map<std::string, std::string>& extra_metadata = {});

struct LoadModelOptions {
  Device device = Device::cpu();
  // Unset: the dtype of the file's floating tensors (f32 when it has none).
  std::optional<DType> dtype;
};

// The architecture spec stored in a model file; throws naming the file when it has none.
nlohmann::json readModelSpec(const std::string& path);
// Rebuilds the model from the file's spec and loads its weights (strict).
std::shared_ptr<Model> loadModel(const std::string& path, const LoadModelOptions& opt = {});

}  // namespace lathe
