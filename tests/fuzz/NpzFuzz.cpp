// libFuzzer target: .npz archives (the zip reader, stored and deflate members, and the .npy
// parser behind it) from memory.
#include "core/data/Npy.h"
#include "tests/fuzz/FuzzCommon.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lathe::data;
  lathe::fuzz::init();
  lathe::fuzz::parseOrRefuse(
      [&] { parseNpz(ByteSpan(data, size), "fuzz.npz", lathe::fuzz::kFuzzMaxInflated); });
  return 0;
}
