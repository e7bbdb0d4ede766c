// libFuzzer target: .npy arrays parsed from memory, then converted as a dataset would.
#include "core/data/Npy.h"
#include "tests/fuzz/FuzzCommon.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lathe::data;
  lathe::fuzz::init();
  lathe::fuzz::parseOrRefuse([&] {
    const lathe::Tensor t = parseNpy(ByteSpan(data, size), "fuzz.npy");
    if (t.dim() >= 1 && t.size(0) > 0 && t.numel() < (1 << 20)) {
      ArrayDataset ds(t, t, 1.0, "fuzz");
      const int64_t idx[] = {t.size(0) - 1};
      ds.getBatch(idx, 0);
    }
  });
  return 0;
}
