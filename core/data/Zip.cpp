// Zip parsing: end-of-central-directory (and its zip64 form), central directory entries with
// their zip64 extra fields, local headers cross-checked against the central directory, then
// stored copy or raw inflate with a CRC-32 check.
#include "core/data/Zip.h"

#include <zlib.h>

#include <set>

namespace lathe::data {

namespace {

constexpr uint32_t kEocdSig = 0x06054b50, kEocd64Sig = 0x06064b50, kLocatorSig = 0x07064b50;
constexpr uint32_t kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;
// Deflate cannot expand by more than ~1032:1; larger claims are corrupt headers.
constexpr uint64_t kMaxDeflateRatio = 1032;

struct Directory {
  uint64_t entries = 0, offset = 0, size = 0;
};

Directory findDirectory(ByteSpan bytes, const std::string& name) {
  ByteCursor c(bytes, name);
  if (bytes.size() < 22) c.failAt(0, "too short for a zip archive (no end-of-central-directory)");
  // The EOCD record is the last 22 bytes plus a comment of at most 65535 bytes; take the one
  // whose comment ends exactly at the end of the file.
  size_t eocd = SIZE_MAX;
  const size_t lowest = bytes.size() >= 22 + 65535 ? bytes.size() - 22 - 65535 : 0;
  for (size_t p = bytes.size() - 22 + 1; p-- > lowest;) {
    ByteCursor r(bytes, name, p);
    if (r.le32("signature") != kEocdSig) continue;
    r.seek(p + 20, "EOCD comment length");
    if (p + 22 + r.le16("EOCD comment length") == bytes.size()) {
      eocd = p;
      break;
    }
  }
  if (eocd == SIZE_MAX)
    c.failAt(bytes.size() - 22, "no end-of-central-directory record: not a zip archive (.npz)");
  c.seek(eocd + 4, "EOCD");
  const uint16_t disk = c.le16("EOCD disk number"), cd_disk = c.le16("EOCD directory disk");
  const uint16_t disk_entries = c.le16("EOCD entries on disk");
  Directory d;
  d.entries = c.le16("EOCD entry count");
  d.size = c.le32("EOCD directory size");
  d.offset = c.le32("EOCD directory offset");
  if (disk != 0 || cd_disk != 0 || disk_entries != d.entries)
    c.failAt(eocd, "multi-disk zip archives are not supported");
  if (d.entries == 0xFFFF || d.size == 0xFFFFFFFF || d.offset == 0xFFFFFFFF) {
    if (eocd < 20) c.failAt(eocd, "zip64 marker without a zip64 locator");
    c.seek(eocd - 20, "zip64 locator");
    if (c.le32("zip64 locator signature") != kLocatorSig)
      c.failAt(eocd - 20, "expected the zip64 end-of-central-directory locator (PK 06 07)");
    c.le32("zip64 locator disk");
    const uint64_t at = c.le64("zip64 EOCD offset");
    if (at > bytes.size()) c.failAt(eocd - 12, "zip64 EOCD offset lies past the end");
    c.seek(static_cast<size_t>(at), "zip64 EOCD");
    if (c.le32("zip64 EOCD signature") != kEocd64Sig)
      c.failAt(static_cast<size_t>(at), "expected the zip64 end-of-central-directory (PK 06 06)");
    c.le64("zip64 EOCD size");
    c.le16("zip64 version made by");
    c.le16("zip64 version needed");
    if (c.le32("zip64 disk") != 0 || c.le32("zip64 directory disk") != 0)
      c.failAt(static_cast<size_t>(at), "multi-disk zip archives are not supported");
    const uint64_t on_disk = c.le64("zip64 entries on disk");
    d.entries = c.le64("zip64 entry count");
    d.size = c.le64("zip64 directory size");
    d.offset = c.le64("zip64 directory offset");
    if (on_disk != d.entries) c.failAt(static_cast<size_t>(at), "multi-disk zip64 archive");
  }
  if (d.offset > bytes.size() || d.size > bytes.size() - d.offset)
    c.failAt(eocd, detail::concat("central directory [", d.offset, ", +", d.size,
                                  ") lies outside the ", bytes.size(), "-byte archive"));
  // Each entry takes at least 46 bytes: a larger count is a corrupt header.
  if (d.entries > d.size / 46)
    c.failAt(eocd, detail::concat(d.entries, " entries cannot fit a ", d.size,
                                  "-byte central directory"));
  return d;
}

struct Entry {
  std::string name;
  uint16_t flags = 0, method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, local = 0;
  size_t at = 0;  // where the central record starts (for messages)
};

// Replaces 0xFFFFFFFF sizes/offset by the values in the zip64 extra field (id 0x0001).
void applyZip64(Entry& e, ByteSpan extra, const ByteCursor& outer) {
  ByteCursor x(extra, outer.name());
  const bool need_u = e.usize == 0xFFFFFFFF, need_c = e.csize == 0xFFFFFFFF;
  const bool need_o = e.local == 0xFFFFFFFF;
  while (x.remaining() >= 4) {
    const uint16_t id = x.le16("extra field id"), len = x.le16("extra field length");
    if (len > x.remaining())
      outer.failAt(e.at, detail::concat("extra field of ", len, " bytes overruns its record"));
    ByteSpan body = x.take(len, "extra field");
    if (id != 0x0001) continue;
    ByteCursor z(body, outer.name());
    if (need_u) e.usize = z.le64("zip64 uncompressed size");
    if (need_c) e.csize = z.le64("zip64 compressed size");
    if (need_o) e.local = z.le64("zip64 local header offset");
    return;
  }
  if (need_u || need_c || need_o)
    outer.failAt(e.at, "entry '" + e.name + "' has 0xFFFFFFFF sizes but no zip64 extra field");
}

Bytes extract(ByteSpan bytes, const Entry& e, const std::string& name, size_t max_bytes) {
  ByteCursor c(bytes, name);
  if (e.local > bytes.size())
    c.failAt(e.at,
             detail::concat("'", e.name, "': local header offset ", e.local, " lies past the end"));
  c.seek(static_cast<size_t>(e.local), "local header");
  if (c.le32("local header signature") != kLocalSig)
    c.failAt(static_cast<size_t>(e.local),
             "expected a local file header (PK 03 04) for '" + e.name + "'");
  c.le16("local version");
  c.le16("local flags");
  const uint16_t method = c.le16("local compression method");
  c.le16("local time");
  c.le16("local date");
  c.le32("local crc");
  c.le32("local compressed size");
  c.le32("local size");
  const uint16_t name_len = c.le16("local name length"), extra_len = c.le16("local extra length");
  const ByteSpan lname = c.take(name_len, "local file name");
  c.take(extra_len, "local extra field");
  if (method != e.method || std::string(lname.begin(), lname.end()) != e.name)
    c.failAt(static_cast<size_t>(e.local),
             "local header of '" + e.name + "' disagrees with the central directory");
  if (e.usize > max_bytes)
    c.failAt(e.at, detail::concat("'", e.name, "' expands to ", e.usize,
                                  " bytes, over the limit of ", max_bytes));
  const size_t data_at = c.pos();
  c.need(e.csize, ("the compressed data of '" + e.name + "'").c_str());
  const ByteSpan packed = bytes.subspan(data_at, static_cast<size_t>(e.csize));
  Bytes out;
  if (e.method == 0) {
    if (e.csize != e.usize)
      c.failAt(e.at, "stored member '" + e.name + "' has different compressed and plain sizes");
    out.assign(packed.begin(), packed.end());
  } else {
    if (e.usize > e.csize * kMaxDeflateRatio + 64)
      c.failAt(e.at, detail::concat("'", e.name, "' claims ", e.usize, " bytes from ", e.csize,
                                    " compressed: more than deflate can expand"));
    out = inflateRaw(packed, static_cast<size_t>(e.usize),
                     detail::concat(name, ": member '", e.name, "' at byte offset ", data_at));
  }
  const uLong crc = crc32_z(crc32(0L, Z_NULL, 0), out.data(), out.size());
  if (crc != e.crc)
    c.failAt(data_at, detail::concat("CRC-32 mismatch for '", e.name, "': expected ", std::hex,
                                     e.crc, ", got ", crc));
  return out;
}

void put16(Bytes& b, uint32_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(Bytes& b, uint64_t v) {
  LATHE_CHECK(v <= 0xFFFFFFFFu, "encodeZip: ", v, " does not fit a zip (no zip64 writer)");
  put16(b, static_cast<uint32_t>(v & 0xFFFF));
  put16(b, static_cast<uint32_t>(v >> 16));
}

}  // namespace

Bytes encodeZip(const std::vector<ZipMember>& members, bool deflate) {
  Bytes out, dir;
  for (const ZipMember& m : members) {
    LATHE_CHECK(!m.name.empty() && m.name.size() < 0xFFFF, "encodeZip: bad member name");
    const Bytes packed = deflate ? deflateRaw(m.data) : Bytes();
    const ByteSpan body = deflate ? ByteSpan(packed) : ByteSpan(m.data);
    const uLong crc = crc32_z(crc32(0L, Z_NULL, 0), m.data.data(), m.data.size());
    const size_t local = out.size();
    const uint16_t method = deflate ? 8 : 0;
    // local header: signature, version 2.0, flags, method, time, date, crc, sizes, name
    put32(out, kLocalSig);
    put16(out, 20);
    put16(out, 0);
    put16(out, method);
    put16(out, 0);
    put16(out, 0x21);  // 1980-01-01
    put32(out, crc);
    put32(out, body.size());
    put32(out, m.data.size());
    put16(out, static_cast<uint32_t>(m.name.size()));
    put16(out, 0);
    out.insert(out.end(), m.name.begin(), m.name.end());
    out.insert(out.end(), body.begin(), body.end());
    put32(dir, kCentralSig);
    put16(dir, 20);
    put16(dir, 20);
    put16(dir, 0);
    put16(dir, method);
    put16(dir, 0);
    put16(dir, 0x21);
    put32(dir, crc);
    put32(dir, body.size());
    put32(dir, m.data.size());
    put16(dir, static_cast<uint32_t>(m.name.size()));
    put16(dir, 0);
    put16(dir, 0);
    put16(dir, 0);
    put16(dir, 0);
    put32(dir, 0);
    put32(dir, local);
    dir.insert(dir.end(), m.name.begin(), m.name.end());
  }
  const size_t dir_at = out.size();
  LATHE_CHECK(members.size() < 0xFFFF, "encodeZip: too many members for a zip without zip64");
  out.insert(out.end(), dir.begin(), dir.end());
  put32(out, kEocdSig);
  put16(out, 0);
  put16(out, 0);
  put16(out, static_cast<uint32_t>(members.size()));
  put16(out, static_cast<uint32_t>(members.size()));
  put32(out, dir.size());
  put32(out, dir_at);
  put16(out, 0);
  return out;
}

std::vector<ZipMember> readZip(ByteSpan bytes, const std::string& name, size_t max_member_bytes) {
  const Directory d = findDirectory(bytes, name);
  ByteCursor c(bytes, name, static_cast<size_t>(d.offset));
  const size_t end = static_cast<size_t>(d.offset + d.size);
  std::vector<Entry> entries;
  std::set<std::string> seen;
  for (uint64_t k = 0; k < d.entries; ++k) {
    Entry e;
    e.at = c.pos();
    if (c.le32("central directory signature") != kCentralSig)
      c.failAt(e.at, detail::concat("expected central directory entry ", k, " (PK 01 02)"));
    c.le16("version made by");
    c.le16("version needed");
    e.flags = c.le16("flags");
    e.method = c.le16("compression method");
    c.le16("time");
    c.le16("date");
    e.crc = c.le32("crc-32");
    e.csize = c.le32("compressed size");
    e.usize = c.le32("uncompressed size");
    const uint16_t name_len = c.le16("name length"), extra_len = c.le16("extra length");
    const uint16_t comment_len = c.le16("comment length");
    c.le16("disk number start");
    c.le16("internal attributes");
    c.le32("external attributes");
    e.local = c.le32("local header offset");
    const ByteSpan nm = c.take(name_len, "file name");
    e.name.assign(nm.begin(), nm.end());
    applyZip64(e, c.take(extra_len, "extra field"), c);
    c.take(comment_len, "file comment");
    if (c.pos() > end) c.failAt(e.at, "central directory entry overruns the directory");
    if (e.flags & 0x1) c.failAt(e.at, "'" + e.name + "' is encrypted: not supported");
    if (e.method != 0 && e.method != 8)
      c.failAt(e.at, detail::concat("'", e.name, "' uses compression method ", e.method,
                                    " (only 0 stored and 8 deflate are supported)"));
    if (!seen.insert(e.name).second) c.failAt(e.at, "duplicate member name '" + e.name + "'");
    entries.push_back(std::move(e));
  }
  std::vector<ZipMember> members;
  for (const Entry& e : entries)
    members.push_back({e.name, extract(bytes, e, name, max_member_bytes)});
  return members;
}

}  // namespace lathe::data
