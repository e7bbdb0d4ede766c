// libFuzzer target: IDX files, plain or gzipped, parsed from memory and, when they parse as an
// image or label array, used to build a dataset and gather a batch.
#include "core/data/ImageFormats.h"
#include "tests/fuzz/FuzzCommon.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lathe::data;
  lathe::fuzz::init();
  lathe::fuzz::parseOrRefuse([&] {
    const ByteSpan in(data, size);
    const Bytes plain = isGzip(in) ? gunzip(in, "fuzz.idx.gz", lathe::fuzz::kFuzzMaxInflated)
                                   : Bytes(in.begin(), in.end());
    const lathe::Tensor t = parseIdx(plain, "fuzz.idx");
    if (t.dtype() == lathe::DType::u8 && t.dim() == 3 && t.size(0) > 0 && t.size(0) <= (1 << 20)) {
      const lathe::Tensor labels = lathe::Tensor::zeros({t.size(0)}, lathe::DType::u8);
      auto ds = makeIdxDataset(t, labels, "fuzz");
      const int64_t idx[] = {0, t.size(0) - 1};
      ds->getBatch(idx, 0);
    }
  });
  return 0;
}
