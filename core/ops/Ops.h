// The op list: every differentiable and non-differentiable tensor op Lathe has, as free
// functions. Each checks its arguments (a lathe::Error naming shapes, dtypes and devices),
// allocates outputs, calls the device's backend (core/backend/Backend.h) and records its
// gradient rule when an input requires grad. Binary ops broadcast like NumPy; both operands
// must share device and dtype (no silent promotion), except where a scalar is taken.
#pragma once

#include <optional>
#include <vector>

#include "core/autograd/Autograd.h"
#include "core/backend/Backend.h"
#include "core/tensor/Tensor.h"

namespace lathe {

// ---- shapes and broadcasting (helpers shared by ops) ----
Shape broadcastShapes(const Shape& a, const Shape& b, const char* op);
// Sums `g` down to `shape` (undoing a broadcast) — the gradient of an expand.
Tensor sumToShape(const Tensor& g, const Shape& shape);
void checkSameDevice(const Tensor& a, const Tensor& b, const char* op);
void checkSameDType(const Tensor& a, const Tensor& b, const char* op);
void checkFloating(const Tensor& a, const char* op);

// ---- elementwise ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor rdiv(double s, const Tensor& a);  // s / a
Tensor pow(const Tensor& a, double exponent);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor square(const Tensor& a);
Tensor sin(const Tensor& a);
Tensor cos(const Tensor& a);
Tensor clamp(const Tensor& a, std::optional<double> lo, std::optional<double> hi);
Tensor relu(const Tensor& a);
Tensor gelu(const Tensor& a, bool tanh_approx = false);
Tensor silu(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor tanh(const Tensor& a);
// cond is bool, broadcast with a and b.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor maskedFill(const Tensor& a, const Tensor& mask, double value);
// Comparisons give bool tensors and are not differentiable.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, double s);
Tensor lt(const Tensor& a, double s);

// ---- reductions (dims may be negative; empty dims = all) ----
Tensor sum(const Tensor& a, const std::vector<int>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& a, const std::vector<int>& dims = {}, bool keepdim = false);
Tensor max(const Tensor& a, const std::vector<int>& dims = {}, bool keepdim = false);
Tensor min(const Tensor& a, const std::vector<int>& dims = {}, bool keepdim = false);
// Variance with `correction` (1 = unbiased).
Tensor var(const Tensor& a, const std::vector<int>& dims = {}, int correction = 1,
           bool keepdim = false);
Tensor argmax(const Tensor& a, int dim, bool keepdim = false);
Tensor argmin(const Tensor& a, int dim, bool keepdim = false);

// ---- shape ops (views where possible; see also Tensor's view methods) ----
Tensor concat(const std::vector<Tensor>& parts, int dim);
std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int dim);
std::vector<Tensor> chunk(const Tensor& a, int chunks, int dim);
Tensor stack(const std::vector<Tensor>& parts, int dim);
Tensor tril(const Tensor& a, int64_t k = 0);
Tensor triu(const Tensor& a, int64_t k = 0);
Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::i64,
              Device device = Device::cpu());

// ---- indexing ----
Tensor indexSelect(const Tensor& a, int dim, const Tensor& index);
Tensor gather(const Tensor& a, int dim, const Tensor& index);
// A copy of a with `src` scattered (or added, with add) at index along dim.
Tensor scatter(const Tensor& a, int dim, const Tensor& index, const Tensor& src, bool add = false);
// weight [V, C], ids i64 [*] -> [*, C]; backward scatter-adds into the rows used.
Tensor embedding(const Tensor& weight, const Tensor& ids);

// ---- linear algebra ----
// [.., M, K] @ [.., K, N] with broadcast batch dims; 1-D operands as in NumPy.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [.., in] @ w[out, in]^T + b[out].
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// ---- convolution and pooling (NCHW) ----
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(),
              const Conv2dParams& p = {});
Tensor maxPool2d(const Tensor& x, int kernel, int stride = -1, int padding = 0);
Tensor avgPool2d(const Tensor& x, int kernel, int stride = -1, int padding = 0);

// ---- activations, normalisation, losses ----
Tensor softmax(const Tensor& a, int dim = -1);
Tensor logSoftmax(const Tensor& a, int dim = -1);
Tensor layerNorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps = 1e-5);
Tensor rmsNorm(const Tensor& x, const Tensor& w, double eps = 1e-6);
// running stats are updated in place in training mode (and never require grad).
Tensor batchNorm(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& running_mean,
                 const Tensor& running_var, bool training, double momentum = 0.1,
                 double eps = 1e-5);
Tensor dropout(const Tensor& a, double p, bool training);
enum class Reduction { mean, sum, none };
// logits [N, C] (or [.., C], flattened), target i64 [N]. Mean is over non-ignored rows.
Tensor crossEntropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                    double label_smoothing = 0.0, Reduction reduction = Reduction::mean);
Tensor mseLoss(const Tensor& a, const Tensor& b, Reduction reduction = Reduction::mean);

// ---- attention ----
// q [B, H, T, D], k/v [B, Hkv, S, D]; key_padding bool [B, S] (true = keep) or undefined.
// Fused: never materialises [T, S] scores for the whole sequence.
Tensor scaledDotProductAttention(const Tensor& q, const Tensor& k, const Tensor& v,
                                 bool causal = false, const Tensor& key_padding = Tensor(),
                                 double scale = 0.0);

// ---- random ----
Tensor randn(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor rand(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor randint(int64_t low, int64_t high, const Shape& shape, Device device = Device::cpu());

// ---- operators ----
inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator+(const Tensor& a, double s) {
  return add(a, s);
}
inline Tensor operator-(const Tensor& a, double s) {
  return sub(a, s);
}
inline Tensor operator*(const Tensor& a, double s) {
  return mul(a, s);
}
inline Tensor operator/(const Tensor& a, double s) {
  return div(a, s);
}
inline Tensor operator*(double s, const Tensor& a) {
  return mul(a, s);
}
inline Tensor operator-(const Tensor& a) {
  return neg(a);
}

}  // namespace lathe
