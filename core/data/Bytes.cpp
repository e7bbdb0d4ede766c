// Whole-file reads, gzip / raw-deflate inflation with output caps, and the bounds-checked
// cursor the format parsers are built on.
#include "core/data/Bytes.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

namespace lathe::data {

Bytes readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path, "': ", std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  LATHE_CHECK(size >= 0, "cannot read '", path, "': not a regular file");
  in.seekg(0, std::ios::beg);
  Bytes bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    fail("cannot read '", path, "': read stopped before ", size, " bytes");
  return bytes;
}

void writeFile(const std::string& path, ByteSpan bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("cannot write '", path, "': ", std::strerror(errno));
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) fail("cannot write '", path, "': write failed");
}

namespace {
Bytes deflateWith(ByteSpan bytes, int window_bits) {
  LATHE_CHECK(bytes.size() <= UINT32_MAX, "deflate: ", bytes.size(),
              " bytes is over the 4 GiB one-call limit");
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK)
    fail("zlib deflateInit2 failed");
  Bytes out(deflateBound(&zs, static_cast<uLong>(bytes.size())) + 32);
  zs.next_in = const_cast<Bytef*>(bytes.data());
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(out.size() - zs.avail_out);
  deflateEnd(&zs);
  LATHE_CHECK(rc == Z_STREAM_END, "zlib deflate did not finish (", rc, ")");
  return out;
}
}  // namespace

Bytes gzipBytes(ByteSpan bytes) {
  return deflateWith(bytes, 16 + MAX_WBITS);
}

Bytes deflateRaw(ByteSpan bytes) {
  return deflateWith(bytes, -MAX_WBITS);
}

bool isGzip(ByteSpan bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

Bytes readMaybeGzip(const std::string& path, size_t max_bytes) {
  Bytes raw = readFile(path);
  if (!isGzip(raw)) return raw;
  return gunzip(raw, path, max_bytes);
}

namespace {

// Runs inflate over `in` into a growing vector; `window_bits` selects gzip (16+) or raw (-15).
// Returns the bytes and sets `consumed` to the input used by the (first) stream.
Bytes inflateStream(ByteSpan in, int window_bits, size_t max_bytes, size_t size_hint,
                    const std::string& name, size_t& consumed) {
  z_stream zs{};
  if (inflateInit2(&zs, window_bits) != Z_OK) fail(name, ": zlib inflateInit2 failed");
  Bytes out;
  out.reserve(std::min(size_hint, max_bytes));
  const size_t kChunk = size_t{1} << 16;
  size_t fed = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (zs.avail_in == 0 && fed < in.size()) {
      const size_t n = std::min<size_t>(in.size() - fed, std::numeric_limits<uInt>::max());
      zs.next_in = const_cast<Bytef*>(in.data() + fed);
      zs.avail_in = static_cast<uInt>(n);
      fed += n;
    }
    if (out.size() >= max_bytes) {
      inflateEnd(&zs);
      fail(name, ": decompressed data exceeds the limit of ", max_bytes, " bytes");
    }
    const size_t room = std::min(kChunk, max_bytes - out.size());
    const size_t old = out.size();
    out.resize(old + room);
    zs.next_out = out.data() + old;
    zs.avail_out = static_cast<uInt>(room);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(old + room - zs.avail_out);
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0 && fed == in.size()) {
      const size_t at = fed;
      inflateEnd(&zs);
      fail(name, ": compressed stream truncated at byte offset ", at,
           ": expected more deflate data");
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      const size_t at = fed - zs.avail_in;
      const std::string msg = zs.msg ? zs.msg : "inflate error";
      inflateEnd(&zs);
      fail(name, ": corrupt compressed data near byte offset ", at, ": ", msg);
    }
  }
  consumed = fed - zs.avail_in;
  inflateEnd(&zs);
  return out;
}

}  // namespace

Bytes gunzip(ByteSpan compressed, const std::string& name, size_t max_bytes) {
  Bytes out;
  size_t pos = 0;
  // Concatenated members are one file (gzip -c a b > ab.gz); anything else after a member is an
  // error rather than silently ignored trailing bytes.
  while (pos < compressed.size()) {
    if (!isGzip(compressed.subspan(pos)))
      fail(name, ": at byte offset ", pos, ": expected a gzip member (magic 1f 8b) or the end");
    size_t used = 0;
    Bytes part = inflateStream(compressed.subspan(pos), 16 + MAX_WBITS, max_bytes - out.size(),
                               compressed.size() * 4, name, used);
    if (out.empty()) {
      out = std::move(part);
    } else {
      out.insert(out.end(), part.begin(), part.end());
    }
    pos += used;
  }
  return out;
}

Bytes inflateRaw(ByteSpan compressed, size_t expected_size, const std::string& name) {
  size_t used = 0;
  // Deflate expands at most ~1032:1, so the hint never reserves more than the input can fill.
  const size_t hint = std::min<size_t>(expected_size, compressed.size() * 1032 + 64);
  Bytes out = inflateStream(compressed, -MAX_WBITS, expected_size + 1, hint, name, used);
  if (out.size() != expected_size)
    fail(name, ": deflate data expands to ", out.size(), " bytes, expected ", expected_size);
  return out;
}

uint64_t checkedMul(uint64_t a, uint64_t b, const std::string& what) {
  uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) fail(what, ": size ", a, " x ", b, " overflows 64 bits");
  return r;
}

uint64_t checkedAdd(uint64_t a, uint64_t b, const std::string& what) {
  uint64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) fail(what, ": size ", a, " + ", b, " overflows 64 bits");
  return r;
}

ByteCursor::ByteCursor(ByteSpan bytes, std::string name, size_t pos)
    : bytes_(bytes), name_(std::move(name)), pos_(pos) {
  if (pos_ > bytes_.size()) failAt(pos_, "offset lies past the end of the data");
}

void ByteCursor::failAt(size_t offset, const std::string& message) const {
  fail(name_, ": at byte offset ", offset, ": ", message);
}

void ByteCursor::seek(size_t pos, const char* what) {
  if (pos > bytes_.size())
    failAt(pos, detail::concat(what, " lies past the end of the data (", bytes_.size(), " bytes)"));
  pos_ = pos;
}

void ByteCursor::need(size_t n, const char* what) const {
  if (n > remaining())
    failAt(pos_, detail::concat("truncated: expected ", what, " (", n, " bytes) but only ",
                                remaining(), " remain"));
}

uint8_t ByteCursor::u8(const char* what) {
  need(1, what);
  return bytes_[pos_++];
}

uint16_t ByteCursor::le16(const char* what) {
  need(2, what);
  const uint16_t v = static_cast<uint16_t>(bytes_[pos_] | (bytes_[pos_ + 1] << 8));
  pos_ += 2;
  return v;
}

uint32_t ByteCursor::le32(const char* what) {
  need(4, what);
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | bytes_[pos_ + static_cast<size_t>(i)];
  pos_ += 4;
  return v;
}

uint64_t ByteCursor::le64(const char* what) {
  need(8, what);
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | bytes_[pos_ + static_cast<size_t>(i)];
  pos_ += 8;
  return v;
}

uint32_t ByteCursor::be32(const char* what) {
  need(4, what);
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | bytes_[pos_ + static_cast<size_t>(i)];
  pos_ += 4;
  return v;
}

ByteSpan ByteCursor::take(size_t n, const char* what) {
  need(n, what);
  ByteSpan s = bytes_.subspan(pos_, n);
  pos_ += n;
  return s;
}

}  // namespace lathe::data
