// PLACEHOLDER: the op benchmark arrives with the CPU engine's kernels.
#include <iostream>

#include "bench/Suites.h"

namespace lathe::bench {

int runOps(const Options&) {
  std::cerr << "lathe-bench ops: not built yet\n";
  return 1;
}

}  // namespace lathe::bench
