// lathe-bench: benchmarks that print tables comparing Lathe with a peer measured in the same
// run. Suites register themselves in bench/Suites.h.
#include <CLI/CLI.hpp>
#include <iostream>

#include "bench/Suites.h"
#include "core/base/BuildInfo.h"
#include "core/base/Error.h"
#include "kernels/Backends.h"

int main(int argc, char** argv) {
  CLI::App app{"lathe-bench: Lathe against its peers, measured in one run"};
  app.set_version_flag("--version,-V", [] { return lathe::versionReport("lathe-bench"); });
  lathe::bench::Options opts;
  app.add_option("--threads", opts.threads, "CPU threads for Lathe and the peer (0: all cores)");
  app.add_option("--repeats", opts.repeats, "timed repetitions per case (median reported)");
  app.add_flag("--no-peer", opts.no_peer, "skip the PyTorch peer");
  app.add_option("--filter", opts.filter, "only cases whose name contains this");
  app.add_option("--device", opts.device,
                 "cpu or cuda:N for the suites that take a device (methods, checkpoint); they "
                 "skip when there is no GPU");
  app.add_option("--model", opts.model, "methods: the base example (default: gpt and cnn)")
      ->check(CLI::IsMember({"gpt", "cnn", "mlp", "all"}));
  bool list_gpu = false;
  app.add_flag("--list-gpu", list_gpu, "print the names of the GPU suites and exit");
  std::vector<std::string> suites;
  for (const auto& s : lathe::bench::suites()) suites.push_back(s.name);
  std::string which;
  app.add_option("suite", which, "suite to run")->check(CLI::IsMember(suites));
  try {
    lathe::registerBackends();
    app.parse(argc, argv);
    if (list_gpu) {
      for (const auto& s : lathe::bench::suites())
        if (s.needs_gpu) std::cout << s.name << "\n";
      return 0;
    }
    if (which.empty()) {
      std::cout << app.help();
      return 2;
    }
    for (const auto& s : lathe::bench::suites())
      if (s.name == which) return s.run(opts);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const lathe::Error& e) {
    std::cerr << "lathe-bench: " << e.what() << "\n";
    return 1;
  }
  return 2;
}
