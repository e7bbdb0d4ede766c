// Every loader against many damaged variants of a valid file: every truncation, single-byte
// flips at every offset, and seeded random multi-byte mutations and insertions. Each variant must
// either parse or throw lathe::Error (nothing else, no crash); the ASan build catches overreads.
// Strict formats must also refuse every truncation of a valid file.
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "core/base/Error.h"
#include "core/data/Csv.h"
#include "core/data/Gpt2Tokenizer.h"
#include "core/data/ImageFormats.h"
#include "core/data/Npy.h"
#include "core/data/Zip.h"

namespace lathe::data {
namespace {

struct Outcome {
  int parsed = 0, refused = 0;
};

// Runs `parse` on `input`; records a refusal (lathe::Error) or success, fails on anything else.
void attempt(const std::function<void(ByteSpan)>& parse, const Bytes& input, Outcome& out,
             const std::string& what) {
  try {
    parse(input);
    ++out.parsed;
  } catch (const Error& e) {
    ++out.refused;
    EXPECT_GT(std::string(e.what()).size(), 10u) << what;  // says something
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": threw a non-lathe exception: " << e.what();
  }
}

// Truncations (all, or every `step`-th for long files), byte flips, random damage.
Outcome mutate(const Bytes& valid, const std::function<void(ByteSpan)>& parse,
               bool truncation_must_fail, int random_trials = 2000) {
  Outcome all;
  {
    Outcome whole;
    attempt(parse, valid, whole, "the valid file");
    EXPECT_EQ(whole.parsed, 1) << "the unmodified file must parse";
  }
  const size_t step = std::max<size_t>(1, valid.size() / 600);
  for (size_t n = 0; n < valid.size(); n += step) {
    Outcome t;
    attempt(parse, Bytes(valid.begin(), valid.begin() + static_cast<std::ptrdiff_t>(n)), t,
            "truncated to " + std::to_string(n));
    if (truncation_must_fail) EXPECT_EQ(t.refused, 1) << "truncated to " << n << " bytes";
    all.parsed += t.parsed;
    all.refused += t.refused;
  }
  for (size_t i = 0; i < valid.size(); i += step)
    for (uint8_t x : {0x01, 0x80, 0xFF}) {
      Bytes b = valid;
      b[i] ^= x;
      attempt(parse, b, all, "byte " + std::to_string(i) + " ^ " + std::to_string(x));
    }
  std::mt19937_64 gen(1234);
  for (int trial = 0; trial < random_trials; ++trial) {
    Bytes b = valid;
    const int edits = 1 + static_cast<int>(gen() % 8);
    for (int e = 0; e < edits && !b.empty(); ++e) {
      const size_t at = gen() % b.size();
      switch (gen() % 4) {
        case 0: b[at] = static_cast<uint8_t>(gen()); break;
        case 1:
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), static_cast<uint8_t>(gen()));
          break;
        case 2: b.erase(b.begin() + static_cast<std::ptrdiff_t>(at)); break;
        default: {  // an interesting 32-bit value (sizes, counts) at a random offset
          static const uint32_t kValues[] = {0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF};
          const uint32_t v = kValues[gen() % std::size(kValues)];
          for (size_t k = 0; k < 4 && at + k < b.size(); ++k)
            b[at + k] = static_cast<uint8_t>(v >> (8 * k));
        }
      }
    }
    attempt(parse, b, all, "random trial " + std::to_string(trial));
  }
  return all;
}

Bytes idxImages() {
  Bytes b = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5};
  for (int i = 0; i < 60; ++i) b.push_back(static_cast<uint8_t>(i * 4));
  return b;
}

TEST(DataCorruption, Idx) {
  const Outcome o = mutate(
      idxImages(), [](ByteSpan b) { parseIdx(b, "m.idx"); }, true);
  EXPECT_GT(o.refused, 100);
  const Bytes f64 =
      encodeIdx(Tensor::fromVector(std::vector<double>{1, -2, 3.5, 4}, {2, 2}, DType::f64));
  mutate(
      f64, [](ByteSpan b) { parseIdx(b, "f.idx"); }, true);
  // Gzipped: damage the compressed stream.
  mutate(
      gzipBytes(idxImages()), [](ByteSpan b) { parseIdx(gunzip(b, "m.gz", 1 << 20), "m"); }, true);
}

TEST(DataCorruption, Cifar) {
  Bytes b;
  for (int i = 0; i < 2; ++i) {
    b.push_back(static_cast<uint8_t>(i + 3));
    for (int p = 0; p < 3072; ++p) b.push_back(static_cast<uint8_t>(p * 7 + i));
  }
  // Truncations of a whole number of records can still parse (fewer records); others must not.
  const Outcome o = mutate(
      b, [](ByteSpan s) { parseCifar10(s, "c.bin"); }, false, 300);
  EXPECT_GT(o.refused, 100);
}

TEST(DataCorruption, Npy) {
  for (DType t : {DType::f32, DType::i64, DType::u8, DType::b8, DType::f16}) {
    const Bytes valid =
        encodeNpy(Tensor::fromVector(std::vector<double>{1, 0, 1, 1, 0, 1}, {3, 2}, t));
    mutate(
        valid, [](ByteSpan b) { parseNpy(b, "m.npy"); }, true, 1000);
  }
  // A big-endian v2 header and a v3 header.
  Bytes v2 = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0};
  const std::string h = "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }\n";
  for (int k = 0; k < 4; ++k) v2.push_back(static_cast<uint8_t>(k == 0 ? h.size() : 0));
  v2.insert(v2.end(), h.begin(), h.end());
  v2.insert(v2.end(), {0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFE});
  mutate(
      v2, [](ByteSpan b) { parseNpy(b, "v2.npy"); }, true);
}

TEST(DataCorruption, Npz) {
  const std::map<std::string, Tensor> arrays = {
      {"x", Tensor::fromVector(std::vector<double>{0.5, -1, 2, 3, 4, 5}, {2, 3})},
      {"y", Tensor::fromVector(std::vector<int64_t>{3, 7}, {2})}};
  for (bool compress : {false, true}) {
    const Outcome o = mutate(
        encodeNpz(arrays, compress), [](ByteSpan b) { parseNpz(b, "m.npz", 1 << 20); }, true, 1500);
    EXPECT_GT(o.refused, 1000);
  }
}

TEST(DataCorruption, Csv) {
  const std::string text =
      "sepal,petal,\"species\"\n1.5,2,setosa\n-3e2,4.25,\"virginica, v\"\n0,7,setosa\n";
  for (const char* by_name : {"", "species"}) {
    CsvOptions o;
    o.label_name = by_name;
    const auto parse = [o](ByteSpan b) {
      const CsvTable t =
          parseCsv(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), "m.csv", o);
      if (t.labels.numel() > 0) makeCsvDataset(t, "m")->get(0);
    };
    mutate(Bytes(text.begin(), text.end()), parse, false, 1500);
  }
}

TEST(DataCorruption, Gpt2TextAndIdLists) {
  const std::string dir = std::string(LATHE_SHARED_DIR) + "/data/gpt2";
  Gpt2Tokenizer* tok = nullptr;
  try {
    static Gpt2Tokenizer loaded = Gpt2Tokenizer::load(dir);
    tok = &loaded;
  } catch (const Error& e) {
    GTEST_SKIP() << "no GPT-2 vocabulary: " << e.what();
  }
  // Text: any bytes encode, and decode back exactly.
  const std::string text = "I'm sure it's naïve café 汉字 🙂\n\n  x <|endoftext|> 12345";
  const auto round_trip = [tok](ByteSpan b) {
    const std::string_view s(reinterpret_cast<const char*>(b.data()), b.size());
    if (tok->decode(tok->encode(s, b.size() % 2 == 0)) != s)
      throw std::runtime_error("decode(encode(x)) != x");
  };
  const Outcome o = mutate(Bytes(text.begin(), text.end()), round_trip, false, 1500);
  EXPECT_EQ(o.refused, 0);
  // JSON id lists for `tokenize --decode`.
  const std::string ids = "[15496, 995, 50256, 0, 220]";
  mutate(
      Bytes(ids.begin(), ids.end()),
      [tok](ByteSpan b) {
        decodeFromJson(*tok, std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
      },
      false, 1500);
}

}  // namespace
}  // namespace lathe::data
