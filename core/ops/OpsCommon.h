// Internal helpers for op implementations (not part of the public op list).
#pragma once

#include "core/ops/Ops.h"

namespace lathe::detail {

// A broadcast view of t as `shape` that records nothing (kernels read it through strides).
Tensor broadcastView(const Tensor& t, const Shape& shape);
// Allocates an output like `like` (same device) of shape and dtype.
inline Tensor emptyLike(const Tensor& like, const Shape& shape, DType dtype) {
  return Tensor::empty(shape, dtype, like.device());
}
// Normalises a list of dims (negatives, duplicates rejected); empty means all dims.
std::vector<int> normDims(const Tensor& t, const std::vector<int>& dims, const char* op);
// The shape of t with `dims` set to 1 (keepdim form of a reduction).
Shape keepdimShape(const Shape& s, const std::vector<int>& dims);
// A zero scalar of t's dtype and device (for where()).
Tensor zeroScalar(const Tensor& t);
// Throws unless t has one of the floating dtypes.
void requireFloating(const Tensor& t, const char* op, const char* arg);
// Throws unless t is an integer index tensor (i32 or i64) on `device`.
void requireIndex(const Tensor& t, Device device, const char* op, const char* arg);

}  // namespace lathe::detail
