// safetensors: writer layout and round trip over every dtype, a hand-built file laid out as
// Hugging Face's writer lays it out, rejection of each malformed variant with a message naming
// the file, tensor and offset, atomic replacement, and saveModel/loadModel of presets.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/io/ModelFile.h"
#include "core/io/Safetensors.h"
#include "core/nn/Gpt.h"
#include "core/ops/Ops.h"
#include "core/tensor/Random.h"

namespace lathe {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "lathe-st-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  // Writes u64 length + header + data; returns the path.
  std::string writeRaw(const std::string& name, const std::string& header, const std::string& data,
                       std::optional<uint64_t> length = std::nullopt) {
    const uint64_t n = length.value_or(header.size());
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>(n >> (8 * i));
    bytes += header + data;
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }

  // Expects SafetensorsReader(p) (and reading every tensor) to fail with all `parts`.
  void expectRejected(const std::string& p, const std::vector<std::string>& parts) {
    try {
      SafetensorsReader r(p);
      r.readAll();
      ADD_FAILURE() << p << " was accepted";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(p), std::string::npos) << "message does not name the file: " << m;
      for (const std::string& part : parts)
        EXPECT_NE(m.find(part), std::string::npos) << "got: " << m << "\nmissing: " << part;
    }
  }

  std::string dir_;
};

std::string bytesOf(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

const std::string kA = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
const std::string kData = bytesOf({1.5f, -2.0f}) + std::string("\x01\x02\x03", 3);

std::string header2(const std::string& b_entry) {
  return "{" + kA + "," + b_entry + "}";
}
const std::string kB = R"("b":{"dtype":"I8","shape":[3],"data_offsets":[8,11]})";

TEST_F(SafetensorsTest, WellFormedBaseIsAccepted) {
  SafetensorsReader r(writeRaw("ok.safetensors", header2(kB), kData));
  ASSERT_EQ(r.entries().size(), 2u);
  EXPECT_EQ(r.read("a").toDoubles(), (std::vector<double>{1.5, -2.0}));
  EXPECT_EQ(r.read("b").toInts(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(r.header().data_start, 8 + header2(kB).size());
}

TEST_F(SafetensorsTest, RejectsEachMalformedVariant) {
  const std::string base = header2(kB);
  // Header length.
  expectRejected(writeRaw("empty_header", "", "", 0), {"not valid JSON"});
  {
    std::ofstream(path("tiny"), std::ios::binary) << "abc";
    expectRejected(path("tiny"), {"3 bytes is too short"});
  }
  expectRejected(writeRaw("huge_len", base, kData, uint64_t{1} << 40),
                 {"header length 1099511627776", "exceeds the limit of 100000000"});
  expectRejected(writeRaw("long_len", base, kData, base.size() + kData.size() + 1),
                 {"header length " + std::to_string(base.size() + kData.size() + 1),
                  "truncated or not safetensors"});
  // Truncated data.
  expectRejected(writeRaw("truncated", base, kData.substr(0, 9)),
                 {"tensor 'b'", "extends past the end of the file", "truncated",
                  "file offsets " + std::to_string(8 + base.size() + 8)});
  // Overlap, gap, trailing bytes.
  const std::string overlap = header2(R"("b":{"dtype":"I8","shape":[3],"data_offsets":[6,9]})");
  expectRejected(writeRaw("overlap", overlap, kData.substr(0, 9)),
                 {"tensor 'b' at file offset " + std::to_string(8 + overlap.size() + 6),
                  "overlaps tensor 'a'"});
  const std::string gap = header2(R"("b":{"dtype":"I8","shape":[3],"data_offsets":[9,12]})");
  expectRejected(writeRaw("gap", gap, kData + "x"),
                 {"gap: data bytes at file offsets " + std::to_string(8 + gap.size() + 8),
                  "belong to no tensor (before tensor 'b')"});
  expectRejected(writeRaw("trailing", base, kData + "xyz"),
                 {"3 trailing bytes after the last tensor",
                  "from file offset " + std::to_string(8 + base.size() + 11)});
  // Duplicate keys, at the top and inside an entry.
  expectRejected(writeRaw("dup", "{" + kA + "," + kA + "," + kB + "}", kData),
                 {"duplicate key \"a\""});
  expectRejected(
      writeRaw("dup_inner",
               R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]},)" + kB + "}",
               kData),
      {"duplicate key \"dtype\"", "inside \"a\""});
  // Dtypes and sizes.
  expectRejected(
      writeRaw("dtype", header2(R"("b":{"dtype":"F128","shape":[3],"data_offsets":[8,11]})"),
               kData),
      {"tensor 'b'", "unknown dtype \"F128\""});
  expectRejected(
      writeRaw("size", header2(R"("b":{"dtype":"I16","shape":[3],"data_offsets":[8,11]})"), kData),
      {"tensor 'b'",
       "size mismatch: dtype I16 shape [3] needs 6 bytes but data_offsets [8,11] "
       "hold 3"});
  expectRejected(writeRaw("overflow",
                          header2(R"("b":{"dtype":"F64","shape":[4294967296,4294967296,16],)"
                                  R"("data_offsets":[8,11]})"),
                          kData),
                 {"tensor 'b'", "overflows 64-bit"});
  expectRejected(
      writeRaw("negative", header2(R"("b":{"dtype":"I8","shape":[-3],"data_offsets":[8,11]})"),
               kData),
      {"tensor 'b'", "non-negative integers"});
  expectRejected(
      writeRaw("extra", header2(R"("b":{"dtype":"I8","shape":[3],"data_offsets":[8,11],"x":1})"),
               kData),
      {"tensor 'b'", "unknown field 'x'"});
  const std::string bools = R"({"a":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})";
  expectRejected(
      writeRaw("bool", bools, std::string("\x01\x00\x02", 3)),
      {"tensor 'a'", "BOOL byte 2 at file offset " + std::to_string(8 + bools.size() + 2)});
  expectRejected(writeRaw("missing", header2(R"("b":{"dtype":"I8","shape":[3]})"), kData),
                 {"tensor 'b'", "missing 'data_offsets'"});
  // Not JSON, not UTF-8, not an object, bad metadata.
  expectRejected(writeRaw("json", "{\"a\": ", ""), {"not valid JSON (at file offset"});
  expectRejected(writeRaw("utf8", "{\"\xff\":1}", ""),
                 {"not valid UTF-8 (byte at file offset 10)"});
  expectRejected(writeRaw("array", "[1, 2]", ""), {"must be a JSON object"});
  expectRejected(writeRaw("meta", "{\"__metadata__\":{\"format\":1}}", ""),
                 {"\"__metadata__\" value of \"format\" must be a string"});
}

TEST_F(SafetensorsTest, KnownDTypesWithoutLatheTypeValidateButDoNotRead) {
  SafetensorsReader r(writeRaw("u16",
                               header2(R"("b":{"dtype":"U16","shape":[1],"data_offsets":[8,10]})"),
                               kData.substr(0, 10)));
  EXPECT_EQ(r.entry("b").dtype_name, "U16");
  EXPECT_EQ(r.read("a").toDoubles(), (std::vector<double>{1.5, -2.0}));
  try {
    r.read("b");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dtype U16, which Lathe has no tensor type for"),
              std::string::npos);
  }
}

TEST_F(SafetensorsTest, ReadsAFileLaidOutLikeHuggingFacesWriter) {
  // Metadata first, tensors by offset, header padded with spaces to a multiple of 8, and
  // whitespace around the JSON (which readers must tolerate).
  std::string header =
      "\n {\"__metadata__\":{\"format\":\"pt\"},\"weight\":{\"dtype\":\"F32\",\"shape\":[2,2],"
      "\"data_offsets\":[0,16]},\"bias\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[16,"
      "20]},\"empty\":{\"dtype\":\"I64\",\"shape\":[0,3],\"data_offsets\":[20,20]}}";
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::string data = bytesOf({1, 2, 3, 4}) + std::string("\x00\x3f\x00\xc0", 4);
  SafetensorsReader r(writeRaw("hf.safetensors", header, data));
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.read("weight").shape(), (Shape{2, 2}));
  EXPECT_EQ(r.read("weight").toDoubles(), (std::vector<double>{1, 2, 3, 4}));
  EXPECT_EQ(r.read("bias").dtype(), DType::bf16);
  EXPECT_EQ(r.read("bias").toDoubles(), (std::vector<double>{0.5, -2.0}));
  EXPECT_EQ(r.read("empty").shape(), (Shape{0, 3}));
}

TEST_F(SafetensorsTest, PythonSafetensorsFileIfAvailable) {
  const std::string p = path("py.safetensors");
  const std::string cmd =
      "python3 -c \"import numpy as np; from safetensors.numpy import save_file; "
      "save_file({'x': np.arange(6, dtype=np.float32).reshape(2, 3), "
      "'i': np.array([7, -8], dtype=np.int64)}, '" +
      p + "')\" >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0)
    GTEST_SKIP() << "python3 with safetensors and numpy is not installed";
  SafetensorsReader r(p);
  EXPECT_EQ(r.read("x").toDoubles(), (std::vector<double>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(r.read("i").toInts(), (std::vector<int64_t>{7, -8}));
  // And the other way: Python's strict reader accepts what we write.
  const std::string ours = path("ours.safetensors");
  writeSafetensors(ours,
                   {{"w", Tensor::fromVector(std::vector<double>{1.5, -2, 3}, {3, 1})},
                    {"b", Tensor::fromVector(std::vector<int64_t>{1, 0}, {2}, DType::b8)},
                    {"h", Tensor::fromVector(std::vector<double>{0.25}, {1}, DType::f16)}},
                   {{"k", "v"}});
  const std::string check =
      "python3 -c \"import numpy as np; from safetensors.numpy import load_file; "
      "from safetensors import safe_open; d = load_file('" +
      ours +
      "'); "
      "assert d['w'].dtype == np.float32 and d['w'].shape == (3, 1), d['w']; "
      "assert d['w'][:, 0].tolist() == [1.5, -2.0, 3.0]; "
      "assert d['b'].tolist() == [True, False] and d['h'].tolist() == [0.25]; "
      "f = safe_open('" +
      ours +
      "', 'np'); "
      "assert f.metadata() == {'k': 'v', 'format': 'pt'}, f.metadata()\"";
  EXPECT_EQ(std::system(check.c_str()), 0) << check;
}

TEST_F(SafetensorsTest, WriterRoundTripsEveryDTypeAndPadsTheHeader) {
  manualSeed(41);
  Tensor base = randn({3, 2});
  NamedTensors tensors{
      {"f32_transposed", base.transpose(0, 1)},  // non-contiguous view
      {"f64", randn({4}, DType::f64)},
      {"f16", randn({2, 2}).to(DType::f16)},
      {"bf16", randn({5}).to(DType::bf16)},
      {"fp8", randn({3}).to(DType::f8e4m3)},
      {"i64", Tensor::fromVector(std::vector<int64_t>{-1, 1LL << 40}, {2})},
      {"i32", Tensor::fromVector(std::vector<int64_t>{3}, {1}, DType::i32)},
      {"u8", Tensor::fromVector(std::vector<int64_t>{255, 0, 7}, {3}, DType::u8)},
      {"bool", Tensor::fromVector(std::vector<int64_t>{1, 0}, {2}, DType::b8)},
      {"scalar", Tensor::scalar(3.25)},
      {"empty", Tensor::zeros({0, 4})},
      {"alias", base.transpose(0, 1)},  // the same memory as f32_transposed: stored once
  };
  const std::string p = path("rt.safetensors");
  writeSafetensors(p, tensors, {{"note", "héllo"}});
  std::ifstream in(p, std::ios::binary);
  char len[8];
  in.read(len, 8);
  uint64_t n = 0;
  std::memcpy(&n, len, 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(in.get(), '{');
  SafetensorsReader r(p);
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.metadata().at("note"), "héllo");
  EXPECT_FALSE(r.contains("alias"));
  EXPECT_EQ(r.entries().size(), tensors.size() - 1);
  for (const auto& [name, t] : tensors) {
    if (name == "alias") continue;
    Tensor got = r.read(name);
    EXPECT_EQ(got.dtype(), t.dtype()) << name;
    EXPECT_EQ(got.shape(), t.shape()) << name;
    EXPECT_EQ(got.toDoubles(), t.toDoubles()) << name;
  }
  // Rewriting replaces the file atomically and leaves no temporary file behind.
  writeSafetensors(p, {{"only", Tensor::ones({2})}});
  EXPECT_EQ(SafetensorsReader(p).entries().size(), 1u);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir_)) files.push_back(e.path().filename().string());
  EXPECT_EQ(files, std::vector<std::string>{"rt.safetensors"});
  EXPECT_THROW(writeSafetensors(p, {{"__metadata__", Tensor::ones({1})}}), Error);
  EXPECT_THROW(writeSafetensors(p, {{"x", Tensor::ones({1})}, {"x", Tensor::ones({1})}}), Error);
  EXPECT_EQ(SafetensorsReader(p).entries()[0].name, "only");  // a refused write changes nothing
  EXPECT_THROW(writeSafetensors(path("no/such/dir/x.safetensors"), {}), Error);
}

TEST_F(SafetensorsTest, SaveAndLoadModelRebuildsThePreset) {
  manualSeed(42);
  const nlohmann::json spec = {{"type", "gpt"}, {"vocab_size", 23},   {"block_size", 8},
                               {"n_layer", 2},  {"n_head", 2},        {"n_kv_head", 1},
                               {"d_model", 8},  {"positions", "rope"}};
  auto model = buildModel(spec);
  model->eval();
  const std::string p = path("gpt.safetensors");
  saveModel(p, *model, {{"run", "42"}});
  SafetensorsReader r(p);
  EXPECT_EQ(nlohmann::json::parse(r.metadata().at(kModelSpecKey)), model->spec());
  EXPECT_EQ(r.metadata().at("run"), "42");
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_FALSE(r.contains("lm_head.weight"));          // tied: stored once, as wte
  EXPECT_FALSE(r.contains("blocks.0.attn.rope_cos"));  // non-persistent buffer
  EXPECT_EQ(static_cast<int64_t>(r.entries().size()),
            static_cast<int64_t>(model->stateDict().size()));

  auto loaded = loadModel(p);
  loaded->eval();
  const Tensor ids = Tensor::fromVector(std::vector<int64_t>{1, 5, 22, 3}, {1, 4});
  EXPECT_EQ(loaded->forward(ids).toDoubles(), model->forward(ids).toDoubles());
  EXPECT_EQ(loaded->numParameters(), model->numParameters());

  LoadModelOptions as_f64;
  as_f64.dtype = DType::f64;
  auto wide = loadModel(p, as_f64);
  EXPECT_EQ(wide->parameter("wte.weight").dtype(), DType::f64);

  // A ResNet keeps its BatchNorm running statistics.
  auto resnet = buildModel({{"type", "resnet"},
                            {"in_channels", 1},
                            {"image_size", 8},
                            {"classes", 3},
                            {"widths", {2, 4}},
                            {"blocks", {1, 1}}});
  resnet->forward(randn({4, 1, 8, 8}));  // training step updates running stats
  resnet->eval();
  saveModel(path("resnet.safetensors"), *resnet);
  auto resnet2 = loadModel(path("resnet.safetensors"));
  resnet2->eval();
  const Tensor x = randn({2, 1, 8, 8});
  EXPECT_EQ(resnet2->forward(x).toDoubles(), resnet->forward(x).toDoubles());
}

TEST_F(SafetensorsTest, LoadModelErrorsNameTheFile) {
  const std::string plain = path("plain.safetensors");
  writeSafetensors(plain, {{"w", Tensor::ones({2})}});
  try {
    loadModel(plain);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(plain + ": no 'lathe.spec'"), std::string::npos);
  }
  const nlohmann::json spec = {{"type", "mlp"}, {"input_dim", 3}, {"classes", 2}};
  auto mlp = buildModel(spec);
  NamedTensors partial = mlp->stateDict();
  partial.pop_back();
  const std::string broken = path("broken.safetensors");
  writeSafetensors(broken, partial, {{kModelSpecKey, mlp->spec().dump()}});
  try {
    loadModel(broken);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(broken), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("missing keys: layers.0.bias"), std::string::npos)
        << e.what();
  }
  const std::string bad_spec = path("badspec.safetensors");
  writeSafetensors(bad_spec, {}, {{kModelSpecKey, R"({"type":"gpt","vocab_size":3})"}});
  try {
    loadModel(bad_spec);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.block_size: required integer is missing"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace lathe
