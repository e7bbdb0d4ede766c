// Dataset defaults (per-example stacking), the in-memory ArrayDataset with its batch gather,
// subsets and the seeded train/val split.
#include "core/data/Dataset.h"

#include <cmath>
#include <cstring>
#include <random>
#include <type_traits>

namespace lathe::data {

Example Dataset::sample(int64_t i, int64_t /*epoch*/) const {
  return get(i);
}

Batch Dataset::getBatch(std::span<const int64_t> indices, int64_t epoch) const {
  std::vector<Example> examples;
  examples.reserve(indices.size());
  for (int64_t i : indices) examples.push_back(sample(i, epoch));
  Batch b = stackExamples(examples);
  b.epoch = epoch;
  return b;
}

void Dataset::checkIndex(int64_t i) const {
  LATHE_CHECK(i >= 0 && i < size(), "dataset index ", i, " is out of range [0, ", size(), ")");
}

namespace {

Tensor stackPart(const std::vector<Example>& examples, bool input) {
  const auto part = [&](size_t k) -> const Tensor& {
    return input ? examples[k].input : examples[k].target;
  };
  const Tensor& first = part(0);
  LATHE_CHECK(first.defined(), "stackExamples: example 0 has no ", input ? "input" : "target");
  Shape shape = first.shape();
  shape.insert(shape.begin(), static_cast<int64_t>(examples.size()));
  Tensor out = Tensor::empty(shape, first.dtype());
  const size_t row = first.nbytes();
  auto* dst = static_cast<uint8_t*>(out.rawData());
  for (size_t k = 0; k < examples.size(); ++k) {
    const Tensor& t = part(k);
    LATHE_CHECK(t.defined() && t.shape() == first.shape() && t.dtype() == first.dtype(),
                "stackExamples: example ", k, " ", input ? "input" : "target", " is ",
                t.defined() ? describe(t) : std::string("undefined"), ", expected ",
                describe(first));
    LATHE_CHECK(t.device().isCpu(), "stackExamples: example ", k, " is not on the cpu");
    const Tensor c = t.isContiguous() ? t : t.contiguous();
    if (row > 0) std::memcpy(dst + k * row, c.rawData(), row);
  }
  return out;
}

// Copies `count` elements of row-major rows into f32/f64/i64 output, converting.
template <typename Out>
void convertRows(const Tensor& src, std::span<const int64_t> rows, Out* dst, double scale) {
  const int64_t per_row = src.size(0) == 0 ? 0 : src.numel() / src.size(0);
  LATHE_DISPATCH_ALL(src.dtype(), "ArrayDataset", [&] {
    const auto* base = static_cast<const scalar_t*>(src.rawData());
    for (size_t r = 0; r < rows.size(); ++r) {
      const scalar_t* s = base + rows[r] * per_row;
      Out* d = dst + static_cast<int64_t>(r) * per_row;
      if constexpr (std::is_same_v<scalar_t, Out>) {
        if (scale == 1.0) {
          std::memcpy(d, s, static_cast<size_t>(per_row) * sizeof(Out));
          continue;
        }
      }
      if constexpr (std::is_same_v<Out, float> && std::is_arithmetic_v<scalar_t>) {
        // The image path (u8 pixels times 1/255): float math, which the compiler vectorises.
        const auto fs = static_cast<float>(scale);
        for (int64_t j = 0; j < per_row; ++j) d[j] = static_cast<float>(s[j]) * fs;
      } else if (scale == 1.0) {
        for (int64_t j = 0; j < per_row; ++j) d[j] = static_cast<Out>(toDouble(s[j]));
      } else {
        for (int64_t j = 0; j < per_row; ++j) d[j] = static_cast<Out>(toDouble(s[j]) * scale);
      }
    }
  });
}

Tensor gatherRows(const Tensor& src, std::span<const int64_t> rows, DType out_dtype, double scale) {
  Shape shape = src.shape();
  shape[0] = static_cast<int64_t>(rows.size());
  Tensor out = Tensor::empty(shape, out_dtype);
  switch (out_dtype) {
    case DType::f32: convertRows(src, rows, out.data<float>(), scale); break;
    case DType::f64: convertRows(src, rows, out.data<double>(), scale); break;
    case DType::i64: convertRows(src, rows, out.data<int64_t>(), scale); break;
    default: fail("ArrayDataset: cannot produce ", dtypeName(out_dtype), " batches");
  }
  return out;
}

DType targetDType(DType t) {
  return isFloating(t) ? DType::f32 : DType::i64;
}

}  // namespace

Batch stackExamples(const std::vector<Example>& examples) {
  LATHE_CHECK(!examples.empty(), "stackExamples: no examples to stack");
  Batch b;
  b.input = stackPart(examples, true);
  b.target = stackPart(examples, false);
  return b;
}

ArrayDataset::ArrayDataset(Tensor inputs, Tensor targets, double input_scale, std::string name)
    : inputs_(std::move(inputs)),
      targets_(std::move(targets)),
      input_scale_(input_scale),
      name_(std::move(name)) {
  LATHE_CHECK(inputs_.defined() && targets_.defined(), "ArrayDataset ", name_,
              ": inputs and targets must both be given");
  LATHE_CHECK(inputs_.dim() >= 1 && targets_.dim() >= 1, "ArrayDataset ", name_, ": inputs ",
              describe(inputs_), " and targets ", describe(targets_),
              " need a leading example dim");
  LATHE_CHECK(inputs_.size(0) == targets_.size(0), "ArrayDataset ", name_, ": ", inputs_.size(0),
              " inputs but ", targets_.size(0), " targets");
  LATHE_CHECK(inputs_.device().isCpu() && targets_.device().isCpu(), "ArrayDataset ", name_,
              ": data must live on the cpu");
  for (int d = 1; d < inputs_.dim(); ++d)
    LATHE_CHECK(inputs_.size(d) > 0, "ArrayDataset ", name_, ": inputs ", describe(inputs_),
                " hold empty examples");
  if (!inputs_.isContiguous()) inputs_ = inputs_.contiguous();
  if (!targets_.isContiguous()) targets_ = targets_.contiguous();
}

Example ArrayDataset::get(int64_t i) const {
  checkIndex(i);
  const int64_t idx[1] = {i};
  Tensor in = gatherRows(inputs_, idx, DType::f32, input_scale_);
  Tensor tg = gatherRows(targets_, idx, targetDType(targets_.dtype()), 1.0);
  return {in.select(0, 0), tg.select(0, 0)};
}

Batch ArrayDataset::getBatch(std::span<const int64_t> indices, int64_t epoch) const {
  for (int64_t i : indices) checkIndex(i);
  Batch b;
  b.input = gatherRows(inputs_, indices, DType::f32, input_scale_);
  b.target = gatherRows(targets_, indices, targetDType(targets_.dtype()), 1.0);
  b.epoch = epoch;
  return b;
}

SubsetDataset::SubsetDataset(DatasetPtr base, std::vector<int64_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  LATHE_CHECK(base_ != nullptr, "SubsetDataset: no base dataset");
  const int64_t n = base_->size();
  for (int64_t i : indices_)
    LATHE_CHECK(i >= 0 && i < n, "SubsetDataset: index ", i, " is out of range [0, ", n, ")");
}

Example SubsetDataset::get(int64_t i) const {
  checkIndex(i);
  return base_->get(indices_[static_cast<size_t>(i)]);
}

Example SubsetDataset::sample(int64_t i, int64_t epoch) const {
  checkIndex(i);
  return base_->sample(indices_[static_cast<size_t>(i)], epoch);
}

Batch SubsetDataset::getBatch(std::span<const int64_t> indices, int64_t epoch) const {
  std::vector<int64_t> mapped(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    checkIndex(indices[k]);
    mapped[k] = indices_[static_cast<size_t>(indices[k])];
  }
  return base_->getBatch(mapped, epoch);
}

namespace {
uint64_t splitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, bound) without modulo bias (rejection on the top of the 64-bit range).
uint64_t boundedDraw(std::mt19937_64& gen, uint64_t bound) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t v = gen();
  while (v >= limit) v = gen();
  return v % bound;
}
}  // namespace

std::vector<int64_t> seededPermutation(int64_t n, uint64_t seed, uint64_t stream) {
  LATHE_CHECK(n >= 0, "seededPermutation: negative size ", n);
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  std::mt19937_64 gen(splitMix64(seed ^ splitMix64(stream + 0x5DEECE66Dull)));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(boundedDraw(gen, static_cast<uint64_t>(i) + 1));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

Split trainValSplit(DatasetPtr base, double val_fraction, uint64_t seed) {
  LATHE_CHECK(base != nullptr, "trainValSplit: no dataset");
  LATHE_CHECK(val_fraction >= 0.0 && val_fraction <= 1.0, "trainValSplit: val_fraction ",
              val_fraction, " is outside [0, 1]");
  const int64_t n = base->size();
  const auto n_val = static_cast<int64_t>(std::llround(static_cast<double>(n) * val_fraction));
  std::vector<int64_t> perm = seededPermutation(n, seed, /*stream=*/0xA11CE);
  std::vector<int64_t> val(perm.begin(), perm.begin() + n_val);
  std::vector<int64_t> train(perm.begin() + n_val, perm.end());
  Split s;
  s.train = std::make_shared<SubsetDataset>(base, std::move(train));
  s.val = std::make_shared<SubsetDataset>(base, std::move(val));
  return s;
}

}  // namespace lathe::data
