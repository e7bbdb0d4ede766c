// A small strict zip reader for .npz archives: stored and deflate members, zip64 sizes and
// offsets, CRC-32 checked. No encryption, no multi-disk archives, no duplicate names; every
// offset and length is checked against the buffer before it is used.
#pragma once

#include <string>
#include <vector>

#include "core/data/Bytes.h"

namespace lathe::data {

struct ZipMember {
  std::string name;
  Bytes data;  // uncompressed
};

// The members in central-directory order; `name` (the archive's) is used in error messages.
// `max_member_bytes` caps what one member may expand to.
std::vector<ZipMember> readZip(ByteSpan bytes, const std::string& name,
                               size_t max_member_bytes = kMaxInflatedBytes);

// A zip archive of `members` (stored, or deflated when `deflate`), readable by readZip, Python's
// zipfile and numpy. No zip64: members and the archive must stay under 4 GiB.
Bytes encodeZip(const std::vector<ZipMember>& members, bool deflate);

}  // namespace lathe::data
