// libFuzzer target: CSV text from memory. The first byte picks the options (delimiter, header
// mode, label by index or by name, classification or regression); the rest is the file.
#include "core/data/Csv.h"
#include "tests/fuzz/FuzzCommon.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lathe::data;
  lathe::fuzz::init();
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  CsvOptions o;
  o.delimiter = (mode & 1) ? ';' : ',';
  if (mode & 2) o.header = (mode & 4) != 0;
  if (mode & 8) o.label_name = "label";
  o.label_index = (mode & 16) ? 0 : -1;
  o.regression = (mode & 32) != 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  lathe::fuzz::parseOrRefuse([&] {
    const CsvTable t = parseCsv(text, "fuzz.csv", o);
    auto ds = makeCsvDataset(t, "fuzz");
    if (ds->size() > 0) ds->get(ds->size() - 1);
  });
  return 0;
}
