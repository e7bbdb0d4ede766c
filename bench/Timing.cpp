#include "bench/Timing.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "core/base/Error.h"

namespace lathe::bench {

int64_t envInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  LATHE_CHECK(end != v && *end == '\0' && n >= 0, name, "=\"", v,
              "\": expected a non-negative integer");
  return n;
}

double medianMs(const std::function<void()>& fn, int repeats, int warmup) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < std::max(repeats, 1); ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    const auto b = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::milli>(b - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::map<std::string, double> runPeer(const std::string& script,
                                      const std::vector<std::string>& args, std::string& why) {
  std::map<std::string, double> out;
  const char* py_env = std::getenv("LATHE_PEER_PYTHON");
  const std::string py = py_env ? py_env : "/usr/bin/python3";
  std::string cmd = py + " " + std::string(LATHE_SOURCE_DIR) + "/bench/peers/" + script;
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    why = "could not start " + py;
    return out;
  }
  std::array<char, 4096> buf{};
  std::string last;
  while (fgets(buf.data(), static_cast<int>(buf.size()), p)) {
    std::istringstream line(buf.data());
    std::string tag, name;
    double ms = 0;
    if (line >> tag >> name >> ms && tag == "RESULT") {
      out[name] = ms;
    } else {
      last = buf.data();
    }
  }
  const int rc = pclose(p);
  if (out.empty()) why = "peer failed (rc " + std::to_string(rc) + "): " + last;
  return out;
}

// Display width of UTF-8 text ("Δ" is two bytes, one column): bytes that start a character.
static size_t columns(const std::string& s) {
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

void Table::print() const {
  std::vector<size_t> w(header_.size(), 0);
  auto widen = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], columns(r[i]));
  };
  widen(header_);
  for (const auto& r : rows_) widen(r);
  auto line = [&](const std::vector<std::string>& r) {
    std::cout << "|";
    for (size_t i = 0; i < w.size(); ++i) {
      const std::string c = i < r.size() ? r[i] : "";
      std::cout << " " << c << std::string(w[i] - columns(c), ' ') << " |";
    }
    std::cout << "\n";
  };
  line(header_);
  std::cout << "|";
  for (size_t x : w) std::cout << std::string(x + 2, '-') << "|";
  std::cout << "\n";
  for (const auto& r : rows_) line(r);
}

std::string fmt(double v, int precision) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", precision, v);
  return b;
}

}  // namespace lathe::bench
