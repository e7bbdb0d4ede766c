// Datasets: random access to examples {input, target}. An in-memory ArrayDataset backs the file
// formats (IDX, CIFAR, npy/npz, CSV) and gathers whole batches in one pass; wrappers add subsets
// (train/val splits), per-channel normalisation and seeded augmentation without copying the data.
// Shapes: a batch stacks examples along a new leading dim; images are [C, H, W] per example.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/Tensor.h"

namespace lathe::data {

struct Example {
  Tensor input;
  Tensor target;
};

// A stacked batch; `epoch` and `index` say where in the loader's sequence it came from.
struct Batch {
  Tensor input;
  Tensor target;
  int64_t epoch = 0;
  int64_t index = 0;
  int64_t size() const { return input.defined() ? input.size(0) : 0; }
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Example i (0 <= i < size()), as the dataset is without epoch-dependent randomness.
  virtual Example get(int64_t i) const = 0;
  // Example i as drawn in `epoch`: random transforms are keyed by (seed, epoch, i), so the same
  // call always gives the same example (prefetching and resuming stay exact).
  virtual Example sample(int64_t i, int64_t epoch) const;
  // The examples `indices` stacked along dim 0. The default stacks sample(); in-memory datasets
  // gather straight into the batch. Must be safe to call from a loader's worker thread.
  virtual Batch getBatch(std::span<const int64_t> indices, int64_t epoch) const;

 protected:
  void checkIndex(int64_t i) const;
};

using DatasetPtr = std::shared_ptr<const Dataset>;

// Stacks examples (same shape and dtype each, contiguous CPU tensors) along a new dim 0.
Batch stackExamples(const std::vector<Example>& examples);

// Examples are row i of `inputs` (converted to f32, times `input_scale`) and row i of `targets`
// (integer and bool targets become i64, floating ones f32). Rows may be any dtype; the tensors
// are kept as they are (u8 images stay 1 byte per pixel) and converted per batch.
class ArrayDataset : public Dataset {
 public:
  ArrayDataset(Tensor inputs, Tensor targets, double input_scale = 1.0, std::string name = {});
  int64_t size() const override { return inputs_.size(0); }
  Example get(int64_t i) const override;
  Batch getBatch(std::span<const int64_t> indices, int64_t epoch) const override;
  const Tensor& inputs() const { return inputs_; }
  const Tensor& targets() const { return targets_; }
  const std::string& name() const { return name_; }

 private:
  Tensor inputs_, targets_;
  double input_scale_;
  std::string name_;
};

// The examples base[indices[k]], k = 0..indices.size()-1.
class SubsetDataset : public Dataset {
 public:
  SubsetDataset(DatasetPtr base, std::vector<int64_t> indices);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  Example get(int64_t i) const override;
  Example sample(int64_t i, int64_t epoch) const override;
  Batch getBatch(std::span<const int64_t> indices, int64_t epoch) const override;
  const std::vector<int64_t>& indices() const { return indices_; }

 private:
  DatasetPtr base_;
  std::vector<int64_t> indices_;
};

// A deterministic split: a seeded permutation of [0, N), the first round(N * val_fraction)
// positions go to validation, the rest (in permutation order) to training.
struct Split {
  DatasetPtr train;
  DatasetPtr val;
};
Split trainValSplit(DatasetPtr base, double val_fraction, uint64_t seed);

// A permutation of [0, n) that depends only on (seed, stream): SplitMix64-seeded mt19937_64 with
// our own Fisher-Yates and unbiased bounded draws, identical across compilers and libraries.
std::vector<int64_t> seededPermutation(int64_t n, uint64_t seed, uint64_t stream);

}  // namespace lathe::data
