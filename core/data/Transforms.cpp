// Normalisation and crop/flip augmentation, applied to whole batches in place.
#include "core/data/Transforms.h"

#include <cmath>
#include <cstring>

#include "core/tensor/Random.h"

namespace lathe::data {

NormalizeDataset::NormalizeDataset(DatasetPtr base, std::vector<float> mean, std::vector<float> std)
    : base_(std::move(base)), mean_(std::move(mean)) {
  LATHE_CHECK(base_ != nullptr, "NormalizeDataset: no base dataset");
  LATHE_CHECK(!mean_.empty() && mean_.size() == std.size(), "NormalizeDataset: ", mean_.size(),
              " means and ", std.size(), " standard deviations (expected the same, >= 1)");
  for (float s : std) {
    LATHE_CHECK(s > 0.0f && std::isfinite(s), "NormalizeDataset: standard deviation ", s,
                " must be positive and finite");
    inv_std_.push_back(1.0f / s);
  }
}

void NormalizeDataset::apply(Tensor& input, bool batched) const {
  LATHE_CHECK(input.dtype() == DType::f32 && input.isContiguous(),
              "NormalizeDataset: expected contiguous f32 inputs, got ", describe(input));
  const int cdim = batched ? 1 : 0;
  LATHE_CHECK(input.dim() > cdim, "NormalizeDataset: input ", describe(input),
              " has no channel dim");
  const int64_t C = input.size(cdim);
  LATHE_CHECK(mean_.size() == 1 || static_cast<int64_t>(mean_.size()) == C,
              "NormalizeDataset: ", mean_.size(), " channel statistics for an input with ", C,
              " channels");
  const int64_t outer = batched ? input.size(0) : 1;
  const int64_t inner = C == 0 || outer == 0 ? 0 : input.numel() / (outer * C);
  float* p = input.data<float>();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < C; ++c) {
      const size_t k = mean_.size() == 1 ? 0 : static_cast<size_t>(c);
      const float m = mean_[k], s = inv_std_[k];
      float* q = p + (o * C + c) * inner;
      for (int64_t j = 0; j < inner; ++j) q[j] = (q[j] - m) * s;
    }
}

Example NormalizeDataset::get(int64_t i) const {
  Example e = base_->get(i);
  e.input = e.input.clone();  // never write into a view of the base's own data
  apply(e.input, false);
  return e;
}

Example NormalizeDataset::sample(int64_t i, int64_t epoch) const {
  Example e = base_->sample(i, epoch);
  e.input = e.input.clone();
  apply(e.input, false);
  return e;
}

Batch NormalizeDataset::getBatch(std::span<const int64_t> indices, int64_t epoch) const {
  Batch b = base_->getBatch(indices, epoch);  // a fresh tensor: safe to modify
  apply(b.input, true);
  return b;
}

ChannelStats channelStats(const Dataset& ds, int64_t max_examples) {
  const int64_t n = max_examples > 0 ? std::min<int64_t>(max_examples, ds.size()) : ds.size();
  LATHE_CHECK(n > 0, "channelStats: the dataset is empty");
  std::vector<double> sum, sq;
  int64_t per_channel = 0;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor x = ds.get(i).input.contiguous();
    LATHE_CHECK(x.dtype() == DType::f32 && x.dim() >= 1, "channelStats: example ", i, " input ",
                describe(x), " is not f32 with a channel dim");
    const int64_t C = x.size(0), inner = C == 0 ? 0 : x.numel() / C;
    if (sum.empty()) {
      sum.assign(static_cast<size_t>(C), 0.0);
      sq.assign(static_cast<size_t>(C), 0.0);
    }
    LATHE_CHECK(static_cast<int64_t>(sum.size()) == C, "channelStats: example ", i, " has ", C,
                " channels, expected ", sum.size());
    const float* p = x.data<float>();
    for (int64_t c = 0; c < C; ++c)
      for (int64_t j = 0; j < inner; ++j) {
        const double v = p[c * inner + j];
        sum[static_cast<size_t>(c)] += v;
        sq[static_cast<size_t>(c)] += v * v;
      }
    per_channel += inner;
  }
  ChannelStats s;
  for (size_t c = 0; c < sum.size(); ++c) {
    const double m = sum[c] / static_cast<double>(per_channel);
    const double v = std::max(0.0, sq[c] / static_cast<double>(per_channel) - m * m);
    s.mean.push_back(static_cast<float>(m));
    s.std.push_back(static_cast<float>(std::sqrt(v)));
  }
  return s;
}

RandomCropFlipDataset::RandomCropFlipDataset(DatasetPtr base, int padding, bool flip, uint64_t seed)
    : base_(std::move(base)), padding_(padding), flip_(flip), seed_(seed) {
  LATHE_CHECK(base_ != nullptr, "RandomCropFlipDataset: no base dataset");
  LATHE_CHECK(padding >= 0 && padding <= 1024, "RandomCropFlipDataset: padding ", padding,
              " is outside [0, 1024]");
}

RandomCropFlipDataset::Draw RandomCropFlipDataset::draw(int64_t i, int64_t epoch) const {
  const Philox4 r = philox4x32(static_cast<uint64_t>(i), static_cast<uint64_t>(epoch), seed_);
  const uint32_t span = static_cast<uint32_t>(2 * padding_ + 1);
  return {static_cast<int>(r.v[0] % span), static_cast<int>(r.v[1] % span),
          flip_ && (r.v[2] & 1u) != 0};
}

void RandomCropFlipDataset::augment(float* image, int64_t C, int64_t H, int64_t W, Draw d,
                                    std::vector<float>& tmp) const {
  // Output pixel (y, x) reads padded pixel (y + dy, x' + dx), i.e. source (y + dy - pad, ...),
  // where x' is x mirrored when flipping; out-of-range sources are the zero padding.
  tmp.assign(image, image + C * H * W);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H; ++y) {
      const int64_t sy = y + d.dy - padding_;
      float* out = image + (c * H + y) * W;
      for (int64_t x = 0; x < W; ++x) {
        const int64_t xc = d.flip ? W - 1 - x : x;
        const int64_t sx = xc + d.dx - padding_;
        out[x] = (sy >= 0 && sy < H && sx >= 0 && sx < W) ? tmp[(c * H + sy) * W + sx] : 0.0f;
      }
    }
}

Example RandomCropFlipDataset::sample(int64_t i, int64_t epoch) const {
  Example e = base_->sample(i, epoch);
  e.input = e.input.contiguous().clone();
  LATHE_CHECK(e.input.dtype() == DType::f32 && e.input.dim() == 3,
              "RandomCropFlipDataset: expected an f32 [C, H, W] image, got ", describe(e.input));
  std::vector<float> tmp;
  augment(e.input.data<float>(), e.input.size(0), e.input.size(1), e.input.size(2), draw(i, epoch),
          tmp);
  return e;
}

Batch RandomCropFlipDataset::getBatch(std::span<const int64_t> indices, int64_t epoch) const {
  Batch b = base_->getBatch(indices, epoch);
  LATHE_CHECK(b.input.dtype() == DType::f32 && b.input.dim() == 4 && b.input.isContiguous(),
              "RandomCropFlipDataset: expected f32 [B, C, H, W] images, got ", describe(b.input));
  const int64_t C = b.input.size(1), H = b.input.size(2), W = b.input.size(3);
  float* p = b.input.data<float>();
  std::vector<float> tmp;
  for (size_t k = 0; k < indices.size(); ++k)
    augment(p + static_cast<int64_t>(k) * C * H * W, C, H, W, draw(indices[k], epoch), tmp);
  return b;
}

}  // namespace lathe::data
