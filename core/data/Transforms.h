// Dataset wrappers that transform inputs: per-channel normalisation and seeded image
// augmentation (random crop after zero padding, horizontal flip). Inputs are f32 [C, H, W]
// (or [C, ...] for normalisation); batches are transformed in place after the base gathers them.
#pragma once

#include <vector>

#include "core/data/Dataset.h"

namespace lathe::data {

// x[c] = (x[c] - mean[c]) / std[c]; one mean/std per channel (dim 0 of an example's input), or a
// single value for all channels.
class NormalizeDataset : public Dataset {
 public:
  NormalizeDataset(DatasetPtr base, std::vector<float> mean, std::vector<float> std);
  int64_t size() const override { return base_->size(); }
  Example get(int64_t i) const override;
  Example sample(int64_t i, int64_t epoch) const override;
  Batch getBatch(std::span<const int64_t> indices, int64_t epoch) const override;

 private:
  void apply(Tensor& input, bool batched) const;
  DatasetPtr base_;
  std::vector<float> mean_, inv_std_;
};

// Per-channel mean and (population) standard deviation of the inputs over the first
// `max_examples` examples (all when <= 0): the numbers to give NormalizeDataset.
struct ChannelStats {
  std::vector<float> mean, std;
};
ChannelStats channelStats(const Dataset& ds, int64_t max_examples = 0);

// Zero-pads each image by `padding` on every side, crops a random H x W window back out and,
// when `flip`, mirrors it left-right with probability 1/2. The draws for example i in epoch e
// come from Philox(seed; counter = (i, e)), so they are reproducible and differ across epochs.
// get(i) is the un-augmented example.
class RandomCropFlipDataset : public Dataset {
 public:
  RandomCropFlipDataset(DatasetPtr base, int padding, bool flip, uint64_t seed);
  int64_t size() const override { return base_->size(); }
  Example get(int64_t i) const override { return base_->get(i); }
  Example sample(int64_t i, int64_t epoch) const override;
  Batch getBatch(std::span<const int64_t> indices, int64_t epoch) const override;

  // The crop offsets (dy, dx in [0, 2 * padding]) and flip drawn for (i, epoch).
  struct Draw {
    int dy, dx;
    bool flip;
  };
  Draw draw(int64_t i, int64_t epoch) const;

 private:
  void augment(float* image, int64_t C, int64_t H, int64_t W, Draw d,
               std::vector<float>& tmp) const;
  DatasetPtr base_;
  int padding_;
  bool flip_;
  uint64_t seed_;
};

}  // namespace lathe::data
