// What this build of Lathe can do: its version and a list of capabilities (backends, library
// versions) that backends and the UI add at registration. Printed by `--version`.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace lathe {

// The Lathe version, "MAJOR.MINOR.PATCH".
const char* version();

// Records a capability line such as {"oneDNN", "2.6.3 (cpu: avx512_core_bf16)"}; a second call
// with the same name replaces the value.
void addCapability(const std::string& name, const std::string& value);

// All capabilities in the order they were first added.
std::vector<std::pair<std::string, std::string>> capabilities();

// "lathe 0.1.0\n  name: value\n..." for --version.
std::string versionReport(const std::string& program);

}  // namespace lathe
