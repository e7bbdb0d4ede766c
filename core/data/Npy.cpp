// .npy header parsing (a strict reader of the Python dict literal numpy writes), byte order
// conversion, and .npz on top of the zip reader.
#include "core/data/Npy.h"

#include <cstring>

#include "core/data/Zip.h"

namespace lathe::data {

namespace {

// The three keys of an .npy header, parsed from text like
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
struct NpyHeader {
  std::string descr;
  bool fortran = false;
  Shape shape;
};

class HeaderParser {
 public:
  HeaderParser(std::string_view text, const ByteCursor& file, size_t base)
      : s_(text), file_(file), base_(base) {}

  NpyHeader parse() {
    NpyHeader h;
    bool has_descr = false, has_fortran = false, has_shape = false;
    expect('{');
    while (true) {
      skipSpace();
      if (peek() == '}') break;
      const std::string key = string();
      expect(':');
      skipSpace();
      if (key == "descr") {
        if (has_descr) failHere("duplicate key 'descr'");
        if (peek() == '[') failHere("structured (record) dtypes are not supported");
        h.descr = string();
        has_descr = true;
      } else if (key == "fortran_order") {
        if (has_fortran) failHere("duplicate key 'fortran_order'");
        h.fortran = boolean();
        has_fortran = true;
      } else if (key == "shape") {
        if (has_shape) failHere("duplicate key 'shape'");
        h.shape = tuple();
        has_shape = true;
      } else {
        failHere("unexpected header key '" + key + "' (expected descr, fortran_order, shape)");
      }
      skipSpace();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      skipSpace();
      if (peek() != '}') failHere("expected ',' or '}' in the header dict");
    }
    ++i_;
    skipSpace();
    if (i_ != s_.size()) failHere("unexpected text after the header dict");
    if (!has_descr || !has_fortran || !has_shape)
      failHere("the header dict lacks one of 'descr', 'fortran_order', 'shape'");
    return h;
  }

 private:
  [[noreturn]] void failHere(const std::string& what) const {
    file_.failAt(base_ + i_, "bad .npy header: " + what);
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t')) ++i_;
  }
  void expect(char ch) {
    skipSpace();
    if (peek() != ch) failHere(std::string("expected '") + ch + "'");
    ++i_;
  }
  std::string string() {
    skipSpace();
    const char q = peek();
    if (q != '\'' && q != '"') failHere("expected a quoted string");
    const size_t start = ++i_;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') failHere("escapes in header strings are not supported");
      ++i_;
    }
    if (i_ >= s_.size()) failHere("unterminated string");
    return std::string(s_.substr(start, i_++ - start));
  }
  bool boolean() {
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    failHere("expected True or False");
  }
  Shape tuple() {
    Shape shape;
    expect('(');
    while (true) {
      skipSpace();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') failHere("expected a non-negative dimension size");
      uint64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        v = v * 10 + static_cast<uint64_t>(peek() - '0');
        if (v > (uint64_t{1} << 48)) failHere("dimension size is too large");
        ++i_;
      }
      shape.push_back(static_cast<int64_t>(v));
      if (shape.size() > 32) failHere("more than 32 dimensions");
      skipSpace();
      if (peek() == ',') {
        ++i_;
      } else if (peek() != ')') {
        failHere("expected ',' or ')' in the shape tuple");
      }
    }
    ++i_;
    return shape;
  }

  std::string_view s_;
  const ByteCursor& file_;
  size_t base_;
  size_t i_ = 0;
};

struct NpyType {
  char kind;
  size_t size;
  DType dtype;
};

NpyType npyType(const std::string& descr, const ByteCursor& c, size_t at, bool& big_endian) {
  const auto bad = [&](const std::string& why) { c.failAt(at, "dtype '" + descr + "': " + why); };
  if (descr.size() < 2) bad("expected <byte order><kind><size>, e.g. '<f4'");
  const char order = descr[0];
  std::string rest = descr.substr(1);
  if (order != '<' && order != '>' && order != '|' && order != '=') {
    bad("unknown byte order (expected <, >, | or =)");
  }
  big_endian = order == '>';
  if (rest == "O" || rest.rfind("O", 0) == 0)
    bad("object arrays hold pickled Python objects and are refused (save numeric arrays)");
  static const NpyType kTypes[] = {{'u', 1, DType::u8},  {'i', 1, DType::i8},  {'i', 2, DType::i32},
                                   {'u', 2, DType::i32}, {'i', 4, DType::i32}, {'u', 4, DType::i64},
                                   {'i', 8, DType::i64}, {'f', 2, DType::f16}, {'f', 4, DType::f32},
                                   {'f', 8, DType::f64}, {'b', 1, DType::b8}};
  for (const NpyType& t : kTypes)
    if (rest.size() == 2 && rest[0] == t.kind && rest[1] - '0' == static_cast<int>(t.size))
      return t;
  bad("unsupported (expected u1 i1 i2 u2 i4 u4 i8 f2 f4 f8 or b1)");
  return {};
}

// Copies n elements of `size` bytes, reversing each element's bytes when `swap`, and widening
// to the tensor's element type.
void convertNpy(const uint8_t* src, size_t n, const NpyType& t, bool swap, Tensor& out) {
  const auto load = [&](size_t i) {
    uint64_t v = 0;
    const uint8_t* p = src + i * t.size;
    if (swap) {
      for (size_t b = 0; b < t.size; ++b) v = (v << 8) | p[b];
    } else {
      for (size_t b = t.size; b-- > 0;) v = (v << 8) | p[b];
    }
    return v;
  };
  const bool same_width = dtypeSize(out.dtype()) == t.size;
  if (t.kind == 'b') {
    auto* o = static_cast<uint8_t*>(out.rawData());
    for (size_t i = 0; i < n; ++i) o[i] = src[i] != 0;
  } else if (same_width && !swap) {
    if (n > 0) std::memcpy(out.rawData(), src, n * t.size);
  } else if (same_width) {
    auto* o = static_cast<uint8_t*>(out.rawData());
    for (size_t i = 0; i < n; ++i) {
      const uint64_t v = load(i);
      for (size_t b = 0; b < t.size; ++b) o[i * t.size + b] = static_cast<uint8_t>(v >> (8 * b));
    }
  } else if (out.dtype() == DType::i32) {  // i2 / u2
    int32_t* o = out.data<int32_t>();
    for (size_t i = 0; i < n; ++i) {
      const auto v = static_cast<uint16_t>(load(i));
      o[i] = t.kind == 'i' ? static_cast<int16_t>(v) : static_cast<int32_t>(v);
    }
  } else {  // u4 -> i64
    int64_t* o = out.data<int64_t>();
    for (size_t i = 0; i < n; ++i) o[i] = static_cast<int64_t>(static_cast<uint32_t>(load(i)));
  }
}

}  // namespace

Tensor parseNpy(ByteSpan bytes, const std::string& name) {
  ByteCursor c(bytes, name);
  const ByteSpan magic = c.take(6, "the .npy magic \\x93NUMPY");
  if (std::memcmp(magic.data(), "\x93NUMPY", 6) != 0)
    c.failAt(0, "bad magic: expected \\x93NUMPY (is this a .npy file?)");
  const uint8_t major = c.u8("the .npy major version");
  const uint8_t minor = c.u8("the .npy minor version");
  if (major < 1 || major > 3 || minor != 0)
    c.failAt(6, detail::concat(".npy version ", int(major), ".", int(minor),
                               " is not supported (expected 1.0, 2.0 or 3.0)"));
  const uint32_t header_len =
      major == 1 ? c.le16("the header length") : c.le32("the header length");
  const size_t header_at = c.pos();
  const ByteSpan header = c.take(header_len, "the .npy header dict");
  for (size_t i = 0; major < 3 && i < header.size(); ++i)
    if (header[i] >= 0x80) c.failAt(header_at + i, "non-ASCII byte in a v1/v2 .npy header");
  const std::string_view text(reinterpret_cast<const char*>(header.data()), header.size());
  const NpyHeader h = HeaderParser(text, c, header_at).parse();
  bool big = false;
  const NpyType t = npyType(h.descr, c, header_at, big);
  if (h.fortran)
    c.failAt(header_at,
             "Fortran-order arrays are not supported (save with "
             "np.ascontiguousarray(a) for C order)");
  uint64_t numel = 1;
  for (int64_t d : h.shape)
    numel = checkedMul(numel, static_cast<uint64_t>(d), name + ": .npy shape");
  const uint64_t data_bytes = checkedMul(numel, t.size, name + ": .npy data size");
  if (data_bytes != c.remaining())
    c.failHere("the header says ", shapeStr(h.shape), " '", h.descr, "' = ", data_bytes,
               " data bytes, but ", c.remaining(), " bytes follow the header");
  Tensor out = Tensor::empty(h.shape, t.dtype);
  convertNpy(bytes.data() + c.pos(), static_cast<size_t>(numel), t, big && t.size > 1, out);
  return out;
}

Tensor loadNpy(const std::string& path) {
  return parseNpy(readFile(path), path);
}

std::map<std::string, Tensor> parseNpz(ByteSpan bytes, const std::string& name,
                                       size_t max_member_bytes) {
  std::map<std::string, Tensor> arrays;
  for (const ZipMember& m : readZip(bytes, name, max_member_bytes)) {
    const std::string label = name + ": member '" + m.name + "'";
    LATHE_CHECK(m.name.size() > 4 && m.name.ends_with(".npy"), label,
                " is not a .npy array (an .npz holds only <key>.npy members)");
    arrays.emplace(m.name.substr(0, m.name.size() - 4), parseNpy(m.data, label));
  }
  return arrays;
}

std::map<std::string, Tensor> loadNpz(const std::string& path) {
  return parseNpz(readFile(path), path);
}

Bytes encodeNpy(const Tensor& t) {
  const char* descr = nullptr;
  switch (t.dtype()) {
    case DType::u8: descr = "|u1"; break;
    case DType::i8: descr = "|i1"; break;
    case DType::i32: descr = "<i4"; break;
    case DType::i64: descr = "<i8"; break;
    case DType::f16: descr = "<f2"; break;
    case DType::f32: descr = "<f4"; break;
    case DType::f64: descr = "<f8"; break;
    case DType::b8: descr = "|b1"; break;
    default: fail("encodeNpy: .npy cannot hold ", describe(t));
  }
  std::string shape = "(";
  for (int64_t d : t.shape()) shape += std::to_string(d) + ", ";
  if (t.dim() > 1) shape.resize(shape.size() - 2);
  if (t.dim() == 1) shape.resize(shape.size() - 1);  // "(3,)"
  shape += ")";
  std::string header =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces and a final newline so the data starts at a multiple of 64.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  Bytes out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  LATHE_CHECK(header.size() <= 0xFFFF, "encodeNpy: header too long for version 1.0");
  out.push_back(static_cast<uint8_t>(header.size() & 0xFF));
  out.push_back(static_cast<uint8_t>(header.size() >> 8));
  out.insert(out.end(), header.begin(), header.end());
  const Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.rawData());
  out.insert(out.end(), p, p + c.nbytes());
  return out;
}

Bytes encodeNpz(const std::map<std::string, Tensor>& arrays, bool compress) {
  std::vector<ZipMember> members;
  for (const auto& [key, t] : arrays) members.push_back({key + ".npy", encodeNpy(t)});
  return encodeZip(members, compress);
}

void saveNpy(const std::string& path, const Tensor& t) {
  writeFile(path, encodeNpy(t));
}

void saveNpz(const std::string& path, const std::map<std::string, Tensor>& arrays, bool compress) {
  writeFile(path, encodeNpz(arrays, compress));
}

std::shared_ptr<ArrayDataset> loadNpyDataset(const std::string& inputs_path,
                                             const std::string& targets_path, double input_scale) {
  return std::make_shared<ArrayDataset>(loadNpy(inputs_path), loadNpy(targets_path), input_scale,
                                        inputs_path);
}

std::shared_ptr<ArrayDataset> loadNpzDataset(const std::string& path, const std::string& input_key,
                                             const std::string& target_key, double input_scale) {
  std::map<std::string, Tensor> arrays = loadNpz(path);
  const auto get = [&](const std::string& key) {
    auto it = arrays.find(key);
    if (it == arrays.end()) {
      std::string keys;
      for (const auto& [k, v] : arrays) keys += (keys.empty() ? "" : ", ") + k;
      fail(path, ": no array '", key, "' (the archive holds: ", keys, ")");
    }
    return it->second;
  };
  return std::make_shared<ArrayDataset>(get(input_key), get(target_key), input_scale, path);
}

}  // namespace lathe::data
