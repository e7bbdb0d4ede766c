// Strict safetensors reader and atomic writer. The header is validated completely before any
// tensor byte is read; sizes use checked 64-bit arithmetic; the coverage rule (sorted ranges
// tile [0, data size) exactly) catches overlaps, holes, trailing bytes and truncation.
#include "core/io/Safetensors.h"

#include <algorithm>
#include <bit>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/autograd/Autograd.h"
#include "core/io/AtomicFile.h"

namespace lathe {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; Lathe assumes a little-endian host");

namespace {

struct DTypeRow {
  const char* name;
  uint64_t size;
  std::optional<DType> dtype;
};

const DTypeRow kDTypes[] = {
    {"BOOL", 1, DType::b8},        {"U8", 1, DType::u8},          {"I8", 1, DType::i8},
    {"F8_E5M2", 1, DType::f8e5m2}, {"F8_E4M3", 1, DType::f8e4m3}, {"I16", 2, std::nullopt},
    {"U16", 2, std::nullopt},      {"F16", 2, DType::f16},        {"BF16", 2, DType::bf16},
    {"I32", 4, DType::i32},        {"U32", 4, std::nullopt},      {"F32", 4, DType::f32},
    {"F64", 8, DType::f64},        {"I64", 8, DType::i64},        {"U64", 8, std::nullopt},
};

const DTypeRow* findDType(const std::string& name) {
  for (const DTypeRow& r : kDTypes)
    if (name == r.name) return &r;
  return nullptr;
}

std::string knownDTypes() {
  std::string s;
  for (const DTypeRow& r : kDTypes) {
    if (!s.empty()) s += ' ';
    s += r.name;
  }
  return s;
}

// Index of the first byte that is not part of well-formed UTF-8 (no overlong forms, no
// surrogates, nothing above U+10FFFF), or npos.
size_t invalidUtf8At(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return std::string::npos;
}

// Parses JSON and reports the first key repeated within one object (with its object's key).
nlohmann::json parseNoDuplicates(const std::string& text, std::string& duplicate,
                                 std::string& duplicate_in) {
  std::vector<std::set<std::string>> keys;
  std::vector<std::string> last_key{""};
  auto cb = [&](int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      keys.emplace_back();
      last_key.push_back("");
    } else if (event == E::object_end) {
      keys.pop_back();
      last_key.pop_back();
    } else if (event == E::key && !keys.empty()) {
      const std::string k = parsed.get<std::string>();
      if (!keys.back().insert(k).second && duplicate.empty()) {
        duplicate = k;
        duplicate_in = last_key[last_key.size() - 2];
      }
      last_key.back() = k;
    }
    return true;
  };
  return nlohmann::json::parse(text, cb);
}

bool checkedMul(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

uint64_t readU64(const nlohmann::json& v, bool& ok) {
  ok = v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  return ok ? v.get<uint64_t>() : 0;
}

}  // namespace

const char* safetensorsDTypeName(DType dtype) {
  for (const DTypeRow& r : kDTypes)
    if (r.dtype && *r.dtype == dtype) return r.name;
  fail("safetensors has no dtype for ", dtypeName(dtype));
}

SafetensorsHeader parseSafetensorsHeader(const std::string& json, uint64_t file_size,
                                         const std::string& file) {
  const uint64_t N = json.size();
  LATHE_CHECK(file_size >= 8 && N <= file_size - 8, file, ": header length ", N,
              " exceeds the file (", file_size, " bytes)");
  SafetensorsHeader h;
  h.data_start = 8 + N;
  const uint64_t data_size = file_size - h.data_start;

  const size_t bad = invalidUtf8At(json);
  LATHE_CHECK(bad == std::string::npos, file, ": the header is not valid UTF-8 (byte at file ",
              "offset ", 8 + bad, ")");
  std::string dup, dup_in;
  nlohmann::json j;
  try {
    j = parseNoDuplicates(json, dup, dup_in);
  } catch (const nlohmann::json::parse_error& e) {
    fail(file, ": the header is not valid JSON (at file offset ", 8 + (e.byte > 0 ? e.byte - 1 : 0),
         "): ", e.what());
  }
  LATHE_CHECK(dup.empty(), file, ": duplicate key \"", dup, "\" in the header",
              dup_in.empty() ? std::string() : " (inside \"" + dup_in + "\")", " (file offsets 8..",
              h.data_start, ")");
  LATHE_CHECK(j.is_object(), file, ": the header must be a JSON object, got ", j.type_name());

  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      LATHE_CHECK(v.is_object(), file, ": \"__metadata__\" must be an object of strings");
      for (const auto& [k, mv] : v.items()) {
        LATHE_CHECK(mv.is_string(), file, ": \"__metadata__\" value of \"", k,
                    "\" must be a string, got ", mv.dump());
        h.metadata[k] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = file + ": tensor '" + name + "'";
    LATHE_CHECK(v.is_object(), where, ": expected an object with dtype, shape and data_offsets");
    for (const auto& [k, unused] : v.items())
      LATHE_CHECK(k == "dtype" || k == "shape" || k == "data_offsets", where, ": unknown field '",
                  k, "' (only dtype, shape and data_offsets are allowed)");
    for (const char* k : {"dtype", "shape", "data_offsets"})
      LATHE_CHECK(v.contains(k), where, ": missing '", k, "'");
    SafetensorsEntry e;
    e.name = name;
    LATHE_CHECK(v["dtype"].is_string(), where, ": dtype must be a string");
    e.dtype_name = v["dtype"].get<std::string>();
    const DTypeRow* row = findDType(e.dtype_name);
    LATHE_CHECK(row != nullptr, where, ": unknown dtype \"", e.dtype_name, "\" (expected one of ",
                knownDTypes(), ")");
    e.dtype = row->dtype;
    LATHE_CHECK(v["shape"].is_array(), where, ": shape must be a list of integers");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      bool ok = false;
      const uint64_t x = readU64(d, ok);
      LATHE_CHECK(ok, where, ": shape ", v["shape"].dump(), " must hold non-negative integers");
      LATHE_CHECK(x <= static_cast<uint64_t>(INT64_MAX) && checkedMul(numel, x, numel), where,
                  ": shape ", v["shape"].dump(), " overflows 64-bit element counts");
      e.shape.push_back(static_cast<int64_t>(x));
    }
    uint64_t nbytes = 0;
    LATHE_CHECK(checkedMul(numel, row->size, nbytes), where, ": shape ", v["shape"].dump(), " of ",
                e.dtype_name, " overflows 64-bit byte counts");
    const nlohmann::json& off = v["data_offsets"];
    bool ok0 = false, ok1 = false;
    LATHE_CHECK(off.is_array() && off.size() == 2, where,
                ": data_offsets must be [begin, end], got ", off.dump());
    e.begin = readU64(off[0], ok0);
    e.end = readU64(off[1], ok1);
    LATHE_CHECK(ok0 && ok1 && e.begin <= e.end, where, ": data_offsets ", off.dump(),
                " must be non-negative integers with begin <= end");
    LATHE_CHECK(e.end - e.begin == nbytes, where, ": size mismatch: dtype ", e.dtype_name,
                " shape ", shapeStr(e.shape), " needs ", nbytes, " bytes but data_offsets ",
                off.dump(), " hold ", e.end - e.begin, " (file offset ", h.data_start + e.begin,
                ")");
    h.entries.push_back(std::move(e));
  }

  std::sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const SafetensorsEntry& e : h.entries) {
    LATHE_CHECK(e.begin <= expected, file, ": gap: data bytes at file offsets ",
                h.data_start + expected, "..", h.data_start + e.begin,
                " belong to no tensor (before tensor '", e.name, "')");
    LATHE_CHECK(e.begin == expected, file, ": tensor '", e.name, "' at file offset ",
                h.data_start + e.begin, " overlaps tensor '", prev ? prev->name : "",
                "', which ends at file offset ", h.data_start + expected);
    LATHE_CHECK(e.end <= data_size, file, ": tensor '", e.name, "' (file offsets ",
                h.data_start + e.begin, "..", h.data_start + e.end, ") extends past the end of ",
                "the file (", file_size, " bytes): the file is truncated");
    expected = e.end;
    prev = &e;
  }
  LATHE_CHECK(expected == data_size, file, ": ", data_size - expected,
              " trailing bytes after the last tensor, from file offset ", h.data_start + expected,
              " to the end of the file (", file_size, " bytes)");
  return h;
}

SafetensorsReader::SafetensorsReader(std::string path) : path_(std::move(path)) {
  std::ifstream in(path_, std::ios::binary | std::ios::ate);
  LATHE_CHECK(in.is_open(), path_, ": cannot open the file");
  const auto end = in.tellg();
  LATHE_CHECK(end >= 0, path_, ": cannot determine the file size");
  const auto size = static_cast<uint64_t>(end);
  LATHE_CHECK(size >= 8, path_, ": ", size, " bytes is too short for a safetensors file (it ",
              "starts with an 8-byte header length)");
  in.seekg(0);
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  LATHE_CHECK(in.gcount() == 8, path_, ": cannot read the header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  LATHE_CHECK(n <= kSafetensorsMaxHeader, path_, ": header length ", n,
              " (at file offset 0) exceeds the limit of ", kSafetensorsMaxHeader, " bytes");
  LATHE_CHECK(n <= size - 8, path_, ": header length ", n, " (at file offset 0) exceeds the ",
              size - 8, " bytes after it: the file is truncated or not safetensors");
  std::string json(static_cast<size_t>(n), '\0');
  in.read(json.data(), static_cast<std::streamsize>(n));
  LATHE_CHECK(static_cast<uint64_t>(in.gcount()) == n, path_, ": cannot read the ", n,
              "-byte header");
  header_ = parseSafetensorsHeader(json, size, path_);
}

bool SafetensorsReader::contains(const std::string& name) const {
  for (const auto& e : header_.entries)
    if (e.name == name) return true;
  return false;
}

const SafetensorsEntry& SafetensorsReader::entry(const std::string& name) const {
  for (const auto& e : header_.entries)
    if (e.name == name) return e;
  fail(path_, ": no tensor '", name, "'");
}

Tensor SafetensorsReader::read(const std::string& name, Device device) const {
  const SafetensorsEntry& e = entry(name);
  LATHE_CHECK(e.dtype.has_value(), path_, ": tensor '", name, "' has dtype ", e.dtype_name,
              ", which Lathe has no tensor type for");
  Tensor t = Tensor::empty(e.shape, *e.dtype, Device::cpu());
  const uint64_t n = e.end - e.begin;
  if (n > 0) {
    std::ifstream in(path_, std::ios::binary);
    LATHE_CHECK(in.is_open(), path_, ": cannot open the file");
    in.seekg(static_cast<std::streamoff>(header_.data_start + e.begin));
    in.read(static_cast<char*>(t.rawData()), static_cast<std::streamsize>(n));
    LATHE_CHECK(static_cast<uint64_t>(in.gcount()) == n, path_, ": tensor '", name,
                "': short read at file offset ", header_.data_start + e.begin,
                " (the file changed since its header was read?)");
    if (*e.dtype == DType::b8) {
      const auto* bytes = static_cast<const unsigned char*>(t.rawData());
      for (uint64_t i = 0; i < n; ++i)
        LATHE_CHECK(bytes[i] <= 1, path_, ": tensor '", name, "': BOOL byte ",
                    static_cast<int>(bytes[i]), " at file offset ",
                    header_.data_start + e.begin + i, " is neither 0 nor 1");
    }
  }
  return device.isCpu() ? t : t.to(device);
}

NamedTensors SafetensorsReader::readAll(Device device) const {
  NamedTensors out;
  for (const auto& e : header_.entries) out.emplace_back(e.name, read(e.name, device));
  return out;
}

void writeSafetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  NoGradGuard no_grad;
  std::set<std::string> names;
  std::vector<const std::pair<std::string, Tensor>*> stored;
  for (const auto& item : tensors) {
    const std::string& name = item.first;
    const Tensor& t = item.second;
    LATHE_CHECK(!name.empty() && name != "__metadata__" && invalidUtf8At(name) == std::string::npos,
                path, ": invalid tensor name '", name, "'");
    LATHE_CHECK(names.insert(name).second, path, ": tensor name '", name, "' given twice");
    LATHE_CHECK(t.defined(), path, ": tensor '", name, "' is undefined");
    safetensorsDTypeName(t.dtype());
    const bool alias = std::any_of(stored.begin(), stored.end(), [&](const auto* s) {
      const Tensor& o = s->second;
      return o.implPtr() == t.implPtr() ||
             (o.sameStorage(t) && o.offset() == t.offset() && o.shape() == t.shape() &&
              o.strides() == t.strides() && o.dtype() == t.dtype());
    });
    if (!alias) stored.push_back(&item);
  }
  nlohmann::ordered_json header;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [k, v] : metadata) {
    LATHE_CHECK(invalidUtf8At(k) == std::string::npos && invalidUtf8At(v) == std::string::npos,
                path, ": metadata '", k, "' is not valid UTF-8");
    meta[k] = v;
  }
  if (!meta.contains("format")) meta["format"] = "pt";
  header["__metadata__"] = meta;
  uint64_t offset = 0;
  for (const auto* s : stored) {
    const Tensor& t = s->second;
    header[s->first] = {{"dtype", safetensorsDTypeName(t.dtype())},
                        {"shape", t.shape()},
                        {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(text.size() >> (8 * i));
  AtomicFileWriter w(path);
  w.write(len, 8);
  w.write(text.data(), text.size());
  for (const auto* s : stored) {
    Tensor host = s->second.detach();
    if (!host.device().isCpu()) host = host.to(Device::cpu());
    host = host.contiguous();
    if (host.nbytes() > 0) w.write(host.rawData(), host.nbytes());
  }
  w.commit();
}

}  // namespace lathe
