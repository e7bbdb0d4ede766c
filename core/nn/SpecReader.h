// Strict reading of one JSON object of an architecture spec: typed fields with defaults and
// ranges, and errors that name the field by its path ("model.n_head: expected ..."). finish()
// rejects fields nobody read, so a typo is an error rather than a silently ignored option.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace lathe {

class SpecReader {
 public:
  // Throws unless `obj` is a JSON object.
  SpecReader(const nlohmann::json& obj, std::string path);

  // Each getter throws when the field is absent without a default, has the wrong JSON type,
  // or is outside [lo, hi].
  int64_t integer(const std::string& key, std::optional<int64_t> def = std::nullopt,
                  int64_t lo = INT64_MIN, int64_t hi = INT64_MAX);
  double number(const std::string& key, std::optional<double> def = std::nullopt,
                double lo = -1e308, double hi = 1e308);
  bool boolean(const std::string& key, std::optional<bool> def = std::nullopt);
  // With `choices`, the value must be one of them.
  std::string string(const std::string& key, std::optional<std::string> def = std::nullopt,
                     const std::vector<std::string>& choices = {});
  std::vector<int64_t> integers(const std::string& key,
                                std::optional<std::vector<int64_t>> def = std::nullopt,
                                int64_t lo = INT64_MIN);
  bool has(const std::string& key) const;
  // Marks a field as known without reading it.
  void accept(const std::string& key) { read_.insert(key); }

  // "model.n_head"
  std::string field(const std::string& key) const { return path_ + "." + key; }
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;
  // Throws naming every field that no getter read.
  void finish() const;

 private:
  const nlohmann::json* find(const std::string& key);
  const nlohmann::json& obj_;
  std::string path_;
  std::set<std::string> read_;
};

}  // namespace lathe
