// IDX and CIFAR-10 parsing. Header sizes are multiplied with overflow checks and compared to the
// bytes actually present before any tensor is allocated, so a hostile header can neither make
// us read past the buffer nor allocate more than the file could fill.
#include "core/data/ImageFormats.h"

#include <cstring>
#include <filesystem>
#include <fstream>

namespace lathe::data {

namespace {

struct IdxType {
  DType dtype;
  size_t file_size;  // bytes per element in the file
  const char* name;
};

IdxType idxType(uint8_t code, const ByteCursor& c) {
  switch (code) {
    case 0x08: return {DType::u8, 1, "u8"};
    case 0x09: return {DType::i8, 1, "i8"};
    case 0x0B: return {DType::i32, 2, "i16"};
    case 0x0C: return {DType::i32, 4, "i32"};
    case 0x0D: return {DType::f32, 4, "f32"};
    case 0x0E: return {DType::f64, 8, "f64"};
    default:
      c.failAt(2, detail::concat("unknown IDX element type 0x", std::hex, int(code),
                                 " (expected 08 u8, 09 i8, 0B i16, 0C i32, 0D f32 or 0E f64)"));
  }
}

uint64_t beValue(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

Tensor parseIdx(ByteSpan bytes, const std::string& name) {
  ByteCursor c(bytes, name);
  c.need(4, "the IDX magic number");
  if (bytes[0] != 0 || bytes[1] != 0)
    c.failHere("bad IDX magic ", int(bytes[0]), " ", int(bytes[1]),
               ": expected 00 00 <type> <ndims> (is this an IDX file, or still gzipped?)");
  c.seek(2, "IDX type");
  const IdxType type = idxType(c.u8("the IDX element type"), c);
  const uint8_t ndims = c.u8("the IDX dimension count");
  if (ndims == 0 || ndims > 8)
    c.failAt(3, detail::concat("IDX dimension count ", int(ndims), " is outside 1..8"));
  Shape shape;
  uint64_t numel = 1;
  for (uint8_t d = 0; d < ndims; ++d) {
    const uint32_t n = c.be32("an IDX dimension size");
    shape.push_back(static_cast<int64_t>(n));
    numel = checkedMul(numel, n, name + ": IDX shape");
  }
  const uint64_t data_bytes = checkedMul(numel, type.file_size, name + ": IDX data size");
  if (data_bytes != c.remaining())
    c.failHere("the header says ", shapeStr(shape), " ", type.name, " = ", data_bytes,
               " data bytes, but ", c.remaining(), " bytes follow the header");
  const uint8_t* src = bytes.data() + c.pos();
  Tensor t = Tensor::empty(shape, type.dtype);
  const auto n = static_cast<size_t>(numel);
  switch (type.file_size) {
    case 1:
      if (n > 0) std::memcpy(t.rawData(), src, n);
      break;
    case 2: {
      int32_t* out = t.data<int32_t>();
      for (size_t i = 0; i < n; ++i)
        out[i] = static_cast<int16_t>(static_cast<uint16_t>(beValue(src + 2 * i, 2)));
      break;
    }
    case 4: {
      auto* out = static_cast<uint32_t*>(t.rawData());
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint32_t>(beValue(src + 4 * i, 4));
      break;
    }
    default: {
      auto* out = static_cast<uint64_t*>(t.rawData());
      for (size_t i = 0; i < n; ++i) out[i] = beValue(src + 8 * i, 8);
    }
  }
  return t;
}

Tensor loadIdx(const std::string& path) {
  const Bytes bytes = readMaybeGzip(path);
  return parseIdx(bytes, path);
}

Bytes encodeIdx(const Tensor& t) {
  uint8_t code = 0;
  switch (t.dtype()) {
    case DType::u8: code = 0x08; break;
    case DType::i8: code = 0x09; break;
    case DType::i32: code = 0x0C; break;
    case DType::f32: code = 0x0D; break;
    case DType::f64: code = 0x0E; break;
    default: fail("encodeIdx: IDX cannot hold ", describe(t));
  }
  LATHE_CHECK(t.dim() >= 1 && t.dim() <= 8, "encodeIdx: ", describe(t), " needs 1..8 dims");
  const Tensor c = t.contiguous();
  Bytes out = {0, 0, code, static_cast<uint8_t>(t.dim())};
  for (int64_t d : t.shape())
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(d >> s));
  const size_t es = t.elementSize();
  const auto* p = static_cast<const uint8_t*>(c.rawData());
  for (size_t i = 0; i < static_cast<size_t>(t.numel()); ++i)
    for (size_t b = es; b-- > 0;) out.push_back(p[i * es + b]);  // little- to big-endian
  return out;
}

std::shared_ptr<ArrayDataset> makeIdxDataset(const Tensor& images, const Tensor& labels,
                                             const std::string& name) {
  LATHE_CHECK(images.dtype() == DType::u8 && images.dim() == 3, name,
              ": IDX images must be u8 [N, rows, cols], got ", describe(images));
  LATHE_CHECK(labels.dtype() == DType::u8 && labels.dim() == 1, name,
              ": IDX labels must be u8 [N], got ", describe(labels));
  LATHE_CHECK(images.size(1) > 0 && images.size(2) > 0, name, ": IDX images of ", images.size(1),
              " x ", images.size(2), " pixels are empty");
  LATHE_CHECK(images.size(0) == labels.size(0), name, ": ", images.size(0), " images but ",
              labels.size(0), " labels");
  Tensor in = images.reshape({images.size(0), 1, images.size(1), images.size(2)});
  return std::make_shared<ArrayDataset>(in, labels, 1.0 / 255.0, name);
}

std::shared_ptr<ArrayDataset> loadIdxDataset(const std::string& images_path,
                                             const std::string& labels_path) {
  return makeIdxDataset(loadIdx(images_path), loadIdx(labels_path), images_path);
}

std::shared_ptr<ArrayDataset> loadMnistDir(const std::string& dir, bool train) {
  const std::string prefix = dir + "/" + (train ? "train" : "t10k");
  const auto pick = [&](const std::string& stem) {
    for (const char* ext : {"", ".gz"}) {
      const std::string p = prefix + stem + ext;
      if (std::filesystem::exists(p)) return p;
    }
    fail("MNIST directory '", dir, "': neither ", prefix + stem, " nor its .gz exists");
  };
  return loadIdxDataset(pick("-images-idx3-ubyte"), pick("-labels-idx1-ubyte"));
}

CifarArrays parseCifar10(ByteSpan bytes, const std::string& name) {
  ByteCursor c(bytes, name);
  if (bytes.empty() || bytes.size() % kCifarRecordBytes != 0)
    c.failAt(bytes.size() - bytes.size() % kCifarRecordBytes,
             detail::concat("file size ", bytes.size(), " is not a positive multiple of the ",
                            kCifarRecordBytes, "-byte CIFAR-10 record (1 label + 3072 pixels)"));
  const auto n = static_cast<int64_t>(bytes.size() / kCifarRecordBytes);
  CifarArrays a;
  a.images = Tensor::empty({n, 3, 32, 32}, DType::u8);
  a.labels = Tensor::empty({n}, DType::u8);
  uint8_t* img = a.images.data<uint8_t>();
  uint8_t* lab = a.labels.data<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    const size_t off = static_cast<size_t>(i) * kCifarRecordBytes;
    if (bytes[off] > 9)
      c.failAt(off, detail::concat("record ", i, " has label ", int(bytes[off]),
                                   ", expected a CIFAR-10 class 0..9"));
    lab[i] = bytes[off];
    std::memcpy(img + i * 3072, bytes.data() + off + 1, 3072);
  }
  return a;
}

std::shared_ptr<ArrayDataset> loadCifar10Files(const std::vector<std::string>& paths) {
  LATHE_CHECK(!paths.empty(), "loadCifar10Files: no files given");
  std::vector<CifarArrays> parts;
  int64_t total = 0;
  for (const std::string& p : paths) {
    parts.push_back(parseCifar10(readFile(p), p));
    total += parts.back().labels.size(0);
  }
  Tensor images = Tensor::empty({total, 3, 32, 32}, DType::u8);
  Tensor labels = Tensor::empty({total}, DType::u8);
  int64_t at = 0;
  for (const CifarArrays& part : parts) {
    const int64_t n = part.labels.size(0);
    std::memcpy(images.data<uint8_t>() + at * 3072, part.images.rawData(),
                static_cast<size_t>(n) * 3072);
    std::memcpy(labels.data<uint8_t>() + at, part.labels.rawData(), static_cast<size_t>(n));
    at += n;
  }
  return std::make_shared<ArrayDataset>(images, labels, 1.0 / 255.0, paths.front());
}

std::shared_ptr<ArrayDataset> loadCifar10Dir(const std::string& dir, bool train) {
  std::vector<std::string> paths;
  if (train) {
    for (int i = 1; i <= 5; ++i) paths.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");
  } else {
    paths.push_back(dir + "/test_batch.bin");
  }
  return loadCifar10Files(paths);
}

std::vector<std::string> loadCifar10ClassNames(const std::string& dir) {
  const std::string path = dir + "/batches.meta.txt";
  std::ifstream in(path);
  LATHE_CHECK(in.good(), "cannot open '", path, "'");
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  LATHE_CHECK(names.size() == 10, path, ": ", names.size(), " class names, expected 10");
  return names;
}

}  // namespace lathe::data
