// SpecReader: typed, range-checked access to an architecture spec object with path-named errors.
#include "core/nn/SpecReader.h"

#include <cmath>

#include "core/base/Error.h"

namespace lathe {

SpecReader::SpecReader(const nlohmann::json& obj, std::string path)
    : obj_(obj), path_(std::move(path)) {
  LATHE_CHECK(obj.is_object(), path_, ": expected a JSON object, got ", obj.type_name());
}

void SpecReader::fail(const std::string& key, const std::string& message) const {
  ::lathe::fail(field(key), ": ", message);
}

bool SpecReader::has(const std::string& key) const {
  return obj_.contains(key) && !obj_.at(key).is_null();
}

const nlohmann::json* SpecReader::find(const std::string& key) {
  read_.insert(key);
  if (!has(key)) return nullptr;
  return &obj_.at(key);
}

int64_t SpecReader::integer(const std::string& key, std::optional<int64_t> def, int64_t lo,
                            int64_t hi) {
  const nlohmann::json* v = find(key);
  if (v == nullptr) {
    if (!def) fail(key, "required integer is missing");
    return *def;
  }
  int64_t out = 0;
  if (v->is_number_integer()) {
    out = v->get<int64_t>();
  } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
             std::abs(v->get<double>()) < 9.0e15) {
    out = static_cast<int64_t>(v->get<double>());
  } else {
    fail(key, "expected an integer, got " + v->dump());
  }
  if (out < lo || out > hi)
    fail(key, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                  "], got " + std::to_string(out));
  return out;
}

double SpecReader::number(const std::string& key, std::optional<double> def, double lo, double hi) {
  const nlohmann::json* v = find(key);
  if (v == nullptr) {
    if (!def) fail(key, "required number is missing");
    return *def;
  }
  if (!v->is_number()) fail(key, "expected a number, got " + v->dump());
  const double out = v->get<double>();
  if (!(out >= lo && out <= hi))
    fail(key, "expected a number in [" + nlohmann::json(lo).dump() + ", " +
                  nlohmann::json(hi).dump() + "], got " + v->dump());
  return out;
}

bool SpecReader::boolean(const std::string& key, std::optional<bool> def) {
  const nlohmann::json* v = find(key);
  if (v == nullptr) {
    if (!def) fail(key, "required boolean is missing");
    return *def;
  }
  if (!v->is_boolean()) fail(key, "expected true or false, got " + v->dump());
  return v->get<bool>();
}

std::string SpecReader::string(const std::string& key, std::optional<std::string> def,
                               const std::vector<std::string>& choices) {
  const nlohmann::json* v = find(key);
  std::string out;
  if (v == nullptr) {
    if (!def) fail(key, "required string is missing");
    out = *def;
  } else {
    if (!v->is_string()) fail(key, "expected a string, got " + v->dump());
    out = v->get<std::string>();
  }
  if (choices.empty()) return out;
  std::string list;
  for (const std::string& c : choices) {
    if (c == out) return out;
    list += (list.empty() ? "" : ", ") + c;
  }
  fail(key, "expected one of " + list + "; got \"" + out + "\"");
}

std::vector<int64_t> SpecReader::integers(const std::string& key,
                                          std::optional<std::vector<int64_t>> def, int64_t lo) {
  const nlohmann::json* v = find(key);
  if (v == nullptr) {
    if (!def) fail(key, "required list of integers is missing");
    return *def;
  }
  if (!v->is_array()) fail(key, "expected a list of integers, got " + v->dump());
  std::vector<int64_t> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const nlohmann::json& e = (*v)[i];
    if (!e.is_number_integer())
      fail(key, "element " + std::to_string(i) + ": expected an integer, got " + e.dump());
    const int64_t x = e.get<int64_t>();
    if (x < lo)
      fail(key, "element " + std::to_string(i) + ": expected an integer >= " + std::to_string(lo) +
                    ", got " + std::to_string(x));
    out.push_back(x);
  }
  return out;
}

void SpecReader::finish() const {
  std::string unknown, known;
  for (const auto& [k, v] : obj_.items())
    if (!read_.count(k)) unknown += (unknown.empty() ? "" : ", ") + k;
  for (const std::string& k : read_) known += (known.empty() ? "" : ", ") + k;
  LATHE_CHECK(unknown.empty(), path_, ": unknown field(s) ", unknown, " (known: ", known, ")");
}

}  // namespace lathe
