// The process-wide counter-based random stream (Philox 4x32-10). A draw of n numbers takes the
// current (seed, offset) and advances offset by n, so results are the same for any thread
// count and on any device. State is saved into checkpoints and rewound by activation
// checkpointing so recomputed dropout masks match.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/backend/Backend.h"

namespace lathe {

void manualSeed(uint64_t seed);
RandomState rngState();
void setRngState(RandomState s);
// Reserves n consecutive counters and returns where they start.
RandomState reserveRandom(uint64_t n);

// Philox 4x32-10: four 32-bit outputs for a 128-bit counter and a 64-bit key.
struct Philox4 {
  uint32_t v[4];
};
inline LATHE_HD Philox4 philox4x32(uint64_t counter_lo, uint64_t counter_hi, uint64_t key) {
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// Element i of a stream: a uniform float in [0, 1) with 24 random bits. Element i uses counter
// (offset + i) / 4 and lane (offset + i) % 4, so any split of the range across threads or
// blocks produces the same numbers.
inline LATHE_HD float philoxUniform(RandomState rs, uint64_t i) {
  const uint64_t c = rs.offset + i;
  const Philox4 r = philox4x32(c >> 2, 0, rs.seed);
  return static_cast<float>(r.v[c & 3] >> 8) * (1.0f / 16777216.0f);
}

// Element i of a standard normal stream (Box-Muller on two uniforms drawn from a second
// counter space, so normal and uniform streams of the same offset do not coincide).
inline LATHE_HD double philoxNormal(RandomState rs, uint64_t i) {
  const uint64_t c = rs.offset + i;
  const Philox4 r = philox4x32(c, 1, rs.seed);
  const uint64_t a = (static_cast<uint64_t>(r.v[0]) << 21) ^ r.v[1];
  const uint64_t b = (static_cast<uint64_t>(r.v[2]) << 21) ^ r.v[3];
  const double u1 = (static_cast<double>(a & ((1ull << 53) - 1)) + 1.0) / 9007199254740993.0;
  const double u2 = static_cast<double>(b & ((1ull << 53) - 1)) / 9007199254740992.0;
  return ::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586 * u2);
}

}  // namespace lathe
