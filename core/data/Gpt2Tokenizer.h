// GPT-2 byte-level BPE: vocab.json (token -> id) and merges.txt (rank = line order). Text is
// split by GPT-2's pre-tokenizer pattern (implemented by hand over generated Unicode tables),
// each piece's bytes are mapped to printable code points and merged by rank. Invalid UTF-8 is
// kept byte for byte, so decode(encode(x)) == x for any byte string. Thread-safe (the word
// cache has its own lock).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lathe::data {

class Gpt2Tokenizer {
 public:
  static constexpr int32_t kEndOfText = 50256;
  static constexpr std::string_view kEndOfTextToken = "<|endoftext|>";

  // Loads <dir>/vocab.json and <dir>/merges.txt.
  static Gpt2Tokenizer load(const std::string& dir);
  // From the two files' contents; `name` is used in error messages.
  Gpt2Tokenizer(std::string_view vocab_json, std::string_view merges_txt, const std::string& name);
  Gpt2Tokenizer(Gpt2Tokenizer&&) noexcept;
  Gpt2Tokenizer& operator=(Gpt2Tokenizer&&) noexcept;
  ~Gpt2Tokenizer();

  // Token ids of `text`. With allow_special, "<|endoftext|>" becomes kEndOfText; otherwise it
  // is ordinary text (as in the reference encoder).
  std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const;
  // The bytes of `ids`; throws naming the first id that is not in the vocabulary.
  std::string decode(std::span<const int32_t> ids) const;
  int32_t vocabSize() const { return static_cast<int32_t>(id_bytes_.size()); }
  std::optional<int32_t> tokenId(const std::string& token) const;

 private:
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_bytes_;  // decoded bytes per id
  std::vector<bool> id_valid_;
  int32_t byte_id_[256] = {};
  struct Merge {
    int32_t rank, merged;
  };
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
  struct Cache;
  std::unique_ptr<Cache> cache_;
};

// GPT-2's pre-tokenizer: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// over UTF-8 (invalid bytes count as "other" characters). The pieces concatenate to `text`.
std::vector<std::string_view> gpt2PreTokenize(std::string_view text);

// Unicode classes from the generated tables (general categories L*, N*; White_Space).
bool isUnicodeLetter(char32_t cp);
bool isUnicodeNumber(char32_t cp);
bool isUnicodeSpace(char32_t cp);

// The ids of `text` as a JSON list ("[15496,995]"), and back: a JSON list of ids to text.
// These are `lathe-cli tokenize` and `lathe-cli tokenize --decode`.
std::string tokenizeToJson(const Gpt2Tokenizer& tok, std::string_view text);
std::string decodeFromJson(const Gpt2Tokenizer& tok, std::string_view json);

}  // namespace lathe::data
