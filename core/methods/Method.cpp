#include "core/methods/Method.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/base/Error.h"

namespace lathe::methods {
namespace {

std::string joined(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += sep;
    out += parts[i];
  }
  return out;
}

}  // namespace

const char* paramTypeName(ParamType t) {
  switch (t) {
    case ParamType::integer: return "integer";
    case ParamType::number: return "number";
    case ParamType::boolean: return "boolean";
    case ParamType::choice: return "choice";
    case ParamType::string: return "string";
  }
  return "?";
}

MethodRegistry& MethodRegistry::instance() {
  static MethodRegistry* registry = [] {
    auto* r = new MethodRegistry();
    registerOptimizerMethods(*r);
    registerPrecisionMethods(*r);
    registerCheckpointingMethods(*r);
    return r;
  }();
  return *registry;
}

void MethodRegistry::add(MethodInfo info, MethodFactory factory) {
  LATHE_CHECK(!contains(info.name), "method '", info.name, "' is registered twice");
  entries_.push_back({std::move(info), std::move(factory)});
}

void MethodRegistry::addConflict(const std::string& a, const std::string& b,
                                 const std::string& reason) {
  conflicts_.push_back({a, b, reason});
}

bool MethodRegistry::contains(const std::string& name) const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const Entry& e) { return e.info.name == name; });
}

const MethodInfo& MethodRegistry::info(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.info.name == name) return e.info;
  std::vector<std::string> names;
  for (const auto& e : entries_) names.push_back(e.info.name);
  const std::string known = joined(names, ", ");
  throw Error("unknown method '" + name + "' (known: " + known + ")");
}

std::vector<const MethodInfo*> MethodRegistry::all() const {
  std::vector<const MethodInfo*> out;
  for (const auto& e : entries_) out.push_back(&e.info);
  return out;
}

std::unique_ptr<Method> MethodRegistry::create(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.info.name == name) return e.factory();
  info(name);  // throws with the list of known names
  return nullptr;
}

namespace {

std::string range(const ParamSpec& p) {
  std::ostringstream s;
  s << '[' << p.min << ", " << p.max << ']';
  return s.str();
}

}  // namespace

nlohmann::json MethodRegistry::validate(const nlohmann::json& entry,
                                        const std::string& path) const {
  if (!entry.is_object())
    throw Error(path + ": expected an object {\"name\": ..., parameters...}, got " + entry.dump());
  if (!entry.contains("name") || !entry["name"].is_string())
    throw Error(path + ".name: expected the method's name as a string");
  const std::string name = entry["name"].get<std::string>();
  const MethodInfo* mi = nullptr;
  try {
    mi = &info(name);
  } catch (const Error& e) {
    throw Error(path + ".name: " + e.what());
  }
  nlohmann::json out = {{"name", name}};
  for (const auto& [key, value] : entry.items()) {
    if (key == "name") continue;
    const bool known = std::any_of(mi->params.begin(), mi->params.end(),
                                   [&](const ParamSpec& p) { return p.name == key; });
    if (!known) {
      std::vector<std::string> list;
      for (const auto& p : mi->params) list.push_back(p.name);
      const std::string names = joined(list, ", ");
      throw Error(path + "." + key + ": method '" + name + "' has no parameter '" + key +
                  "' (it has: " + (names.empty() ? "none" : names) + ")");
    }
  }
  for (const auto& p : mi->params) {
    const std::string field = path + "." + p.name;
    if (!entry.contains(p.name)) {
      out[p.name] = p.default_value;
      continue;
    }
    const auto& v = entry[p.name];
    switch (p.type) {
      case ParamType::integer: {
        const bool integral =
            v.is_number_integer() ||
            (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
        if (!integral || v.get<double>() < p.min || v.get<double>() > p.max)
          throw Error(field + ": expected an integer in " + range(p) + ", got " + v.dump());
        out[p.name] = static_cast<int64_t>(v.get<double>());
        break;
      }
      case ParamType::number:
        if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < p.min ||
            v.get<double>() > p.max)
          throw Error(field + ": expected a number in " + range(p) + ", got " + v.dump());
        out[p.name] = v.get<double>();
        break;
      case ParamType::boolean:
        if (!v.is_boolean()) throw Error(field + ": expected true or false, got " + v.dump());
        out[p.name] = v;
        break;
      case ParamType::choice: {
        const bool ok = v.is_string() && std::find(p.choices.begin(), p.choices.end(),
                                                   v.get<std::string>()) != p.choices.end();
        if (!ok) {
          std::vector<std::string> quoted;
          for (const auto& s : p.choices) quoted.push_back("\"" + s + "\"");
          const std::string c = joined(quoted, ", ");
          throw Error(field + ": expected one of " + c + ", got " + v.dump());
        }
        out[p.name] = v;
        break;
      }
      case ParamType::string:
        if (!v.is_string()) throw Error(field + ": expected a string, got " + v.dump());
        out[p.name] = v;
        break;
    }
  }
  return out;
}

void MethodRegistry::checkConflicts(const std::vector<std::string>& names,
                                    const std::string& path) const {
  for (size_t i = 0; i < names.size(); ++i)
    for (size_t j = i + 1; j < names.size(); ++j) {
      if (names[i] == names[j])
        throw Error(path + ": method '" + names[i] + "' is listed twice (methods[" +
                    std::to_string(i) + "] and methods[" + std::to_string(j) + "])");
      for (const auto& c : conflicts_)
        if ((c.a == names[i] && c.b == names[j]) || (c.a == names[j] && c.b == names[i]))
          throw Error(path + ": methods '" + names[i] + "' and '" + names[j] +
                      "' cannot be combined: " + c.reason);
    }
}

nlohmann::json paramSpecToJson(const ParamSpec& p) {
  nlohmann::json j = {{"name", p.name},
                      {"type", paramTypeName(p.type)},
                      {"default", p.default_value},
                      {"unit", p.unit},
                      {"help", p.help}};
  if (p.type == ParamType::integer || p.type == ParamType::number) {
    j["min"] = p.min;
    j["max"] = p.max;
    j["log_scale"] = p.log_scale;
  }
  if (p.type == ParamType::choice) j["choices"] = p.choices;
  return j;
}

nlohmann::json MethodRegistry::toJson() const {
  nlohmann::json methods = nlohmann::json::array();
  for (const auto& e : entries_) {
    nlohmann::json params = nlohmann::json::array();
    for (const auto& p : e.info.params) params.push_back(paramSpecToJson(p));
    methods.push_back({{"name", e.info.name},
                       {"title", e.info.title},
                       {"category", e.info.category},
                       {"summary", e.info.summary},
                       {"params", params}});
  }
  nlohmann::json conflicts = nlohmann::json::array();
  for (const auto& c : conflicts_)
    conflicts.push_back({{"methods", {c.a, c.b}}, {"reason", c.reason}});
  return {{"schema_version", 1}, {"methods", methods}, {"conflicts", conflicts}};
}

}  // namespace lathe::methods
