// libFuzzer target: safetensors files and Lathe model files. The reader works on paths, so each
// input is written to a file of this process first (under TMPDIR, /tmp by default); then the
// header is validated, every tensor read, and the file loaded as a model (architecture spec
// from the metadata, tensors matched against the built model).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/io/ModelFile.h"
#include "core/io/Safetensors.h"
#include "tests/fuzz/FuzzCommon.h"

namespace {

const std::string& inputPath() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/lathe-fuzz-" +
           std::to_string(::getpid()) + ".safetensors";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lathe::fuzz::init();
  const std::string& path = inputPath();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  lathe::fuzz::parseOrRefuse([&] {
    const lathe::SafetensorsReader reader(path);
    reader.readAll();
  });
  lathe::fuzz::parseOrRefuse([&] { lathe::loadModel(path); });
  std::remove(path.c_str());
  return 0;
}
