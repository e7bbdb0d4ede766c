// GPT-2 BPE: byte <-> code point mapping, the hand-written pre-tokenizer, rank-ordered merges
// over token ids (all occurrences of the best pair per pass, as the reference encoder does) and
// a bounded cache of encoded words.
#include "core/data/Gpt2Tokenizer.h"

#include <algorithm>
#include <climits>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/base/Error.h"
#include "core/data/Bytes.h"

namespace lathe::data {

namespace {

struct CodeRange {
  char32_t lo, hi;
};
#include "core/data/UnicodeTables.inc"

template <size_t N>
bool inRanges(const CodeRange (&ranges)[N], char32_t cp) {
  const CodeRange* it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                         [](char32_t v, const CodeRange& r) { return v < r.lo; });
  return it != std::begin(ranges) && cp <= (it - 1)->hi;
}

constexpr char32_t kInvalidByte = 0xFFFFFFFF;  // a byte that is not part of valid UTF-8

// Decodes one UTF-8 character at s[i] (strict: no overlongs, surrogates or values past
// U+10FFFF); an invalid byte decodes as kInvalidByte of length 1.
char32_t decodeUtf8(std::string_view s, size_t i, size_t& len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  len = 1;
  if (b0 < 0x80) return b0;
  size_t n = 0;
  char32_t cp = 0, min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return kInvalidByte;
  }
  if (i + n > s.size()) return kInvalidByte;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return kInvalidByte;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return kInvalidByte;
  len = n;
  return cp;
}

void appendUtf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100 onward in byte order (space -> U+0120 'Ġ').
struct ByteMap {
  char32_t to_cp[256];
  int16_t from_cp[512];  // code point -> byte, -1 where none (all mapped code points < 512)
  ByteMap() {
    std::fill(std::begin(from_cp), std::end(from_cp), static_cast<int16_t>(-1));
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cp[b] = printable ? static_cast<char32_t>(b) : next++;
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byteMap() {
  static const ByteMap m;
  return m;
}

enum class CharClass { letter, number, space, other };

CharClass classify(char32_t cp) {
  if (cp == kInvalidByte) return CharClass::other;
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::letter;
    if (cp >= '0' && cp <= '9') return CharClass::number;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::space;
    return CharClass::other;
  }
  if (isUnicodeLetter(cp)) return CharClass::letter;
  if (isUnicodeNumber(cp)) return CharClass::number;
  if (isUnicodeSpace(cp)) return CharClass::space;
  return CharClass::other;
}

}  // namespace

bool isUnicodeLetter(char32_t cp) {
  return inRanges(kLetterRanges, cp);
}
bool isUnicodeNumber(char32_t cp) {
  return inRanges(kNumberRanges, cp);
}
bool isUnicodeSpace(char32_t cp) {
  return inRanges(kWhiteSpaceRanges, cp);
}

std::vector<std::string_view> gpt2PreTokenize(std::string_view text) {
  struct Unit {
    char32_t cp;
    CharClass cls;
    size_t at;
  };
  std::vector<Unit> u;
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    const char32_t cp = decodeUtf8(text, i, len);
    u.push_back({cp, classify(cp), i});
    i += len;
  }
  const size_t n = u.size();
  const auto byteAt = [&](size_t k) { return k < n ? u[k].at : text.size(); };
  std::vector<std::string_view> pieces;
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    const auto is = [&](size_t k, char32_t c) { return k < n && u[k].cp == c; };
    if (u[i].cp == '\'' && i + 1 < n) {  // 's 't 're 've 'm 'll 'd
      const char32_t a = u[i + 1].cp;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        j = i + 2;
      } else if ((a == 'r' && is(i + 2, 'e')) || (a == 'v' && is(i + 2, 'e')) ||
                 (a == 'l' && is(i + 2, 'l'))) {
        j = i + 3;
      }
    }
    if (j == i) {
      // ` ?X+` for X = letters, numbers, others: an optional leading space joins the run.
      size_t start = i;
      if (u[i].cp == ' ' && i + 1 < n && u[i + 1].cls != CharClass::space) start = i + 1;
      const CharClass c = u[start].cls;
      if (c != CharClass::space) {
        j = start;
        while (j < n && u[j].cls == c) ++j;
      } else {
        // \s+(?!\S) then \s+: a whitespace run, leaving its last character to prefix the next
        // word when a non-space follows and the run is longer than one.
        size_t k = i;
        while (k < n && u[k].cls == CharClass::space) ++k;
        j = (k == n || k - i == 1) ? k : k - 1;
      }
    }
    pieces.push_back(text.substr(byteAt(i), byteAt(j) - byteAt(i)));
    i = j;
  }
  return pieces;
}

struct Gpt2Tokenizer::Cache {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int32_t>> words;
};

Gpt2Tokenizer::Gpt2Tokenizer(Gpt2Tokenizer&&) noexcept = default;
Gpt2Tokenizer& Gpt2Tokenizer::operator=(Gpt2Tokenizer&&) noexcept = default;
Gpt2Tokenizer::~Gpt2Tokenizer() = default;

Gpt2Tokenizer Gpt2Tokenizer::load(const std::string& dir) {
  const auto text = [](const std::string& path) {
    const Bytes b = readFile(path);
    return std::string(b.begin(), b.end());
  };
  return Gpt2Tokenizer(text(dir + "/vocab.json"), text(dir + "/merges.txt"), dir);
}

Gpt2Tokenizer::Gpt2Tokenizer(std::string_view vocab_json, std::string_view merges_txt,
                             const std::string& name)
    : cache_(std::make_unique<Cache>()) {
  const ByteMap& bm = byteMap();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(vocab_json);
  } catch (const nlohmann::json::exception& e) {
    fail(name, "/vocab.json: not valid JSON: ", e.what());
  }
  LATHE_CHECK(j.is_object(), name, "/vocab.json: expected an object of token -> id");
  constexpr int64_t kMaxId = 1 << 24;
  for (const auto& [token, idj] : j.items()) {
    LATHE_CHECK(idj.is_number_integer() && idj.get<int64_t>() >= 0 && idj.get<int64_t>() < kMaxId,
                name, "/vocab.json: token '", token, "' has id ", idj.dump(),
                ", expected an integer in [0, ", kMaxId, ")");
    const auto id = static_cast<int32_t>(idj.get<int64_t>());
    if (static_cast<size_t>(id) >= id_bytes_.size()) {
      id_bytes_.resize(static_cast<size_t>(id) + 1);
      id_valid_.resize(static_cast<size_t>(id) + 1, false);
    }
    LATHE_CHECK(!id_valid_[static_cast<size_t>(id)], name, "/vocab.json: id ", id,
                " is used twice (again by '", token, "')");
    std::string bytes;
    for (size_t i = 0; i < token.size();) {
      size_t len = 0;
      const char32_t cp = decodeUtf8(token, i, len);
      LATHE_CHECK(cp < 512 && bm.from_cp[cp] >= 0, name, "/vocab.json: token '", token,
                  "' holds a character outside GPT-2's byte alphabet");
      bytes += static_cast<char>(bm.from_cp[cp]);
      i += len;
    }
    id_bytes_[static_cast<size_t>(id)] = std::move(bytes);
    id_valid_[static_cast<size_t>(id)] = true;
    vocab_.emplace(token, id);
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    appendUtf8(s, bm.to_cp[b]);
    auto it = vocab_.find(s);
    LATHE_CHECK(it != vocab_.end(), name, "/vocab.json: lacks the single-byte token for byte ", b,
                " ('", s, "')");
    byte_id_[b] = it->second;
  }
  int32_t rank = 0;
  size_t line_no = 0;
  for (size_t pos = 0; pos < merges_txt.size();) {
    size_t end = merges_txt.find('\n', pos);
    if (end == std::string_view::npos) end = merges_txt.size();
    std::string_view line = merges_txt.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
    const size_t sp = line.find(' ');
    LATHE_CHECK(sp != std::string_view::npos && sp > 0 && sp + 1 < line.size() &&
                    line.find(' ', sp + 1) == std::string_view::npos,
                name, "/merges.txt: line ", line_no, ": expected two tokens separated by a space");
    const std::string left(line.substr(0, sp)), right(line.substr(sp + 1));
    const auto l = vocab_.find(left), r = vocab_.find(right), m = vocab_.find(left + right);
    LATHE_CHECK(l != vocab_.end() && r != vocab_.end() && m != vocab_.end(), name,
                "/merges.txt: line ", line_no, ": '", left, "', '", right,
                "' or their merge is not in the vocabulary");
    const uint64_t key =
        (static_cast<uint64_t>(l->second) << 32) | static_cast<uint32_t>(r->second);
    merges_.emplace(key, Merge{rank++, m->second});  // the first (lowest) rank wins
  }
}

std::optional<int32_t> Gpt2Tokenizer::tokenId(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void Gpt2Tokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    auto it = cache_->words.find(std::string(piece));
    if (it != cache_->words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> word;
  word.reserve(piece.size());
  for (char c : piece) word.push_back(byte_id_[static_cast<unsigned char>(c)]);
  std::vector<int32_t> next;
  while (word.size() > 1) {
    int32_t best_rank = INT32_MAX;
    Merge best{};
    int32_t first = 0, second = 0;
    for (size_t k = 0; k + 1 < word.size(); ++k) {
      const uint64_t key =
          (static_cast<uint64_t>(word[k]) << 32) | static_cast<uint32_t>(word[k + 1]);
      auto it = merges_.find(key);
      if (it != merges_.end() && it->second.rank < best_rank) {
        best_rank = it->second.rank;
        best = it->second;
        first = word[k];
        second = word[k + 1];
      }
    }
    if (best_rank == INT32_MAX) break;
    next.clear();
    for (size_t k = 0; k < word.size();) {
      if (k + 1 < word.size() && word[k] == first && word[k + 1] == second) {
        next.push_back(best.merged);
        k += 2;
      } else {
        next.push_back(word[k++]);
      }
    }
    word.swap(next);
  }
  out.insert(out.end(), word.begin(), word.end());
  std::lock_guard<std::mutex> lock(cache_->mutex);
  if (cache_->words.size() >= (size_t{1} << 16)) cache_->words.clear();
  cache_->words.emplace(std::string(piece), std::move(word));
}

std::vector<int32_t> Gpt2Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> ids;
  while (!text.empty()) {
    const size_t special = allow_special ? text.find(kEndOfTextToken) : std::string_view::npos;
    const std::string_view segment = text.substr(0, special);
    for (std::string_view piece : gpt2PreTokenize(segment)) bpe(piece, ids);
    if (special == std::string_view::npos) break;
    ids.push_back(kEndOfText);
    text.remove_prefix(special + kEndOfTextToken.size());
  }
  return ids;
}

std::string Gpt2Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (size_t k = 0; k < ids.size(); ++k) {
    const int32_t id = ids[k];
    LATHE_CHECK(id >= 0 && id < vocabSize() && id_valid_[static_cast<size_t>(id)],
                "Gpt2Tokenizer::decode: id ", id, " at position ", k, " is not in the vocabulary (",
                vocabSize(), " ids)");
    out += id_bytes_[static_cast<size_t>(id)];
  }
  return out;
}

std::string tokenizeToJson(const Gpt2Tokenizer& tok, std::string_view text) {
  return nlohmann::json(tok.encode(text)).dump();
}

std::string decodeFromJson(const Gpt2Tokenizer& tok, std::string_view json) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    fail("tokenize --decode: input is not valid JSON: ", e.what());
  }
  LATHE_CHECK(j.is_array(), "tokenize --decode: expected a JSON list of token ids, got ",
              j.type_name());
  std::vector<int32_t> ids;
  for (size_t k = 0; k < j.size(); ++k) {
    const auto& v = j[k];
    LATHE_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT32_MAX,
                "tokenize --decode: element ", k, " (", v.dump(), ") is not a token id");
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return tok.decode(ids);
}

}  // namespace lathe::data
