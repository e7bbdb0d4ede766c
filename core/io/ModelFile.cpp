// saveModel / loadModel over the safetensors reader and writer. Loading builds the model
// uninitialised (ModuleOptions::initialize = false) and relies on the strict key check to
// guarantee every parameter and persistent buffer is then filled from the file.
#include "core/io/ModelFile.h"

#include "core/autograd/Autograd.h"
#include "core/base/BuildInfo.h"
#include "core/io/Safetensors.h"

namespace lathe {

void saveModel(const std::string& path, const Model& model,
               const std::map<std::string, std::string>& extra_metadata) {
  std::map<std::string, std::string> meta = extra_metadata;
  LATHE_CHECK(!meta.count(kModelSpecKey), path, ": metadata key '", kModelSpecKey,
              "' is reserved for the architecture spec");
  meta[kModelSpecKey] = model.spec().dump();
  meta.emplace("lathe.version", version());
  meta.emplace("format", "pt");
  writeSafetensors(path, model.stateDict(), meta);
}

namespace {

nlohmann::json specOf(const SafetensorsReader& r) {
  auto it = r.metadata().find(kModelSpecKey);
  LATHE_CHECK(it != r.metadata().end(), r.path(), ": no '", kModelSpecKey,
              "' in the __metadata__: not a Lathe model file (import foreign checkpoints instead)");
  try {
    return nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::parse_error& e) {
    fail(r.path(), ": the '", kModelSpecKey, "' metadata is not valid JSON: ", e.what());
  }
}

}  // namespace

nlohmann::json readModelSpec(const std::string& path) {
  return specOf(SafetensorsReader(path));
}

std::shared_ptr<Model> loadModel(const std::string& path, const LoadModelOptions& opt) {
  SafetensorsReader reader(path);
  const nlohmann::json spec = specOf(reader);
  ModuleOptions mo;
  mo.device = opt.device;
  mo.initialize = false;
  mo.dtype = DType::f32;
  if (opt.dtype) {
    mo.dtype = *opt.dtype;
  } else {
    for (const auto& e : reader.entries()) {
      if (e.dtype && isFloating(*e.dtype)) {
        mo.dtype = *e.dtype;
        break;
      }
    }
  }
  std::shared_ptr<Model> model;
  try {
    model = buildModel(spec, mo, "model");
  } catch (const Error& e) {
    fail(path, ": the stored architecture spec is invalid: ", e.what());
  }
  // Validate every key and shape first, then stream one tensor at a time (peak memory: the
  // model plus its largest tensor).
  std::vector<std::pair<std::string, Shape>> keys;
  for (const auto& e : reader.entries()) keys.emplace_back(e.name, e.shape);
  std::vector<Tensor> targets;
  try {
    targets = model->checkStateDict(keys, true);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  NoGradGuard no_grad;
  for (size_t i = 0; i < keys.size(); ++i) targets[i].copy_(reader.read(keys[i].first));
  return model;
}

}  // namespace lathe
