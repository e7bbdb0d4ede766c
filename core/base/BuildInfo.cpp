#include "core/base/BuildInfo.h"

#include <mutex>
#include <sstream>

#include "core/base/Version.h"

namespace lathe {
namespace {
std::mutex& capabilityMutex() {
  static std::mutex m;
  return m;
}
std::vector<std::pair<std::string, std::string>>& capabilityList() {
  static std::vector<std::pair<std::string, std::string>> list;
  return list;
}
}  // namespace

const char* version() {
  return LATHE_VERSION_STRING;
}

void addCapability(const std::string& name, const std::string& value) {
  std::lock_guard<std::mutex> lock(capabilityMutex());
  for (auto& [n, v] : capabilityList()) {
    if (n == name) {
      v = value;
      return;
    }
  }
  capabilityList().emplace_back(name, value);
}

std::vector<std::pair<std::string, std::string>> capabilities() {
  std::lock_guard<std::mutex> lock(capabilityMutex());
  return capabilityList();
}

std::string versionReport(const std::string& program) {
  std::ostringstream os;
  os << program << " " << version() << " (" << LATHE_BUILD_TYPE << ", " << LATHE_COMPILER << ")\n";
  for (const auto& [name, value] : capabilities()) os << "  " << name << ": " << value << "\n";
  return os.str();
}

}  // namespace lathe
