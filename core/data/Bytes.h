// Bounded byte access for the file loaders: reading whole files, gunzip with a size cap, and a
// cursor that refuses to read past its buffer. Every failure is a lathe::Error that names the
// source and the byte offset and says what was expected there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace lathe::data {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

// Default cap on what one decompressed gzip/zip member may expand to (zip-bomb guard).
inline constexpr size_t kMaxInflatedBytes = size_t{4} << 30;

// The whole file; throws naming the path and the OS reason when it cannot be read.
Bytes readFile(const std::string& path);
// Writes `bytes` to `path` (replacing it); throws naming the path on failure.
void writeFile(const std::string& path, ByteSpan bytes);
// The file's bytes, gunzipped when they start with the gzip magic (1f 8b), else unchanged.
Bytes readMaybeGzip(const std::string& path, size_t max_bytes = kMaxInflatedBytes);
bool isGzip(ByteSpan bytes);
// Decompresses one or more concatenated gzip members; `name` is used in error messages.
Bytes gunzip(ByteSpan compressed, const std::string& name, size_t max_bytes = kMaxInflatedBytes);
// One gzip member holding `bytes` (zlib's default level).
Bytes gzipBytes(ByteSpan bytes);
// Raw deflate (no zlib or gzip wrapper) of `bytes`, as zip members store it.
Bytes deflateRaw(ByteSpan bytes);
// Inflates a raw deflate stream that must expand to exactly `expected_size` bytes.
Bytes inflateRaw(ByteSpan compressed, size_t expected_size, const std::string& name);

// a * b and a + b, throwing (naming `what`) instead of wrapping around.
uint64_t checkedMul(uint64_t a, uint64_t b, const std::string& what);
uint64_t checkedAdd(uint64_t a, uint64_t b, const std::string& what);

// Reads fixed-size fields from a span; every read checks the remaining length first.
class ByteCursor {
 public:
  ByteCursor(ByteSpan bytes, std::string name, size_t pos = 0);

  size_t pos() const { return pos_; }
  size_t size() const { return bytes_.size(); }
  size_t remaining() const { return bytes_.size() - pos_; }
  const std::string& name() const { return name_; }
  void seek(size_t pos, const char* what);

  // Throws unless n more bytes exist; `what` names the field ("IDX header", ...).
  void need(size_t n, const char* what) const;
  uint8_t u8(const char* what);
  uint16_t le16(const char* what);
  uint32_t le32(const char* what);
  uint64_t le64(const char* what);
  uint32_t be32(const char* what);
  ByteSpan take(size_t n, const char* what);
  // Throws a lathe::Error "<name>: at byte offset <pos>: <parts...>".
  template <typename... Parts>
  [[noreturn]] void failHere(const Parts&... parts) const;
  [[noreturn]] void failAt(size_t offset, const std::string& message) const;

 private:
  ByteSpan bytes_;
  std::string name_;
  size_t pos_;
};

}  // namespace lathe::data

#include "core/base/Error.h"

namespace lathe::data {
template <typename... Parts>
void ByteCursor::failHere(const Parts&... parts) const {
  failAt(pos_, ::lathe::detail::concat(parts...));
}
}  // namespace lathe::data
