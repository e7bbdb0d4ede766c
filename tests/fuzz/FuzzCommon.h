// Shared set-up for the libFuzzer targets: backends registered once (tensors need the CPU
// allocator), and the rule every target checks: a loader either parses its input or throws
// lathe::Error. Any other exception escapes and libFuzzer reports it as a crash.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/base/Error.h"
#include "core/data/Bytes.h"
#include "kernels/Backends.h"

namespace lathe::fuzz {

// Decompression cap for fuzz inputs: small enough that a "zip bomb" cannot exhaust memory.
inline constexpr size_t kFuzzMaxInflated = size_t{64} << 20;

inline void init() {
  static const bool done = [] {
    registerBackends();
    return true;
  }();
  (void)done;
}

template <typename Fn>
void parseOrRefuse(Fn&& fn) {
  try {
    fn();
  } catch (const Error&) {
    // A clear refusal is a correct outcome for a corrupt input.
  }
}

}  // namespace lathe::fuzz
