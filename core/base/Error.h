// lathe::Error: the one exception type for user-facing failures. Its message names the thing
// (file, tensor, shape, option) and what was expected. LATHE_CHECK builds such a message from
// streamable parts and is meant for argument checks, never for internal invariants only.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace lathe {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
}  // namespace detail

// Throws lathe::Error with the concatenation of parts.
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(detail::concat(parts...));
}

}  // namespace lathe

#define LATHE_CHECK(cond, ...)    \
  do {                            \
    if (!(cond)) {                \
      ::lathe::fail(__VA_ARGS__); \
    }                             \
  } while (false)
