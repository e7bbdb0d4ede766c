// libFuzzer target: GPT-2 BPE on arbitrary bytes. encode must never fail and decode(encode(x))
// must give x back exactly (a mismatch traps); the same bytes read as a JSON id list must decode
// or be refused with lathe::Error.
#include <cstdlib>

#include "core/data/Gpt2Tokenizer.h"
#include "tests/fuzz/FuzzCommon.h"

namespace {
const lathe::data::Gpt2Tokenizer& tokenizer() {
  static const lathe::data::Gpt2Tokenizer tok =
      lathe::data::Gpt2Tokenizer::load(LATHE_SHARED_DIR "/data/gpt2");
  return tok;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lathe::fuzz::init();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto ids = tokenizer().encode(text, /*allow_special=*/(size & 1) != 0);
  if (tokenizer().decode(ids) != text) __builtin_trap();
  lathe::fuzz::parseOrRefuse([&] { lathe::data::decodeFromJson(tokenizer(), text); });
  return 0;
}
