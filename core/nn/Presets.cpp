// Spec dispatch by "type" (mlp, cnn/lenet/resnet, gpt), the Model base and the MLP preset.
#include "core/nn/Presets.h"

#include "core/nn/Cnn.h"
#include "core/nn/Gpt.h"
#include "core/nn/Layers.h"
#include "core/nn/SpecReader.h"

namespace lathe {
namespace {

enum class Family { mlp, cnn, gpt };

// The family of a spec; "lenet"/"resnet" types become cnn with that variant.
Family familyOf(const nlohmann::json& spec, const std::string& path, nlohmann::json& normalized) {
  LATHE_CHECK(spec.is_object(), path, ": expected a JSON object, got ", spec.type_name());
  LATHE_CHECK(spec.contains("type") && spec.at("type").is_string(), path,
              ".type: required string is missing (one of mlp, cnn, lenet, resnet, gpt)");
  const std::string type = spec.at("type").get<std::string>();
  normalized = spec;
  if (type == "mlp") return Family::mlp;
  if (type == "gpt") return Family::gpt;
  if (type == "cnn") return Family::cnn;
  if (type == "lenet" || type == "resnet") {
    LATHE_CHECK(!spec.contains("variant") || spec.at("variant") == type, path,
                ".variant: conflicts with type \"", type, "\"");
    normalized["type"] = "cnn";
    normalized["variant"] = type;
    return Family::cnn;
  }
  fail(path, ".type: expected one of mlp, cnn, lenet, resnet, gpt; got \"", type, "\"");
}

}  // namespace

Model::Model(std::string type_name, nlohmann::json spec)
    : Module(std::move(type_name)), spec_(std::move(spec)) {}

int64_t Model::setCheckpointing(CheckpointMode /*mode*/, int64_t /*every_k*/) {
  throw Error("activation checkpointing: model '" + typeName() +
              "' has no blocks to checkpoint (the gpt and cnn presets have)");
}

ModelInfo Model::info() const {
  ModelInfo info = analyzeModelSpec(spec_);
  info.params = numParameters();
  info.trainable_params = numParameters(true);
  return info;
}

nlohmann::json normalizeModelSpec(const nlohmann::json& spec, const std::string& path) {
  nlohmann::json s;
  switch (familyOf(spec, path, s)) {
    case Family::mlp: return MlpConfig::parse(s, path).toJson();
    case Family::cnn: return CnnConfig::parse(s, path).toJson();
    case Family::gpt: return GptConfig::parse(s, path).toJson();
  }
  return s;
}

ModelInfo analyzeModelSpec(const nlohmann::json& spec, const std::string& path) {
  nlohmann::json s;
  switch (familyOf(spec, path, s)) {
    case Family::mlp: return MlpConfig::parse(s, path).analyze();
    case Family::cnn: return CnnConfig::parse(s, path).analyze();
    case Family::gpt: return GptConfig::parse(s, path).analyze();
  }
  return {};
}

ParameterFootprint parameterFootprint(const nlohmann::json& spec, DType dtype,
                                      const std::string& path) {
  const ModelInfo info = analyzeModelSpec(spec, path);
  ParameterFootprint f;
  f.params = info.params;
  f.trainable_params = info.trainable_params;
  f.dtype = dtype;
  f.bytes = info.params * static_cast<int64_t>(dtypeSize(dtype));
  return f;
}

std::shared_ptr<Model> buildModel(const nlohmann::json& spec, const ModuleOptions& opt,
                                  const std::string& path) {
  nlohmann::json s;
  switch (familyOf(spec, path, s)) {
    case Family::mlp: return std::make_shared<MlpModel>(MlpConfig::parse(s, path), opt);
    case Family::cnn: return buildCnn(CnnConfig::parse(s, path), opt);
    case Family::gpt: return std::make_shared<GptModel>(GptConfig::parse(s, path), opt);
  }
  return nullptr;
}

// ---- mlp ----
MlpConfig MlpConfig::parse(const nlohmann::json& spec, const std::string& path) {
  SpecReader r(spec, path);
  r.string("type", std::nullopt, {"mlp"});
  MlpConfig c;
  c.input_dim = r.integer("input_dim", std::nullopt, 1);
  c.hidden = r.integers("hidden", std::vector<int64_t>{}, 1);
  c.classes = r.integer("classes", std::nullopt, 1);
  c.activation = r.string("activation", "relu");
  parseActivation(c.activation, r.field("activation"));
  c.dropout = r.number("dropout", 0.0, 0.0, 0.999);
  c.bias = r.boolean("bias", true);
  r.finish();
  return c;
}

nlohmann::json MlpConfig::toJson() const {
  return {{"type", "mlp"},      {"input_dim", input_dim},   {"hidden", hidden},
          {"classes", classes}, {"activation", activation}, {"dropout", dropout},
          {"bias", bias}};
}

ModelInfo MlpConfig::analyze() const {
  ModelInfo info;
  info.type = "mlp";
  int64_t in = input_dim, macs = 0, params = 0;
  std::vector<int64_t> outs = hidden;
  outs.push_back(classes);
  for (int64_t out : outs) {
    macs += in * out;
    params += in * out + (bias ? out : 0);
    in = out;
  }
  info.params = info.trainable_params = info.flop_params = params;
  info.forward_flops = 2.0 * static_cast<double>(macs);
  info.train_flops = 3.0 * info.forward_flops;
  info.flops_per = "sample";
  info.flops_formula = "forward = 2 * sum(in * out) over Linear layers; train = 3 * forward";
  return info;
}

MlpModel::MlpModel(const MlpConfig& cfg, const ModuleOptions& opt)
    : Model("MlpModel", cfg.toJson()), cfg_(cfg) {
  auto seq = std::make_shared<Sequential>();
  const ActivationKind act = parseActivation(cfg.activation, "model.activation");
  int64_t in = cfg.input_dim;
  for (int64_t h : cfg.hidden) {
    seq->add(std::make_shared<Linear>(in, h, cfg.bias, opt));
    seq->add(std::make_shared<Activation>(act));
    if (cfg.dropout > 0) seq->add(std::make_shared<Dropout>(cfg.dropout));
    in = h;
  }
  seq->add(std::make_shared<Linear>(in, cfg.classes, cfg.bias, opt));
  layers_ = registerModule("layers", seq);
}

Tensor MlpModel::forward(const Tensor& x) {
  const Tensor flat = x.dim() > 2 ? x.flatten(1) : x;
  LATHE_CHECK(flat.dim() == 2 && flat.size(1) == cfg_.input_dim, "MlpModel: input ", describe(x),
              " does not fit input_dim ", cfg_.input_dim, " (expected [N, ", cfg_.input_dim,
              "] or [N, *] with that many features)");
  return child(layers_).forward(flat);
}

}  // namespace lathe
