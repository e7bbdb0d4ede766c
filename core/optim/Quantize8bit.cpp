// Block-wise 8-bit quantization with tensor ops. The nearest map value is found by counting the
// map's 255 midpoints below x with a binary search of 8 steps (gather one midpoint per element,
// compare, advance), so the work is O(8) ops per element instead of 255 comparisons.
#include "core/optim/Quantize8bit.h"

#include <algorithm>
#include <cmath>

#include "core/base/Error.h"
#include "core/ops/Ops.h"

namespace lathe::optim {
namespace {

// x padded with zeros to whole blocks, as [blocks, block_size].
Tensor asBlocks(const Tensor& x, int64_t block_size) {
  const int64_t n = x.numel(), blocks = (n + block_size - 1) / block_size;
  const int64_t pad = blocks * block_size - n;
  const Tensor flat = x.reshape({n});
  const Tensor padded =
      pad == 0 ? flat : concat({flat, Tensor::zeros({pad}, x.dtype(), x.device())}, 0);
  return padded.reshape({blocks, block_size});
}

void checkMap(const Tensor& map, const Tensor& x, const char* op) {
  LATHE_CHECK(map.dim() == 1 && map.numel() == 256, op,
              ": the quantization map must be [256], got ", shapeStr(map.shape()));
  LATHE_CHECK(map.dtype() == x.dtype() && map.device() == x.device(), op,
              ": the quantization map must match the values' dtype and device (",
              dtypeName(x.dtype()), ", ", x.device().str(), ")");
}

}  // namespace

std::vector<double> dynamicQuantizationMap(bool is_signed) {
  // create_dynamic_map: non_sign_bits = 7 in both cases (bitsandbytes' definition), so there are
  // no "additional items" and the values fill exactly 256 entries with 0 and 1.
  constexpr int kExponentBits = 7;
  std::vector<double> data;
  for (int i = 0; i < kExponentBits; ++i) {
    const int items = is_signed ? (1 << i) + 1 : (1 << (i + 1)) + 1;  // linspace points
    const double scale = std::pow(10.0, -(kExponentBits - 1) + i);
    for (int j = 0; j + 1 < items; ++j) {
      const double lo = 0.1 + 0.9 * j / (items - 1), hi = 0.1 + 0.9 * (j + 1) / (items - 1);
      const double mean = (lo + hi) / 2.0;
      data.push_back(scale * mean);
      if (is_signed) data.push_back(-scale * mean);
    }
  }
  data.push_back(0.0);
  data.push_back(1.0);
  LATHE_CHECK(data.size() == 256, "dynamicQuantizationMap: built ", data.size(), " values");
  std::sort(data.begin(), data.end());
  return data;
}

void quantizeBlockwise(const Tensor& x, const Tensor& map, int64_t block_size, const Tensor& codes,
                       const Tensor& absmax) {
  NoGradGuard no_grad;
  checkMap(map, x, "quantizeBlockwise");
  const int64_t n = x.numel(), blocks = (n + block_size - 1) / block_size;
  LATHE_CHECK(block_size > 0 && codes.numel() == n && codes.dtype() == DType::u8 &&
                  absmax.numel() == blocks,
              "quantizeBlockwise: expected ", n, " u8 codes and ", blocks,
              " absmax values for block size ", block_size, ", got ", codes.numel(), " ",
              dtypeName(codes.dtype()), " codes and ", absmax.numel());
  if (n == 0) return;
  const Tensor b = asBlocks(x, block_size);
  const Tensor amax = max(abs(b), {1});
  // An all-zero block divides by the smallest normal number instead: its codes are those of 0.
  const double tiny = x.dtype() == DType::f64 ? 2.2250738585072014e-308 : 1.17549435e-38;
  const Tensor normed =
      div(b, clamp(amax, tiny, std::nullopt).unsqueeze(1)).reshape({blocks * block_size});
  const Tensor y = normed.slice(0, 0, n);
  const Tensor mid = mul(add(map.slice(0, 0, 255), map.slice(0, 1, 256)), 0.5);
  // lo = the number of midpoints below y = the index of the nearest map value.
  Tensor lo = Tensor::zeros({n}, x.dtype(), x.device());
  for (int64_t step = 128; step >= 1; step /= 2) {
    const Tensor t = indexSelect(mid, 0, add(lo, static_cast<double>(step - 1)).to(DType::i64));
    lo = where(lt(t, y), add(lo, static_cast<double>(step)), lo);
  }
  Tensor(codes).copy_(lo.reshape(codes.shape()));
  Tensor(absmax).copy_(amax.reshape(absmax.shape()));
}

Tensor dequantizeBlockwise(const Tensor& codes, const Tensor& absmax, const Tensor& map,
                           int64_t block_size) {
  NoGradGuard no_grad;
  const int64_t n = codes.numel(), blocks = (n + block_size - 1) / block_size;
  LATHE_CHECK(block_size > 0 && codes.dtype() == DType::u8 && absmax.numel() == blocks,
              "dequantizeBlockwise: expected u8 codes and ", blocks, " absmax values for ", n,
              " codes in blocks of ", block_size, ", got ", dtypeName(codes.dtype()), " codes and ",
              absmax.numel());
  LATHE_CHECK(map.dim() == 1 && map.numel() == 256, "dequantizeBlockwise: the map must be [256]");
  if (n == 0) return Tensor::zeros({0}, map.dtype(), map.device());
  const Tensor values = indexSelect(map, 0, codes.reshape({n}).to(DType::i64));
  const Tensor scaled =
      mul(asBlocks(values, block_size), absmax.reshape({blocks}).to(map.dtype()).unsqueeze(1));
  return scaled.reshape({blocks * block_size}).slice(0, 0, n);
}

}  // namespace lathe::optim
