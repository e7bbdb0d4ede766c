// safetensors: a u64 little-endian header length N, N bytes of UTF-8 JSON naming each tensor's
// dtype, shape and [begin, end) byte range relative to the data start, then the data.
// The reader is strict (shared/REFERENCE.md): 8 <= ... N <= 100 MB and N <= file size - 8,
// valid UTF-8 JSON object, no duplicate keys, exactly dtype/shape/data_offsets per tensor,
// string-to-string "__metadata__", known dtype names, overflow-checked sizes equal to the byte
// ranges, and ranges that tile the data from 0 to the file's last byte with no gap, overlap or
// trailing byte. Errors name the file, the tensor and the byte offset in the file.
// The writer starts the header with '{', puts "__metadata__" (with "format": "pt") first, pads
// the header with spaces to a multiple of 8, stores each tensor once (an alias of an earlier
// entry, such as a tied weight, is dropped) and replaces the file atomically.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/nn/Module.h"
#include "core/tensor/Tensor.h"

namespace lathe {

inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

// "F32", "BF16", ... for Lathe dtypes.
const char* safetensorsDTypeName(DType dtype);

struct SafetensorsEntry {
  std::string name;
  std::string dtype_name;      // as in the file
  std::optional<DType> dtype;  // unset for valid names Lathe has no tensor type for (I16, U16,
                               // U32, U64): such entries validate but cannot be read
  Shape shape;
  uint64_t begin = 0, end = 0;  // relative to the data start
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // sorted by begin (file order)
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N
};

// Validates a complete header: `json` is the N header bytes, `file_size` the total file size;
// `file` names the file in errors. Exposed for tests and fuzzing.
SafetensorsHeader parseSafetensorsHeader(const std::string& json, uint64_t file_size,
                                         const std::string& file);

class SafetensorsReader {
 public:
  // Reads and validates the header; tensor data is read on demand.
  explicit SafetensorsReader(std::string path);
  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<SafetensorsEntry>& entries() const { return header_.entries; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  bool contains(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const;  // throws naming the file
  // The tensor's bytes as a new tensor on `device` (allocated with the current memory tag).
  Tensor read(const std::string& name, Device device = Device::cpu()) const;
  NamedTensors readAll(Device device = Device::cpu()) const;  // in file order

 private:
  std::string path_;
  SafetensorsHeader header_;
};

// Writes tensors (any device, dtype, layout) and metadata to `path` atomically.
void writeSafetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace lathe
