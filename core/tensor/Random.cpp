#include "core/tensor/Random.h"

#include <mutex>

namespace lathe {
namespace {
std::mutex rng_mutex;
RandomState rng{0x853c49e6748fea9bull, 0};
}  // namespace

void manualSeed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(rng_mutex);
  rng = {seed, 0};
}
RandomState rngState() {
  std::lock_guard<std::mutex> lock(rng_mutex);
  return rng;
}
void setRngState(RandomState s) {
  std::lock_guard<std::mutex> lock(rng_mutex);
  rng = s;
}
RandomState reserveRandom(uint64_t n) {
  std::lock_guard<std::mutex> lock(rng_mutex);
  RandomState s = rng;
  rng.offset += (n + 3) / 4 * 4;  // keep draws aligned to whole Philox blocks
  return s;
}

}  // namespace lathe
