#include "core/run/RunConfig.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/base/Error.h"
#include "core/data/DatasetSpec.h"
#include "core/methods/Method.h"
#include "core/nn/Presets.h"
#include "core/nn/SpecReader.h"

namespace lathe::run {
namespace fs = std::filesystem;

namespace {

nlohmann::json normalizeTraining(const nlohmann::json& t, const std::string& path,
                                 std::optional<double>* target) {
  SpecReader r(t, path);
  nlohmann::json out;
  const int64_t max_steps = r.integer("max_steps", 0, 0, int64_t{1} << 40);
  const int64_t epochs = r.integer("epochs", max_steps > 0 ? 0 : 1, 0, 100000);
  if (max_steps == 0 && epochs == 0) r.fail("epochs", "give epochs >= 1 or max_steps >= 1");
  out["epochs"] = epochs;
  out["max_steps"] = max_steps;
  out["batch_size"] = r.integer("batch_size", 64, 1, 1 << 20);
  out["grad_accum"] = r.integer("grad_accum", 1, 1, 4096);
  out["clip_norm"] = r.number("clip_norm", 0.0, 0.0, 1e6);
  out["label_smoothing"] = r.number("label_smoothing", 0.0, 0.0, 0.999);
  out["eval_every"] = r.integer("eval_every", 0, 0);
  out["eval_batches"] = r.integer("eval_batches", 0, 0);
  out["checkpoint_every"] = r.integer("checkpoint_every", 500, 0);
  nlohmann::json sched = {{"kind", "constant"}};
  r.accept("schedule");
  if (t.contains("schedule")) {
    SpecReader s(t["schedule"], r.field("schedule"));
    sched["kind"] = s.string("kind", "constant", {"constant", "cosine", "linear", "step"});
    sched["warmup_steps"] = s.integer("warmup_steps", 0, 0);
    sched["min_lr_ratio"] = s.number("min_lr_ratio", 0.0, 0.0, 1.0);
    if (sched["kind"] == "step") {
      sched["step_size"] = s.integer("step_size", std::nullopt, 1);
      sched["gamma"] = s.number("gamma", 0.1, 1e-9, 1.0);
    }
    s.finish();
  } else {
    sched["warmup_steps"] = 0;
    sched["min_lr_ratio"] = 0.0;
  }
  out["schedule"] = sched;
  if (r.has("target_accuracy")) {
    *target = r.number("target_accuracy", std::nullopt, 0.0, 1.0);
    out["target_accuracy"] = **target;
  }
  r.finish();
  return out;
}

std::string fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string("fnv1a64:") + buf;
}

}  // namespace

RunConfig RunConfig::parse(const nlohmann::json& j, const std::string& base_dir) {
  if (!j.is_object()) throw Error("config: expected a JSON object, got " + j.dump());
  SpecReader r(j, "config");
  RunConfig c;
  c.base_dir = base_dir;
  const int64_t version = r.integer("version", kRunConfigVersion, 1);
  if (version > kRunConfigVersion)
    r.fail("version", "this Lathe reads configs up to version " +
                          std::to_string(kRunConfigVersion) + ", got " + std::to_string(version) +
                          "; update Lathe");
  c.name = r.string("name", "run");
  r.accept("tags");
  if (j.contains("tags")) {
    if (!j["tags"].is_array()) r.fail("tags", "expected a list of strings");
    for (size_t i = 0; i < j["tags"].size(); ++i) {
      if (!j["tags"][i].is_string())
        throw Error("tags[" + std::to_string(i) + "]: expected a string, got " +
                    j["tags"][i].dump());
      c.tags.push_back(j["tags"][i].get<std::string>());
    }
  }
  c.seed = static_cast<uint64_t>(r.integer("seed", 0, 0));
  r.accept("model");
  if (!j.contains("model")) r.fail("model", "missing: the model preset spec");
  c.model = normalizeModelSpec(j["model"], "model");
  r.accept("dataset");
  if (!j.contains("dataset")) r.fail("dataset", "missing: the dataset spec");
  c.dataset = data::normalizeDatasetSpec(j["dataset"], "dataset");
  r.accept("training");
  c.training = normalizeTraining(j.contains("training") ? j["training"] : nlohmann::json::object(),
                                 "training", &c.target_accuracy);

  auto& registry = methods::MethodRegistry::instance();
  r.accept("methods");
  std::vector<std::string> names;
  bool has_optimizer = false;
  if (j.contains("methods")) {
    if (!j["methods"].is_array()) r.fail("methods", "expected a list of method objects");
    for (size_t i = 0; i < j["methods"].size(); ++i) {
      const std::string path = "methods[" + std::to_string(i) + "]";
      nlohmann::json m = registry.validate(j["methods"][i], path);
      const std::string name = m["name"].get<std::string>();
      if (registry.info(name).category == "optimizer") has_optimizer = true;
      names.push_back(name);
      c.methods.push_back(std::move(m));
    }
  }
  registry.checkConflicts(names, "methods");
  if (!has_optimizer)
    c.methods.push_back(registry.validate({{"name", "adamw"}}, "methods[default]"));

  r.accept("hardware");
  if (j.contains("hardware")) {
    SpecReader h(j["hardware"], "hardware");
    c.device = h.string("device", "cpu");
    try {
      c.device = Device::parse(c.device).str();
    } catch (const Error&) {
      h.fail("device", "expected \"cpu\" or \"cuda:N\", got \"" + c.device + "\"");
    }
    h.finish();
  }
  r.finish();
  return c;
}

RunConfig RunConfig::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the run config");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  try {
    const fs::path dir = fs::absolute(fs::path(path)).parent_path();
    return parse(j, dir.string());
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

nlohmann::json RunConfig::toJson() const {
  nlohmann::json j;
  j["version"] = kRunConfigVersion;
  j["name"] = name;
  j["tags"] = tags;
  j["seed"] = seed;
  j["model"] = model;
  j["dataset"] = dataset;
  j["training"] = training;
  j["methods"] = methods;
  j["hardware"] = {{"device", device}};
  return j;
}

std::string RunConfig::canonical() const {
  // nlohmann::json objects keep keys sorted, so dump() is canonical.
  return toJson().dump();
}

std::string RunConfig::hash() const {
  return fnv1a64(canonical());
}

train::TrainOptions RunConfig::trainOptions() const {
  train::TrainOptions o;
  o.epochs = training.at("epochs").get<int64_t>();
  o.max_steps = training.at("max_steps").get<int64_t>();
  o.batch_size = training.at("batch_size").get<int64_t>();
  o.grad_accum = training.at("grad_accum").get<int64_t>();
  o.clip_norm = training.at("clip_norm").get<double>();
  o.label_smoothing = training.at("label_smoothing").get<double>();
  o.eval_every = training.at("eval_every").get<int64_t>();
  o.eval_batches = training.at("eval_batches").get<int64_t>();
  o.checkpoint_every = training.at("checkpoint_every").get<int64_t>();
  o.seed = seed;
  o.device = Device::parse(device);
  return o;
}

optim::LrScheduleOptions RunConfig::scheduleOptions(int64_t total_steps) const {
  const auto& s = training.at("schedule");
  optim::LrScheduleOptions o;
  o.kind = optim::parseScheduleKind(s.at("kind").get<std::string>());
  o.warmup_steps = s.value("warmup_steps", int64_t{0});
  o.min_lr_ratio = s.value("min_lr_ratio", 0.0);
  o.step_size = s.value("step_size", int64_t{0});
  o.gamma = s.value("gamma", 0.1);
  o.total_steps = total_steps;
  return o;
}

const nlohmann::json& RunConfig::optimizerMethod() const {
  auto& registry = methods::MethodRegistry::instance();
  for (const auto& m : methods)
    if (registry.info(m.at("name").get<std::string>()).category == "optimizer") return m;
  throw Error("config: no optimizer method");
}

}  // namespace lathe::run
