// Autocast: mixed-precision forward passes with f32 master weights (DESIGN.md, precision
// methods). Inside an AutocastGuard(bf16 or f16) on this thread:
//   low ops    matmul, linear, conv2d and scaled dot-product attention run in the autocast dtype;
//              their f32 operands are cast with the differentiable Tensor::to, so gradients flow
//              back to the f32 parameters in f32.
//   f32 ops    softmax, log-softmax, layer / RMS / batch norm, cross-entropy, MSE, sum and mean
//              cast f16/bf16 inputs up to f32 (range and accumulation precision).
//   promoted   add, sub, mul and div with one f32 and one f16/bf16 operand run in f32 (the
//              residual stream stays f32 while the branches run low).
// Every other op runs in its inputs' dtype. f64 tensors are never cast (gradchecks stay exact),
// and outside a guard nothing changes: dtypes must match as everywhere else. Like PyTorch's
// autocast it is thread-local and nests (the innermost guard wins; AutocastGuard(f32) turns it
// off inside a region).
#pragma once

#include <optional>
#include <utility>

#include "core/tensor/Tensor.h"

namespace lathe {

class AutocastGuard {
 public:
  // dtype: bf16 or f16 enables autocast, f32 disables it; anything else throws.
  explicit AutocastGuard(DType dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  std::optional<DType> previous_;
};

// The active autocast dtype on this thread, if any.
std::optional<DType> autocastDType();

namespace autocast {

// For low ops: t cast to the autocast dtype when autocast is on and t is f32; else t itself
// (undefined tensors pass through).
Tensor low(const Tensor& t);
// True when low() would cast any of the defined operands.
bool wantsLow(const Tensor& a, const Tensor& b = Tensor(), const Tensor& c = Tensor());
// For f32 ops: t cast to f32 when autocast is on and t is f16/bf16; else t itself.
Tensor f32(const Tensor& t);
bool wantsF32(const Tensor& a, const Tensor& b = Tensor());
// For promoted ops: when autocast is on and one operand is f32 and the other f16/bf16, both
// in f32; nullopt otherwise.
std::optional<std::pair<Tensor, Tensor>> promote(const Tensor& a, const Tensor& b);

}  // namespace autocast
}  // namespace lathe
