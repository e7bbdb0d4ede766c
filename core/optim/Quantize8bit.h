// Block-wise 8-bit quantization of optimizer states (Dettmers et al. 2022, "8-bit Optimizers via
// Block-wise Quantization"): a tensor is cut into blocks of `block_size` elements (the last one
// may be short), each block is normalised by its absolute maximum and every element is stored
// as the u8 index of the nearest value of a sorted 256-entry quantization map. Built from tensor
// ops (a branchless binary search over the map's midpoints), so it runs on any device.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/Tensor.h"

namespace lathe::optim {

// bitsandbytes' create_dynamic_map(signed, max_exponent_bits = 7, total_bits = 8), sorted:
// dynamic tree quantization, 10^-(6 - i) times the bin means of linspace(0.1, 1) for exponent
// i = 0..6 (2^i means per sign when signed, 2^(i+1) when unsigned), plus 0 and 1. Signed: 256
// values in [-1, 1] (127 negative, 0, 127 positive, 1); unsigned: 256 values in [0, 1].
std::vector<double> dynamicQuantizationMap(bool is_signed);

// codes[i] = the index of the map value nearest to x[i] / absmax[i / block_size] (ties to the
// lower one), absmax[b] = max |x| over block b (0 for an all-zero block, whose codes are those of
// 0). x: 1-D floating; map: [256] sorted, x's dtype and device; codes: u8 like x (written);
// absmax: [ceil(n / block_size)] floating (written).
void quantizeBlockwise(const Tensor& x, const Tensor& map, int64_t block_size, const Tensor& codes,
                       const Tensor& absmax);
// The inverse: map[codes[i]] * absmax[i / block_size], in map's dtype, 1-D of codes' length.
Tensor dequantizeBlockwise(const Tensor& codes, const Tensor& absmax, const Tensor& map,
                           int64_t block_size);

}  // namespace lathe::optim
