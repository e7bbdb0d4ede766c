// libFuzzer target: CIFAR-10 binary batches from memory, then one gathered batch.
#include "core/data/ImageFormats.h"
#include "tests/fuzz/FuzzCommon.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lathe::data;
  lathe::fuzz::init();
  lathe::fuzz::parseOrRefuse([&] {
    const CifarArrays a = parseCifar10(ByteSpan(data, size), "fuzz.bin");
    ArrayDataset ds(a.images, a.labels, 1.0 / 255.0, "fuzz");
    const int64_t idx[] = {ds.size() - 1};
    ds.getBatch(idx, 0);
  });
  return 0;
}
