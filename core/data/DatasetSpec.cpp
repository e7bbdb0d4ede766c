#include "core/data/DatasetSpec.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/base/Error.h"
#include "core/data/Csv.h"
#include "core/data/Gpt2Tokenizer.h"
#include "core/data/ImageFormats.h"
#include "core/data/Npy.h"
#include "core/data/TextDataset.h"
#include "core/data/Transforms.h"
#include "core/nn/SpecReader.h"
#include "core/ops/Ops.h"

namespace lathe::data {
namespace fs = std::filesystem;

const char* taskKindName(TaskKind k) {
  switch (k) {
    case TaskKind::classification: return "classification";
    case TaskKind::regression: return "regression";
    case TaskKind::language_model: return "language_model";
  }
  return "?";
}

namespace {

struct Config {
  std::string format, path, inputs, targets, inputs_key, targets_key, label_column, tokenizer,
      vocab;
  int64_t block_size = 128;
  double val_fraction = 0.1, test_fraction = 0.1;
  bool normalize = false;
  std::vector<double> mean, std;
  int64_t crop_padding = 0;
  bool flip = false;
  int64_t limit_train = 0, limit_test = 0;
};

std::vector<double> numbers(const nlohmann::json& j, const std::string& field) {
  if (!j.is_array() || j.empty())
    throw Error(field + ": expected a non-empty list of numbers, got " + j.dump());
  std::vector<double> out;
  for (const auto& v : j) {
    if (!v.is_number()) throw Error(field + ": expected a number, got " + v.dump());
    out.push_back(v.get<double>());
  }
  return out;
}

Config parse(const nlohmann::json& spec, const std::string& path) {
  SpecReader r(spec, path);
  Config c;
  c.format = r.string("format", std::nullopt, {"mnist", "cifar10", "npz", "npy", "csv", "text"});
  const bool has_test_files = c.format == "mnist" || c.format == "cifar10";
  if (c.format == "npy") {
    c.inputs = r.string("inputs");
    c.targets = r.string("targets");
  } else {
    c.path = r.string("path");
  }
  if (c.format == "npz") {
    c.inputs_key = r.string("inputs_key", "x");
    c.targets_key = r.string("targets_key", "y");
  }
  if (c.format == "csv") {
    r.accept("label_column");
    if (spec.contains("label_column")) {
      const auto& l = spec["label_column"];
      if (l.is_string())
        c.label_column = l.get<std::string>();
      else if (l.is_number_integer())
        c.label_column = "#" + std::to_string(l.get<int64_t>());
      else
        r.fail("label_column", "expected a column name or index, got " + l.dump());
    }
  }
  if (c.format == "text") {
    c.tokenizer = r.string("tokenizer", "bytes", {"bytes", "gpt2"});
    if (c.tokenizer == "gpt2") c.vocab = r.string("vocab");
    c.block_size = r.integer("block_size", 128, 2, 1 << 20);
  }
  c.val_fraction = r.number("val_fraction", 0.1, 0.0, 0.9);
  c.test_fraction = has_test_files ? 0.0 : r.number("test_fraction", 0.1, 0.0, 0.9);
  if (c.format != "text") {
    r.accept("normalize");
    if (spec.contains("normalize")) {
      const auto& n = spec["normalize"];
      if (n.is_boolean()) {
        c.normalize = n.get<bool>();
      } else if (n.is_object()) {
        SpecReader nr(n, r.field("normalize"));
        nr.accept("mean");
        nr.accept("std");
        if (!n.contains("mean") || !n.contains("std"))
          r.fail("normalize", "expected true, false or {\"mean\": [...], \"std\": [...]}");
        c.normalize = true;
        c.mean = numbers(n["mean"], nr.field("mean"));
        c.std = numbers(n["std"], nr.field("std"));
        for (double s : c.std)
          if (!(s > 0)) nr.fail("std", "expected positive values");
        nr.finish();
      } else {
        r.fail("normalize",
               "expected true, false or {\"mean\": [...], \"std\": [...]}, got " + n.dump());
      }
    }
    if (c.format == "mnist" || c.format == "cifar10" || c.format == "npz" || c.format == "npy") {
      r.accept("augment");
      if (spec.contains("augment")) {
        SpecReader ar(spec["augment"], r.field("augment"));
        c.crop_padding = ar.integer("crop_padding", 0, 0, 64);
        c.flip = ar.boolean("flip", false);
        ar.finish();
      }
    }
  }
  c.limit_train = r.integer("limit_train", 0, 0);
  c.limit_test = r.integer("limit_test", 0, 0);
  r.finish();
  return c;
}

nlohmann::json toJson(const Config& c) {
  nlohmann::json j;
  j["format"] = c.format;
  if (c.format == "npy") {
    j["inputs"] = c.inputs;
    j["targets"] = c.targets;
  } else {
    j["path"] = c.path;
  }
  if (c.format == "npz") {
    j["inputs_key"] = c.inputs_key;
    j["targets_key"] = c.targets_key;
  }
  if (c.format == "csv" && !c.label_column.empty()) {
    if (c.label_column[0] == '#')
      j["label_column"] = std::stoll(c.label_column.substr(1));
    else
      j["label_column"] = c.label_column;
  }
  if (c.format == "text") {
    j["tokenizer"] = c.tokenizer;
    if (!c.vocab.empty()) j["vocab"] = c.vocab;
    j["block_size"] = c.block_size;
  }
  j["val_fraction"] = c.val_fraction;
  if (c.format != "mnist" && c.format != "cifar10") j["test_fraction"] = c.test_fraction;
  if (c.format != "text") {
    if (!c.mean.empty())
      j["normalize"] = {{"mean", c.mean}, {"std", c.std}};
    else
      j["normalize"] = c.normalize;
  }
  if (c.crop_padding > 0 || c.flip)
    j["augment"] = {{"crop_padding", c.crop_padding}, {"flip", c.flip}};
  if (c.limit_train > 0) j["limit_train"] = c.limit_train;
  if (c.limit_test > 0) j["limit_test"] = c.limit_test;
  return j;
}

std::string resolve(const std::string& p, const std::string& base_dir) {
  if (p.empty() || base_dir.empty() || fs::path(p).is_absolute()) return p;
  return (fs::path(base_dir) / p).lexically_normal().string();
}

void requireExists(const std::string& p, const std::string& field) {
  std::error_code ec;
  if (!fs::exists(p, ec))
    throw Error(field + ": '" + p + "' does not exist (expected a " +
                (field.ends_with("path") || field.ends_with("vocab") ? "file or folder" : "file") +
                ")");
}

DatasetPtr limit(DatasetPtr ds, int64_t n) {
  if (n <= 0 || n >= ds->size()) return ds;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i;
  return std::make_shared<SubsetDataset>(ds, std::move(idx));
}

// Splits `ds` into (rest, part) with `fraction` of the examples in part, seeded.
std::pair<DatasetPtr, DatasetPtr> splitOff(DatasetPtr ds, double fraction, uint64_t seed) {
  if (fraction <= 0) return {ds, nullptr};
  Split s = trainValSplit(ds, fraction, seed);
  return {s.train, s.val};
}

std::string readTextFiles(const std::string& p, const std::string& field) {
  std::vector<fs::path> files;
  if (fs::is_directory(p)) {
    // A folder of text files (e.g. /usr/share/games/fortunes): the regular files in name
    // order, skipping index files (.dat) and encoded duplicates (.u8).
    for (const auto& e : fs::directory_iterator(p)) {
      const auto ext = e.path().extension().string();
      if (e.is_regular_file() && ext != ".dat" && ext != ".u8") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) throw Error(field + ": folder '" + p + "' holds no text files");
  } else {
    files.push_back(p);
  }
  std::string text;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) throw Error(field + ": cannot read '" + f.string() + "'");
    std::ostringstream ss;
    ss << in.rdbuf();
    text += ss.str();
  }
  return text;
}

int64_t countClasses(const Dataset& ds) {
  const auto* a = dynamic_cast<const ArrayDataset*>(&ds);
  if (a == nullptr || isFloating(a->targets().dtype())) return 0;
  NoGradGuard g;
  return static_cast<int64_t>(max(a->targets().to(DType::f64)).item()) + 1;
}

}  // namespace

nlohmann::json normalizeDatasetSpec(const nlohmann::json& spec, const std::string& path) {
  return toJson(parse(spec, path));
}

LoadedData loadDataset(const nlohmann::json& spec, uint64_t seed, const std::string& base_dir,
                       const std::string& path) {
  const Config c = parse(spec, path);
  LoadedData out;
  const std::string file = resolve(c.path, base_dir);
  DatasetPtr train, test;
  std::string name;
  if (c.format == "text") {
    requireExists(file, path + ".path");
    const std::string text = readTextFiles(file, path + ".path");
    std::vector<int32_t> tokens;
    if (c.tokenizer == "gpt2") {
      const std::string vocab = resolve(c.vocab, base_dir);
      requireExists(vocab, path + ".vocab");
      tokens = Gpt2Tokenizer::load(vocab).encode(text);
      out.vocab_size = 50257;
    } else {
      tokens = byteTokens(text);
      out.vocab_size = 256;
    }
    // Contiguous splits of the token stream: the test part last, validation before it, so
    // no window of one split overlaps another.
    const auto n = static_cast<int64_t>(tokens.size());
    const auto n_test = static_cast<int64_t>(static_cast<double>(n) * c.test_fraction);
    const auto n_val = static_cast<int64_t>(static_cast<double>(n) * c.val_fraction);
    const int64_t n_train = n - n_test - n_val;
    auto part = [&](int64_t from, int64_t count, const char* what) -> DatasetPtr {
      if (count == 0) return nullptr;
      if (count < c.block_size + 1)
        throw Error(path + ": the " + what + " split of '" + file + "' has " +
                    std::to_string(count) + " tokens, fewer than block_size + 1 = " +
                    std::to_string(c.block_size + 1) + "; use more text or a smaller block_size");
      std::vector<int32_t> t(tokens.begin() + from, tokens.begin() + from + count);
      return std::make_shared<TokenWindowDataset>(std::move(t), c.block_size, 0, what);
    };
    train = part(0, n_train, "train");
    out.val = part(n_train, n_val, "validation");
    out.test = part(n_train + n_val, n_test, "test");
    out.task = TaskKind::language_model;
    out.input_shape = {c.block_size};
    out.train = limit(train, c.limit_train);
    out.val = out.val ? limit(out.val, c.limit_test) : nullptr;
    out.test = out.test ? limit(out.test, c.limit_test) : nullptr;
    out.description = "text (" + c.tokenizer + ", " + std::to_string(n) +
                      " tokens): " + std::to_string(out.train->size()) + " train windows of " +
                      std::to_string(c.block_size);
    return out;
  }

  if (c.format == "mnist") {
    requireExists(file, path + ".path");
    train = loadMnistDir(file, true);
    test = loadMnistDir(file, false);
    name = "IDX " + fs::path(file).filename().string();
  } else if (c.format == "cifar10") {
    requireExists(file, path + ".path");
    train = loadCifar10Dir(file, true);
    test = loadCifar10Dir(file, false);
    name = "CIFAR-10";
  } else {
    DatasetPtr all;
    if (c.format == "npz") {
      requireExists(file, path + ".path");
      all = loadNpzDataset(file, c.inputs_key, c.targets_key);
      name = "npz " + fs::path(file).filename().string();
    } else if (c.format == "npy") {
      const std::string in = resolve(c.inputs, base_dir), tg = resolve(c.targets, base_dir);
      requireExists(in, path + ".inputs");
      requireExists(tg, path + ".targets");
      all = loadNpyDataset(in, tg);
      name = "npy " + fs::path(in).filename().string();
    } else {  // csv
      requireExists(file, path + ".path");
      CsvOptions o;
      if (!c.label_column.empty()) {
        if (c.label_column[0] == '#')
          o.label_index = std::stoi(c.label_column.substr(1));
        else
          o.label_name = c.label_column;
      }
      all = loadCsvDataset(file, o);
      name = "CSV " + fs::path(file).filename().string();
    }
    std::tie(train, test) = splitOff(all, c.test_fraction, seed ^ 0x7e57ULL);
  }
  train = limit(train, c.limit_train);
  if (test) test = limit(test, c.limit_test);
  auto [tr, val] = splitOff(train, c.val_fraction, seed ^ 0x5a1ULL);

  const Example first = tr->get(0);
  out.input_shape = first.input.shape();
  out.classes = countClasses(*train);
  if (out.classes == 0) {
    // Datasets wrapped in subsets: count over the targets of the training examples.
    out.task = isFloating(first.target.dtype()) ? TaskKind::regression : TaskKind::classification;
    if (out.task == TaskKind::classification) {
      int64_t mx = 0;
      for (int64_t i = 0; i < train->size(); ++i)
        mx = std::max<int64_t>(mx, static_cast<int64_t>(train->get(i).target.item()));
      out.classes = mx + 1;
    }
  }

  if (c.normalize) {
    std::vector<float> mean, std;
    if (!c.mean.empty()) {
      mean.assign(c.mean.begin(), c.mean.end());
      std.assign(c.std.begin(), c.std.end());
    } else {
      const ChannelStats s = channelStats(*tr, 10000);
      mean = s.mean;
      std = s.std;
    }
    auto norm = [&](DatasetPtr d) -> DatasetPtr {
      return d ? std::make_shared<NormalizeDataset>(d, mean, std) : nullptr;
    };
    tr = norm(tr);
    val = norm(val);
    test = norm(test);
  }
  if (c.crop_padding > 0 || c.flip)
    tr = std::make_shared<RandomCropFlipDataset>(tr, static_cast<int>(c.crop_padding), c.flip,
                                                 seed ^ 0xa06ULL);
  out.train = tr;
  out.val = val;
  out.test = test;
  out.description = name + ": " + std::to_string(tr->size()) + " train / " +
                    std::to_string(val ? val->size() : 0) + " val / " +
                    std::to_string(test ? test->size() : 0) + " test";
  return out;
}

}  // namespace lathe::data
