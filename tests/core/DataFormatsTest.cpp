// The file formats on real bytes: IDX (plain and gzipped, every element type), CIFAR-10
// records, .npy/.npz as numpy 1.24 wrote them (embedded below) and as our writer writes them,
// CSV tables, and the errors each gives for bad files. Real Fashion-MNIST when installed.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/base/Error.h"
#include "core/data/Csv.h"
#include "core/data/ImageFormats.h"
#include "core/data/Npy.h"
#include "core/data/Zip.h"

namespace lathe::data {
namespace {

// Written by numpy 1.24.2: np.savez / np.savez_compressed(x=float32 [[0.5, -1.25, 3], [4, 5.5,
// -6]], y=int64 [3, 7]); write_array('>i4' [[1, -2], [300000, -4]], version=(2, 0));
// write_array(bool [True, False, True], version=(3, 0)).
// 530 bytes
const unsigned char kNumpyStoredNpz[] = {
    0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x21, 0x00, 0xf7, 0x34,
    0xca, 0xe8, 0x98, 0x00, 0x00, 0x00, 0x98, 0x00, 0x00, 0x00, 0x05, 0x00, 0x14, 0x00, 0x78, 0x2e,
    0x6e, 0x70, 0x79, 0x01, 0x00, 0x10, 0x00, 0x98, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x98,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76,
    0x00, 0x7b, 0x27, 0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x34, 0x27,
    0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72,
    0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65,
    0x27, 0x3a, 0x20, 0x28, 0x32, 0x2c, 0x20, 0x33, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0xa0, 0xbf, 0x00,
    0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0x40, 0x00, 0x00, 0xb0, 0x40, 0x00, 0x00, 0xc0, 0xc0, 0x50,
    0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x21, 0x00, 0x0b, 0xd7, 0x5c,
    0x26, 0x90, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x05, 0x00, 0x14, 0x00, 0x79, 0x2e, 0x6e,
    0x70, 0x79, 0x01, 0x00, 0x10, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x90, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00,
    0x7b, 0x27, 0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x69, 0x38, 0x27, 0x2c,
    0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27,
    0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27,
    0x3a, 0x20, 0x28, 0x32, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x50, 0x4b, 0x01, 0x02, 0x14, 0x03, 0x14, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x21, 0x00, 0xf7, 0x34, 0xca, 0xe8, 0x98, 0x00, 0x00, 0x00, 0x98, 0x00,
    0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x78, 0x2e, 0x6e, 0x70, 0x79, 0x50, 0x4b, 0x01, 0x02, 0x14, 0x03, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x21, 0x00, 0x0b, 0xd7, 0x5c, 0x26, 0x90, 0x00, 0x00,
    0x00, 0x90, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x80, 0x01, 0xcf, 0x00, 0x00, 0x00, 0x79, 0x2e, 0x6e, 0x70, 0x79, 0x50, 0x4b, 0x05, 0x06,
    0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x02, 0x00, 0x66, 0x00, 0x00, 0x00, 0x96, 0x01, 0x00, 0x00,
    0x00, 0x00,
};
// 400 bytes
const unsigned char kNumpyDeflateNpz[] = {
    0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x21, 0x00, 0xf7, 0x34,
    0xca, 0xe8, 0x5c, 0x00, 0x00, 0x00, 0x98, 0x00, 0x00, 0x00, 0x05, 0x00, 0x14, 0x00, 0x78, 0x2e,
    0x6e, 0x70, 0x79, 0x01, 0x00, 0x10, 0x00, 0x98, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5c,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9b, 0xec, 0x17, 0xea, 0x1b, 0x10, 0xc9, 0xc8, 0x50,
    0xc6, 0x50, 0xad, 0x9e, 0x92, 0x5a, 0x9c, 0x5c, 0xa4, 0x6e, 0xa5, 0xa0, 0x6e, 0x93, 0x66, 0xa2,
    0xae, 0xa3, 0xa0, 0x9e, 0x96, 0x5f, 0x54, 0x52, 0x94, 0x98, 0x17, 0x9f, 0x5f, 0x94, 0x92, 0x0a,
    0x12, 0x77, 0x4b, 0xcc, 0x29, 0x4e, 0x05, 0x8a, 0x17, 0x67, 0x24, 0x16, 0xa4, 0x02, 0xf9, 0x1a,
    0x46, 0x3a, 0x0a, 0xc6, 0x9a, 0x3a, 0x0a, 0xb5, 0x0a, 0x64, 0x03, 0x2e, 0x06, 0x06, 0x06, 0x7b,
    0x06, 0x86, 0x05, 0xfb, 0x19, 0x18, 0x1c, 0x1c, 0x18, 0x18, 0x1a, 0x80, 0x78, 0x03, 0x10, 0x1f,
    0x38, 0x00, 0x00, 0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x21,
    0x00, 0x0b, 0xd7, 0x5c, 0x26, 0x4a, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x05, 0x00, 0x14,
    0x00, 0x79, 0x2e, 0x6e, 0x70, 0x79, 0x01, 0x00, 0x10, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x4a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9b, 0xec, 0x17, 0xea, 0x1b, 0x10,
    0xc9, 0xc8, 0x50, 0xc6, 0x50, 0xad, 0x9e, 0x92, 0x5a, 0x9c, 0x5c, 0xa4, 0x6e, 0xa5, 0xa0, 0x6e,
    0x93, 0x69, 0xa1, 0xae, 0xa3, 0xa0, 0x9e, 0x96, 0x5f, 0x54, 0x52, 0x94, 0x98, 0x17, 0x9f, 0x5f,
    0x94, 0x92, 0x0a, 0x12, 0x77, 0x4b, 0xcc, 0x29, 0x4e, 0x05, 0x8a, 0x17, 0x67, 0x24, 0x16, 0xa4,
    0x02, 0xf9, 0x1a, 0x46, 0x3a, 0x9a, 0x3a, 0x0a, 0xb5, 0x0a, 0x14, 0x00, 0x2e, 0x66, 0x06, 0x08,
    0x60, 0x87, 0xd2, 0x00, 0x50, 0x4b, 0x01, 0x02, 0x14, 0x03, 0x14, 0x00, 0x00, 0x00, 0x08, 0x00,
    0x00, 0x00, 0x21, 0x00, 0xf7, 0x34, 0xca, 0xe8, 0x5c, 0x00, 0x00, 0x00, 0x98, 0x00, 0x00, 0x00,
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x78, 0x2e, 0x6e, 0x70, 0x79, 0x50, 0x4b, 0x01, 0x02, 0x14, 0x03, 0x14, 0x00, 0x00,
    0x00, 0x08, 0x00, 0x00, 0x00, 0x21, 0x00, 0x0b, 0xd7, 0x5c, 0x26, 0x4a, 0x00, 0x00, 0x00, 0x90,
    0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80,
    0x01, 0x93, 0x00, 0x00, 0x00, 0x79, 0x2e, 0x6e, 0x70, 0x79, 0x50, 0x4b, 0x05, 0x06, 0x00, 0x00,
    0x00, 0x00, 0x02, 0x00, 0x02, 0x00, 0x66, 0x00, 0x00, 0x00, 0x14, 0x01, 0x00, 0x00, 0x00, 0x00,
};
// 144 bytes
const unsigned char kNumpyBigEndianV2[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x02, 0x00, 0x74, 0x00, 0x00, 0x00, 0x7b, 0x27, 0x64, 0x65,
    0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3e, 0x69, 0x34, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
    0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61,
    0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28, 0x32,
    0x2c, 0x20, 0x32, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a,
    0x00, 0x00, 0x00, 0x01, 0xff, 0xff, 0xff, 0xfe, 0x00, 0x04, 0x93, 0xe0, 0xff, 0xff, 0xff, 0xfc,
};
// 131 bytes
const unsigned char kNumpyBoolV3[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x03, 0x00, 0x74, 0x00, 0x00, 0x00, 0x7b, 0x27, 0x64,
    0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x7c, 0x62, 0x31, 0x27, 0x2c, 0x20, 0x27,
    0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a,
    0x20, 0x46, 0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27,
    0x3a, 0x20, 0x28, 0x33, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x01, 0x00, 0x01,
};

std::string tempPath(const std::string& name) {
  return testing::TempDir() + "lathe_data_" + name;
}

std::string write(const std::string& name, ByteSpan bytes) {
  const std::string p = tempPath(name);
  writeFile(p, bytes);
  return p;
}

Bytes bytesOf(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

// Expects `fn` to throw a lathe::Error whose message contains every one of `parts`.
template <typename Fn>
void expectError(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected a lathe::Error";
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message '" << e.what() << "' lacks '" << p << "'";
  }
}

// ---- IDX ----

Bytes idxImages() {  // 2 images of 2 x 3
  return {0, 0, 8, 3,  0,   0,   0,   2,   0,   0, 0, 2, 0, 0,
          0, 3, 0, 51, 102, 153, 204, 255, 255, 0, 1, 2, 3, 4};
}
Bytes idxLabels() {
  return {0, 0, 8, 1, 0, 0, 0, 2, 9, 4};
}

TEST(DataIdx, LoadsPlainAndGzipped) {
  const std::string img = write("img.idx", idxImages());
  const std::string lab = write("lab.idx.gz", gzipBytes(idxLabels()));
  auto ds = loadIdxDataset(img, lab);
  ASSERT_EQ(ds->size(), 2);
  const Example e = ds->get(0);
  EXPECT_EQ(e.input.shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(e.input.dtype(), DType::f32);
  const std::vector<float> px = e.input.toFloats();
  EXPECT_FLOAT_EQ(px[0], 0.0f);
  EXPECT_FLOAT_EQ(px[1], 0.2f);
  EXPECT_FLOAT_EQ(px[5], 1.0f);
  EXPECT_EQ(e.target.dtype(), DType::i64);
  EXPECT_EQ(e.target.item(), 9);
  EXPECT_EQ(ds->get(1).target.item(), 4);
  EXPECT_FLOAT_EQ(ds->get(1).input.toFloats()[5], 4.0f / 255.0f);
  const int64_t idx[] = {1, 0};
  const Batch b = ds->getBatch(idx, 0);
  EXPECT_EQ(b.input.shape(), (Shape{2, 1, 2, 3}));
  EXPECT_EQ(b.target.toInts(), (std::vector<int64_t>{4, 9}));
  // A gzip of concatenated members is one file.
  Bytes two = gzipBytes(ByteSpan(idxLabels()).first(5));
  const Bytes rest = gzipBytes(ByteSpan(idxLabels()).subspan(5));
  two.insert(two.end(), rest.begin(), rest.end());
  EXPECT_EQ(parseIdx(gunzip(two, "two"), "two").toInts(), (std::vector<int64_t>{9, 4}));
}

TEST(DataIdx, ElementTypesAreBigEndian) {
  const Bytes i16 = {0, 0, 0x0B, 1, 0, 0, 0, 2, 0xFF, 0xFE, 0x01, 0x00};
  const Tensor a = parseIdx(i16, "i16");
  EXPECT_EQ(a.dtype(), DType::i32);
  EXPECT_EQ(a.toInts(), (std::vector<int64_t>{-2, 256}));
  const Bytes i32 = {0, 0, 0x0C, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFD};
  EXPECT_EQ(parseIdx(i32, "i32").toInts(), (std::vector<int64_t>{-3}));
  const Bytes f32 = {0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3F, 0xC0, 0, 0};
  EXPECT_EQ(parseIdx(f32, "f32").toDoubles(), (std::vector<double>{1.5}));
  const Bytes f64 = {0, 0, 0x0E, 1, 0, 0, 0, 1, 0xC0, 0x04, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(parseIdx(f64, "f64").toDoubles(), (std::vector<double>{-2.5}));
  const Bytes i8 = {0, 0, 0x09, 1, 0, 0, 0, 1, 0x80};
  EXPECT_EQ(parseIdx(i8, "i8").toInts(), (std::vector<int64_t>{-128}));
  // The writer round-trips every type it supports.
  for (DType t : {DType::u8, DType::i8, DType::i32, DType::f32, DType::f64}) {
    const Tensor x = Tensor::fromVector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2}, t);
    const Tensor y = parseIdx(encodeIdx(x), "rt");
    EXPECT_EQ(y.dtype(), t);
    EXPECT_EQ(y.shape(), x.shape());
    EXPECT_EQ(y.toDoubles(), x.toDoubles());
  }
}

TEST(DataIdx, BadFilesNameTheOffset) {
  expectError([] { parseIdx(Bytes{1, 2, 8, 1}, "x.idx"); }, {"x.idx", "byte offset 0", "magic"});
  expectError([] { parseIdx(Bytes{0, 0, 8}, "x.idx"); }, {"x.idx", "truncated"});
  expectError(
      [] {
        parseIdx(Bytes{0, 0, 7, 1, 0, 0, 0, 0}, "x.idx");
      },
      {"byte offset 2", "element type"});
  expectError([] { parseIdx(Bytes{0, 0, 8, 0}, "x.idx"); }, {"dimension count"});
  expectError(
      [] {
        parseIdx(Bytes{0, 0, 8, 2, 0, 0, 0, 2}, "x.idx");
      },
      {"byte offset 8", "dimension size"});
  // Header says 2 x 3 = 6 bytes; 5 follow.
  expectError(
      [] {
        parseIdx(Bytes{0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5}, "x.idx");
      },
      {"x.idx", "byte offset 12", "6 data bytes", "5 bytes follow"});
  // 4 dims of 2^32-1: the product overflows 64 bits.
  Bytes huge = {0, 0, 0x0E, 4};
  for (int k = 0; k < 16; ++k) huge.push_back(0xFF);
  expectError([&] { parseIdx(huge, "huge.idx"); }, {"huge.idx", "overflows"});
  // A truncated gzip stream.
  Bytes gz = gzipBytes(idxImages());
  gz.resize(gz.size() / 2);
  const std::string p = write("trunc.idx.gz", gz);
  expectError([&] { loadIdx(p); }, {p, "truncated"});
  // Images and labels that disagree.
  const std::string img = write("img2.idx", idxImages());
  const std::string lab = write("lab3.idx", Bytes{0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3});
  expectError([&] { loadIdxDataset(img, lab); }, {"2 images but 3 labels"});
  expectError([] { loadIdx("/nonexistent/file.idx"); }, {"/nonexistent/file.idx"});
  // Found by the IDX fuzzer: 4294901762 images of 4 x 0 pixels fill 0 bytes; a dataset of such
  // empty examples is refused instead of making the loader permute billions of indices.
  const Tensor empty_images =
      parseIdx(Bytes{0, 0, 8, 3, 0xFF, 0xFF, 0, 2, 0, 0, 0, 4, 0, 0, 0, 0}, "e");
  EXPECT_EQ(empty_images.shape(), (Shape{4294901762, 4, 0}));
  expectError([&] { makeIdxDataset(empty_images, Tensor::zeros({0}, DType::u8), "e.idx"); },
              {"e.idx", "4 x 0 pixels are empty"});
  expectError(
      [] {
        ArrayDataset(Tensor::zeros({5, 0}), Tensor::zeros({5}, DType::i64));
      },
      {"empty examples"});
}

TEST(DataIdx, RealFashionMnist) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST is not installed in " << dir
                 << " (Debian package dataset-fashion-mnist)";
  auto train = loadMnistDir(dir, true);
  auto test = loadMnistDir(dir, false);
  EXPECT_EQ(train->size(), 60000);
  EXPECT_EQ(test->size(), 10000);
  const Example e = train->get(0);
  EXPECT_EQ(e.input.shape(), (Shape{1, 28, 28}));
  EXPECT_EQ(e.target.item(), 9);  // the first training image is an ankle boot
  std::vector<int64_t> counts(10, 0);
  for (int64_t y : test->targets().to(DType::i64).toInts()) {
    ASSERT_TRUE(y >= 0 && y < 10);
    ++counts[static_cast<size_t>(y)];
  }
  for (int64_t c : counts) EXPECT_EQ(c, 1000);  // the test set is balanced
  const std::vector<float> px = e.input.toFloats();
  EXPECT_GE(*std::min_element(px.begin(), px.end()), 0.0f);
  EXPECT_LE(*std::max_element(px.begin(), px.end()), 1.0f);
  EXPECT_GT(*std::max_element(px.begin(), px.end()), 0.5f);
}

// ---- CIFAR-10 ----

Bytes cifarRecords(int n) {
  Bytes b;
  for (int i = 0; i < n; ++i) {
    b.push_back(static_cast<uint8_t>(i % 10));
    for (int p = 0; p < 3072; ++p) b.push_back(static_cast<uint8_t>((p + i) % 251));
  }
  return b;
}

TEST(DataCifar, RecordsBecomeChannelPlanes) {
  const std::string dir = testing::TempDir() + "lathe_cifar";
  std::filesystem::create_directories(dir);
  writeFile(dir + "/test_batch.bin", cifarRecords(3));
  auto ds = loadCifar10Dir(dir, false);
  ASSERT_EQ(ds->size(), 3);
  const Example e = ds->get(2);
  EXPECT_EQ(e.input.shape(), (Shape{3, 32, 32}));
  EXPECT_EQ(e.target.item(), 2);
  const std::vector<float> px = e.input.toFloats();
  EXPECT_FLOAT_EQ(px[0], 2.0f / 255.0f);                             // R(0, 0)
  EXPECT_FLOAT_EQ(px[1024 + 33], ((1024 + 33 + 2) % 251) / 255.0f);  // G(1, 1)
  EXPECT_FLOAT_EQ(px[3071], ((3071 + 2) % 251) / 255.0f);            // B(31, 31)
  // Several batch files concatenate in order.
  const std::string a = write("c1.bin", cifarRecords(2)), b = write("c2.bin", cifarRecords(1));
  auto both = loadCifar10Files({a, b});
  EXPECT_EQ(both->size(), 3);
  EXPECT_EQ(both->get(2).target.item(), 0);
  std::ofstream meta(dir + "/batches.meta.txt");
  meta << "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
  meta.close();
  EXPECT_EQ(loadCifar10ClassNames(dir)[9], "truck");
}

TEST(DataCifar, BadFiles) {
  Bytes short_file = cifarRecords(2);
  short_file.pop_back();
  expectError([&] { parseCifar10(short_file, "b.bin"); },
              {"b.bin", "byte offset 3073", "multiple of the 3073-byte"});
  Bytes bad_label = cifarRecords(2);
  bad_label[3073] = 10;
  expectError([&] { parseCifar10(bad_label, "b.bin"); }, {"b.bin", "byte offset 3073", "label 10"});
  expectError([] { parseCifar10(Bytes{}, "empty.bin"); }, {"empty.bin"});
  expectError([] { loadCifar10Dir("/nonexistent", true); }, {"data_batch_1.bin"});
}

// ---- .npy / .npz ----

TEST(DataNpy, ReadsWhatNumpyWrote) {
  for (ByteSpan npz : {ByteSpan(kNumpyStoredNpz), ByteSpan(kNumpyDeflateNpz)}) {
    const auto arrays = parseNpz(npz, "numpy.npz");
    ASSERT_EQ(arrays.size(), 2u);
    const Tensor x = arrays.at("x"), y = arrays.at("y");
    EXPECT_EQ(x.dtype(), DType::f32);
    EXPECT_EQ(x.shape(), (Shape{2, 3}));
    EXPECT_EQ(x.toDoubles(), (std::vector<double>{0.5, -1.25, 3, 4, 5.5, -6}));
    EXPECT_EQ(y.dtype(), DType::i64);
    EXPECT_EQ(y.toInts(), (std::vector<int64_t>{3, 7}));
  }
  const Tensor be = parseNpy(kNumpyBigEndianV2, "be.npy");
  EXPECT_EQ(be.dtype(), DType::i32);
  EXPECT_EQ(be.toInts(), (std::vector<int64_t>{1, -2, 300000, -4}));
  const Tensor bo = parseNpy(kNumpyBoolV3, "b.npy");
  EXPECT_EQ(bo.dtype(), DType::b8);
  EXPECT_EQ(bo.toInts(), (std::vector<int64_t>{1, 0, 1}));
  // As a dataset: inputs f32, integer targets i64.
  const std::string p = write("numpy.npz", ByteSpan(kNumpyDeflateNpz));
  auto ds = loadNpzDataset(p);
  ASSERT_EQ(ds->size(), 2);
  EXPECT_EQ(ds->get(1).input.toDoubles(), (std::vector<double>{4, 5.5, -6}));
  EXPECT_EQ(ds->get(1).target.item(), 7);
  expectError([&] { loadNpzDataset(p, "images"); }, {"no array 'images'", "x, y"});
}

TEST(DataNpy, HeaderVariantsAndDtypes) {
  // Hand-written headers: v1 little endian i8 (scalar shape), '>f8', '<u2', '|u1' 3-D.
  const auto npy = [](int major, const std::string& dict, const Bytes& data) {
    Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
    const size_t n = dict.size();
    b.push_back(static_cast<uint8_t>(n));
    b.push_back(static_cast<uint8_t>(n >> 8));
    if (major > 1) b.insert(b.end(), {0, 0});
    b.insert(b.end(), dict.begin(), dict.end());
    b.insert(b.end(), data.begin(), data.end());
    return b;
  };
  EXPECT_EQ(parseNpy(npy(1, "{'descr': '<i8', 'fortran_order': False, 'shape': ()}\n",
                         {0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}),
                     "s")
                .item(),
            -2);
  const Tensor f =
      parseNpy(npy(2, "{\"shape\": (1,), \"descr\": \">f8\", \"fortran_order\": False}",
                   {0xC0, 0x04, 0, 0, 0, 0, 0, 0}),
               "f");
  EXPECT_EQ(f.toDoubles(), (std::vector<double>{-2.5}));
  EXPECT_EQ(parseNpy(npy(1, "{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }",
                         {0xFF, 0xFF, 0x01, 0x00}),
                     "u2")
                .toInts(),
            (std::vector<int64_t>{65535, 1}));
  const Tensor cube = parseNpy(
      npy(3, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1, 2)}", {1, 2, 3, 4}), "c");
  EXPECT_EQ(cube.shape(), (Shape{2, 1, 2}));
  // Our writer round-trips every dtype it supports, including through .npz.
  std::map<std::string, Tensor> arrays;
  for (DType t : {DType::u8, DType::i8, DType::i32, DType::i64, DType::f16, DType::f32, DType::f64,
                  DType::b8}) {
    const Tensor x = Tensor::fromVector(std::vector<double>{0, 1, 1, 0, 1, 1}, {2, 3}, t);
    const Tensor y = parseNpy(encodeNpy(x), "rt");
    EXPECT_EQ(y.dtype(), t);
    EXPECT_EQ(y.toDoubles(), x.toDoubles());
    EXPECT_EQ(encodeNpy(x).size() % 64, (x.nbytes()) % 64);  // data starts at a multiple of 64
    arrays[dtypeName(t)] = x;
  }
  for (bool compress : {false, true}) {
    const auto back = parseNpz(encodeNpz(arrays, compress), "rt.npz");
    ASSERT_EQ(back.size(), arrays.size());
    for (const auto& [k, v] : arrays) EXPECT_EQ(back.at(k).toDoubles(), v.toDoubles()) << k;
  }
}

TEST(DataNpy, RefusesWhatItCannotRead) {
  const auto npy = [](const std::string& dict, size_t data_bytes) {
    Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(dict.size()), 0};
    b.insert(b.end(), dict.begin(), dict.end());
    b.resize(b.size() + data_bytes, 0);
    return b;
  };
  expectError(
      [&] { parseNpy(npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,)}", 16), "o.npy"); },
      {"o.npy", "object arrays", "pickled"});
  expectError(
      [&] {
        parseNpy(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2)}", 16), "f.npy");
      },
      {"f.npy", "Fortran-order"});
  expectError(
      [&] {
        parseNpy(npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", 4),
                 "s.npy");
      },
      {"structured"});
  expectError(
      [&] { parseNpy(npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}", 8), "c.npy"); },
      {"'<c8'", "unsupported"});
  expectError(
      [&] { parseNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", 8), "t.npy"); },
      {"t.npy", "12 data bytes", "8 bytes follow"});
  expectError(
      [&] { parseNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 8), "t.npy"); },
      {"4 data bytes", "8 bytes follow"});
  expectError(
      [&] {
        parseNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4),
                 "k.npy");
      },
      {"unexpected header key 'x'"});
  expectError(
      [&] {
        parseNpy(npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4),
                 "d.npy");
      },
      {"duplicate key"});
  expectError([&] { parseNpy(npy("{'descr': '<f4', 'fortran_order': False}", 4), "m.npy"); },
              {"lacks"});
  expectError(
      [&] {
        parseNpy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (281474976710656, "
                     "281474976710656)}",
                     0),
                 "o.npy");
      },
      {"o.npy", "overflows"});
  expectError([] { parseNpy(bytesOf("\x93NUMPZ\x01\x00"), "m.npy"); },
              {"m.npy", "byte offset 0", "magic"});
  expectError(
      [] {
        parseNpy(Bytes{0x93, 'N', 'U', 'M', 'P', 'Y', 4, 0, 0, 0}, "v.npy");
      },
      {"version 4.0"});
  Bytes cut = encodeNpy(Tensor::fromVector(std::vector<double>{1, 2}, {2}));
  cut.resize(20);
  expectError([&] { parseNpy(cut, "cut.npy"); }, {"cut.npy", "byte offset 10", "truncated"});
}

TEST(DataNpy, ZipErrors) {
  Bytes bad_crc(std::begin(kNumpyStoredNpz), std::end(kNumpyStoredNpz));
  bad_crc[200] ^= 0x40;  // a data byte of x.npy
  expectError([&] { parseNpz(bad_crc, "c.npz"); }, {"c.npz", "CRC-32 mismatch", "x.npy"});
  Bytes cut(std::begin(kNumpyDeflateNpz), std::end(kNumpyDeflateNpz) - 30);
  expectError([&] { parseNpz(cut, "cut.npz"); }, {"cut.npz", "end-of-central-directory"});
  expectError([] { parseNpz(Bytes(10, 0), "tiny.npz"); }, {"tiny.npz", "too short"});
  const Bytes other = encodeZip({{"notes.txt", bytesOf("hello")}}, false);
  expectError([&] { parseNpz(other, "o.npz"); }, {"notes.txt", "not a .npy"});
  const Bytes dup = encodeZip({{"a.npy", bytesOf("x")}, {"a.npy", bytesOf("y")}}, false);
  expectError([&] { readZip(dup, "dup.zip"); }, {"duplicate member name 'a.npy'"});
  // A central directory offset pointing past the end.
  Bytes moved = encodeZip({{"a.npy", bytesOf("x")}}, false);
  moved[moved.size() - 6] = 0xF0;
  expectError([&] { readZip(moved, "m.zip"); }, {"m.zip", "central directory"});
  // Deflate data that claims an impossible expansion.
  Bytes bomb(std::begin(kNumpyDeflateNpz), std::end(kNumpyDeflateNpz));
  const size_t cd = bomb.size() - 22 - 2 * 46 - 10;  // first central entry
  ASSERT_EQ(bomb[cd], 'P');
  bomb[cd + 24 + 2] = 0x7F;  // uncompressed size -> ~2 GB
  expectError([&] { parseNpz(bomb, "bomb.npz"); }, {"bomb.npz", "more than deflate can expand"});
}

TEST(DataNpy, ReadsPythonZipfileArchivesWithZip64Headers) {
  // The fuzz seeds were written by Python's zipfile with force_zip64 (as numpy.savez does): the
  // local headers carry 0xFFFFFFFF sizes and a zip64 extra field.
  const std::string dir = std::string(LATHE_TEST_DATA_DIR) + "/../fuzz/corpus/npz";
  for (const char* f : {"stored.npz", "deflate.npz"}) {
    const auto arrays = loadNpz(dir + "/" + f);
    EXPECT_EQ(arrays.at("x").toDoubles(), (std::vector<double>{0.5, -1.25, 3, 4, 5.5, -6})) << f;
    EXPECT_EQ(arrays.at("y").toInts(), (std::vector<int64_t>{3, 7})) << f;
  }
  const std::string npy = std::string(LATHE_TEST_DATA_DIR) + "/../fuzz/corpus/npy";
  EXPECT_EQ(loadNpy(npy + "/scalar_f8.npy").item(), 2.5);
  EXPECT_EQ(loadNpy(npy + "/be_i4_v2.npy").toInts(), (std::vector<int64_t>{1, -2, 300000, -4}));
}

// ---- CSV ----

TEST(DataCsv, HeaderLabelsAndQuotes) {
  const std::string text =
      "\xEF\xBB\xBF"
      "sepal,petal,\"species, name\"\r\n"
      "1.5,2,setosa\r\n"
      "-3e2,4.25,\"virginica\"\r\n"
      "\n"
      "0, +7 ,setosa\n";
  CsvOptions o;
  o.label_name = "species, name";
  const CsvTable t = parseCsv(text, "iris.csv", o);
  EXPECT_EQ(t.columns, (std::vector<std::string>{"sepal", "petal", "species, name"}));
  EXPECT_EQ(t.class_names, (std::vector<std::string>{"setosa", "virginica"}));
  EXPECT_EQ(t.features.shape(), (Shape{3, 2}));
  EXPECT_EQ(t.features.toDoubles(), (std::vector<double>{1.5, 2, -300, 4.25, 0, 7}));
  EXPECT_EQ(t.labels.toInts(), (std::vector<int64_t>{0, 1, 0}));
  // No header; integer labels in the first column; semicolons.
  CsvOptions first;
  first.label_index = 0;
  first.delimiter = ';';
  const CsvTable u = parseCsv("3;0.5;1\n1;2;\"4\"\n", "n.csv", first);
  EXPECT_TRUE(u.class_names.empty());
  EXPECT_EQ(u.columns[0], "column_0");
  EXPECT_EQ(u.labels.toInts(), (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(u.features.toDoubles(), (std::vector<double>{0.5, 1, 2, 4}));
  // Regression targets and the dataset view.
  CsvOptions reg;
  reg.regression = true;
  const std::string p = tempPath("reg.csv");
  writeFile(p, bytesOf("x,y\n1,0.25\n2,0.5\n"));
  auto ds = loadCsvDataset(p, reg);
  ASSERT_EQ(ds->size(), 2);
  EXPECT_EQ(ds->get(1).target.dtype(), DType::f32);
  EXPECT_DOUBLE_EQ(ds->get(1).target.item(), 0.5);
  EXPECT_EQ(ds->get(1).input.toDoubles(), (std::vector<double>{2}));
}

TEST(DataCsv, ErrorsNameLineAndColumn) {
  expectError([] { parseCsv("a,b,label\n1,2,0\n3,x4,1\n", "bad.csv"); },
              {"bad.csv", "line 3", "column 2", "'b'", "x4"});
  expectError([] { parseCsv("1,2,0\n3,4\n", "ragged.csv"); },
              {"ragged.csv", "line 2", "2 columns"});
  expectError([] { parseCsv("1,\"2,0\n", "q.csv"); }, {"q.csv", "line 1", "unterminated"});
  CsvOptions by_name;
  by_name.label_name = "y";
  expectError([&] { parseCsv("1,2\n3,4\n", "h.csv", by_name); }, {"no header"});
  expectError([&] { parseCsv("a,b\n3,4\n", "h.csv", by_name); }, {"no column named 'y'", "a, b"});
  CsvOptions idx;
  idx.label_index = 5;
  expectError([&] { parseCsv("1,2\n", "i.csv", idx); }, {"label column index 5"});
  expectError([] { parseCsv("", "e.csv"); }, {"e.csv", "no rows"});
  expectError([] { parseCsv("a,b\n", "h.csv"); }, {"h.csv", "header but no data rows"});
  CsvOptions reg;
  reg.regression = true;
  expectError([&] { parseCsv("x,y\n1,cat\n", "r.csv", reg); }, {"numeric label"});
}

}  // namespace
}  // namespace lathe::data
