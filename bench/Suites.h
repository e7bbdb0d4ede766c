// Benchmark suites and shared options. Each suite prints a table of Lathe vs its peer.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace lathe::bench {

struct Options {
  int threads = 0;
  int repeats = 20;
  bool no_peer = false;
  std::string filter;
  std::string device = "cpu";  // for the suites that take a device (methods, checkpoint)
  std::string model;           // methods: "gpt", "cnn", "mlp" or "all"; "" = gpt and cnn
};

struct Suite {
  std::string name;
  std::string help;
  std::function<int(const Options&)> run;
  bool needs_gpu = false;  // listed by --list-gpu (scripts/gpu-check runs those)
};

const std::vector<Suite>& suites();

}  // namespace lathe::bench
