// Timing and peer helpers shared by the benchmark suites.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace lathe::bench {

// The non-negative integer in environment variable `name`, or `fallback` when it is unset or
// empty; throws lathe::Error naming the variable for anything else.
int64_t envInt(const char* name, int64_t fallback);

// Median wall time in milliseconds of `repeats` calls after `warmup` calls.
double medianMs(const std::function<void()>& fn, int repeats, int warmup = 3);

// Runs a Python peer script (bench/peers/NAME) with /usr/bin/python3 (or $LATHE_PEER_PYTHON),
// passing `args`; parses lines "RESULT <case> <ms>" from its output. Returns an empty map and
// sets `why` when the peer cannot run (no Python, no PyTorch).
std::map<std::string, double> runPeer(const std::string& script,
                                      const std::vector<std::string>& args, std::string& why);

// Prints a table row-by-row with aligned columns.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

std::string fmt(double v, int precision = 3);

}  // namespace lathe::bench
