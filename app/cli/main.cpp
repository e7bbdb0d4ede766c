// lathe-cli: everything the workbench does, from a terminal. Exit codes: 0 done, 1 run failed,
// 2 bad usage or config.
#include <CLI/CLI.hpp>
#include <iostream>

#include "app/cli/Commands.h"
#include "core/base/BuildInfo.h"
#include "core/base/Error.h"
#include "kernels/Backends.h"

int main(int argc, char** argv) {
  CLI::App app{"lathe-cli: train, measure and compare efficient neural networks from a terminal"};
  app.set_version_flag("--version,-V", [] { return lathe::versionReport("lathe-cli"); });
  app.require_subcommand(0, 1);
  addTokenizeCommand(app);
  addRunCommands(app);
  try {
    lathe::registerBackends();
  } catch (const lathe::Error& e) {
    std::cerr << "lathe-cli: " << e.what() << "\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Subcommands end with CLI::RuntimeError(code) carrying their exit code (1: the run
    // failed, 2: bad input); CLI11's own parse errors are usage errors.
    const int rc = app.exit(e);
    return rc == 0 ? 0 : (dynamic_cast<const CLI::RuntimeError*>(&e) != nullptr ? rc : 2);
  }
  if (app.get_subcommands().empty()) {
    std::cout << app.help();
    return 0;
  }
  return 0;
}
