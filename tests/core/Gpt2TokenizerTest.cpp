// GPT-2 BPE: the golden ids from shared/data/gpt2 (an independent reference encoder), the
// pre-tokenizer's splits, round trips over random UTF-8 and random bytes, the JSON helpers
// behind `lathe-cli tokenize`, and bad vocabulary files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/base/Error.h"
#include "core/data/Gpt2Tokenizer.h"

namespace lathe::data {
namespace {

const std::string kGpt2Dir = std::string(LATHE_SHARED_DIR) + "/data/gpt2";

const Gpt2Tokenizer& gpt2() {
  static const Gpt2Tokenizer tok = Gpt2Tokenizer::load(kGpt2Dir);
  return tok;
}

bool haveGpt2Files() {
  return std::filesystem::exists(kGpt2Dir + "/vocab.json") &&
         std::filesystem::exists(kGpt2Dir + "/merges.txt");
}

#define REQUIRE_GPT2()                                                           \
  do {                                                                           \
    if (!haveGpt2Files()) GTEST_SKIP() << "no GPT-2 vocabulary in " << kGpt2Dir; \
  } while (false)

std::vector<std::string> pieces(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view p : gpt2PreTokenize(text)) out.emplace_back(p);
  return out;
}

TEST(Gpt2Tokenizer, UnicodeTables) {
  EXPECT_TRUE(isUnicodeLetter(U'a'));
  EXPECT_TRUE(isUnicodeLetter(U'é'));
  EXPECT_TRUE(isUnicodeLetter(U'汉'));
  EXPECT_TRUE(isUnicodeLetter(U'ß'));
  EXPECT_FALSE(isUnicodeLetter(U'1'));
  EXPECT_FALSE(isUnicodeLetter(U'🙂'));
  EXPECT_TRUE(isUnicodeNumber(U'7'));
  EXPECT_TRUE(isUnicodeNumber(U'½'));  // No
  EXPECT_TRUE(isUnicodeNumber(U'٣'));  // Arabic-Indic digit three (Nd)
  EXPECT_TRUE(isUnicodeNumber(U'Ⅻ'));  // Roman numeral (Nl)
  EXPECT_FALSE(isUnicodeNumber(U'x'));
  EXPECT_TRUE(isUnicodeSpace(U'\u3000'));
  EXPECT_TRUE(isUnicodeSpace(U'\u00a0'));
  EXPECT_FALSE(isUnicodeSpace(U'_'));
}

TEST(Gpt2Tokenizer, PreTokenizerFollowsThePattern) {
  EXPECT_EQ(pieces("Hello world"), (std::vector<std::string>{"Hello", " world"}));
  // \s+(?!\S) leaves the last space of a run to the next word.
  EXPECT_EQ(pieces("a  b"), (std::vector<std::string>{"a", " ", " b"}));
  EXPECT_EQ(pieces("a \n b"), (std::vector<std::string>{"a", " \n", " b"}));
  EXPECT_EQ(pieces("x\n\n"), (std::vector<std::string>{"x", "\n\n"}));
  EXPECT_EQ(pieces("I'm they've it's 'x"),
            (std::vector<std::string>{"I", "'m", " they", "'ve", " it", "'s", " '", "x"}));
  EXPECT_EQ(pieces("abc123 45!?"), (std::vector<std::string>{"abc", "123", " 45", "!?"}));
  EXPECT_EQ(pieces("café 汉字"), (std::vector<std::string>{"café", " 汉字"}));
  EXPECT_EQ(pieces(""), (std::vector<std::string>{}));
  // Invalid UTF-8 bytes are "other" characters and are kept as they are.
  EXPECT_EQ(pieces("ab\xff\xfe cd"), (std::vector<std::string>{"ab", "\xff\xfe", " cd"}));
  std::string joined;
  for (const auto& p : pieces("  x\t\ty  \n")) joined += p;
  EXPECT_EQ(joined, "  x\t\ty  \n");
}

TEST(Gpt2Tokenizer, ReproducesGoldenIds) {
  REQUIRE_GPT2();
  std::ifstream in(kGpt2Dir + "/golden_tokens.jsonl");
  ASSERT_TRUE(in.good());
  std::string line;
  int checked = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    const std::string text = j.at("text").get<std::string>();
    const std::vector<int32_t> want = j.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(gpt2().encode(text), want) << "text: " << text;
    EXPECT_EQ(gpt2().decode(want), text);
    ++checked;
  }
  EXPECT_GE(checked, 15);
}

TEST(Gpt2Tokenizer, SpecialTokenOnlyWhenAllowed) {
  REQUIRE_GPT2();
  EXPECT_EQ(gpt2().tokenId("<|endoftext|>"), Gpt2Tokenizer::kEndOfText);
  EXPECT_EQ(gpt2().vocabSize(), 50257);
  const std::vector<int32_t> plain = gpt2().encode("a<|endoftext|>b");
  EXPECT_EQ(std::count(plain.begin(), plain.end(), Gpt2Tokenizer::kEndOfText), 0);
  const std::vector<int32_t> special = gpt2().encode("a<|endoftext|>b", true);
  EXPECT_EQ(special, (std::vector<int32_t>{64, Gpt2Tokenizer::kEndOfText, 65}));
  EXPECT_EQ(gpt2().decode(special), "a<|endoftext|>b");
}

std::string randomUtf8(std::mt19937_64& gen, size_t n) {
  // Mixes ASCII (letters, digits, punctuation, whitespace), Latin-1, CJK, emoji and the
  // characters around the pre-tokenizer's edges (apostrophes, U+00A0, U+3000).
  static const char32_t kSpecial[] = {U'\'', U' ', U'\n', U'\t', 0xA0, 0x3000, 0x2028, 0x85};
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    char32_t cp = 0;
    switch (gen() % 6) {
      case 0: cp = static_cast<char32_t>(0x20 + gen() % 95); break;
      case 1: cp = kSpecial[gen() % std::size(kSpecial)]; break;
      case 2: cp = static_cast<char32_t>(0xA0 + gen() % 0x160); break;
      case 3: cp = static_cast<char32_t>(0x4E00 + gen() % 0x5000); break;
      case 4: cp = static_cast<char32_t>(0x1F300 + gen() % 0x300); break;
      default: {
        cp = static_cast<char32_t>(1 + gen() % 0x10FFFF);
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'z';
      }
    }
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

TEST(Gpt2Tokenizer, RoundTripsRandomUtf8AndBytes) {
  REQUIRE_GPT2();
  std::mt19937_64 gen(42);
  for (int trial = 0; trial < 300; ++trial) {
    const std::string s = randomUtf8(gen, gen() % 64);
    const std::vector<int32_t> ids = gpt2().encode(s);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < 50257);
    ASSERT_EQ(gpt2().decode(ids), s);
  }
  for (int trial = 0; trial < 300; ++trial) {
    std::string s(gen() % 48, '\0');
    for (char& c : s) c = static_cast<char>(gen());
    ASSERT_EQ(gpt2().decode(gpt2().encode(s)), s);
  }
}

TEST(Gpt2Tokenizer, CacheGivesTheSameIds) {
  REQUIRE_GPT2();
  const std::string text = "the the the quick quick brown the";
  const std::vector<int32_t> first = gpt2().encode(text), second = gpt2().encode(text);
  EXPECT_EQ(first, second);
  EXPECT_EQ(first.size(), 7u);
}

TEST(Gpt2Tokenizer, JsonHelpersForTheCli) {
  REQUIRE_GPT2();
  EXPECT_EQ(tokenizeToJson(gpt2(), "Hello world"), "[15496,995]");
  EXPECT_EQ(tokenizeToJson(gpt2(), ""), "[]");
  EXPECT_EQ(decodeFromJson(gpt2(), "[15496, 995]\n"), "Hello world");
  EXPECT_THROW(decodeFromJson(gpt2(), "[1, \"x\"]"), Error);
  EXPECT_THROW(decodeFromJson(gpt2(), "{\"ids\": [1]}"), Error);
  EXPECT_THROW(decodeFromJson(gpt2(), "[1,"), Error);
  try {
    decodeFromJson(gpt2(), "[15496, 60000]");
    FAIL() << "an id past the vocabulary must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("60000"), std::string::npos) << e.what();
  }
}

TEST(Gpt2Tokenizer, TinyVocabularyMergesByRank) {
  REQUIRE_GPT2();
  // GPT-2's 256 byte tokens plus "ab", "abc", "bc" with merges a+b (rank 0), ab+c, b+c.
  std::ifstream vin(kGpt2Dir + "/vocab.json");
  const auto full = nlohmann::json::parse(vin);
  nlohmann::json vocab = nlohmann::json::object();
  for (const auto& [tok, v] : full.items())
    if (v.get<int>() < 256) vocab[tok] = v;
  vocab["ab"] = 256;
  vocab["abc"] = 257;
  vocab["bc"] = 258;
  const Gpt2Tokenizer tiny(vocab.dump(), "#version: 0.2\na b\nab c\nb c\n", "tiny");
  EXPECT_EQ(tiny.vocabSize(), 259);
  EXPECT_EQ(tiny.encode("abc"), (std::vector<int32_t>{257}));  // a+b first, then ab+c
  EXPECT_EQ(tiny.encode("bc"), (std::vector<int32_t>{258}));
  EXPECT_EQ(tiny.encode("abab"), (std::vector<int32_t>{256, 256}));
  EXPECT_EQ(tiny.encode("c"), (std::vector<int32_t>{full.at("c").get<int32_t>()}));
  EXPECT_EQ(tiny.decode(tiny.encode("cab abc")), "cab abc");
}

TEST(Gpt2Tokenizer, BadFilesAreRefused) {
  const std::string merges = "#version: 0.2\n";
  EXPECT_THROW(Gpt2Tokenizer("not json", merges, "bad"), Error);
  EXPECT_THROW(Gpt2Tokenizer("[1, 2]", merges, "bad"), Error);
  EXPECT_THROW(Gpt2Tokenizer("{\"a\": -1}", merges, "bad"), Error);
  try {
    Gpt2Tokenizer("{\"a\": 0}", merges, "dir");
    FAIL() << "a vocabulary without the byte tokens must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("single-byte token"), std::string::npos) << e.what();
  }
  REQUIRE_GPT2();
  std::ifstream vin(kGpt2Dir + "/vocab.json");
  const std::string vocab((std::istreambuf_iterator<char>(vin)), std::istreambuf_iterator<char>());
  try {
    Gpt2Tokenizer(vocab, "#version: 0.2\nĠ t\nonly_one_token\n", "dir");
    FAIL() << "a bad merges line must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Gpt2Tokenizer(vocab, "zzzq zzzw\n", "dir"), Error);
  EXPECT_THROW(Gpt2Tokenizer::load("/nonexistent/gpt2"), Error);
}

}  // namespace
}  // namespace lathe::data
