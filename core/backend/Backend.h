// The kernel interface every device backend implements (kernels/cpu, kernels/cuda), and the
// registry the executables and test mains fill with one explicit call per backend.
//
// Contract for every entry: the op layer (core/ops) has already checked shapes, dtypes and
// devices and allocated the outputs, so kernels only compute. Unless an entry says otherwise,
// outputs are contiguous and freshly allocated, inputs are contiguous, and all tensors live on
// the backend's device. Entries marked "strided" accept arbitrary strides (0 for broadcast
// dims). An entry a backend does not implement throws lathe::Error naming the kernel and the
// device; no kernel ever falls back to another device silently.
//
// Shape letters: B batch, H heads, T/S query/key length, D head dim, N rows, C channels/classes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor/Tensor.h"

namespace lathe {

// Elementwise ops with one tensor input; `a`, `b` are scalar parameters where noted.
enum class UnaryOp : uint8_t {
  neg,
  exp,
  log,
  sqrt,
  rsqrt,
  abs,
  sign,
  reciprocal,
  square,
  relu,
  gelu,
  gelu_tanh,
  silu,
  sigmoid,
  tanh,
  sin,
  cos,
  add_scalar,   // x + a
  mul_scalar,   // x * a
  rsub_scalar,  // a - x
  rdiv_scalar,  // a / x
  pow_scalar,   // x ^ a
  clamp,        // min(max(x, a), b); a = -inf or b = +inf for one-sided
  affine,       // x * a + b
};

// Elementwise ops with two tensor inputs (broadcast already applied through strides).
// Comparisons produce bool; *_bw ops take (grad_out, saved) and give grad_in.
enum class BinaryOp : uint8_t {
  add,
  sub,
  mul,
  div,
  pow,
  maximum,
  minimum,
  eq,
  ne,
  lt,
  le,
  gt,
  ge,
  relu_bw,       // (g, x): g * (x > 0)
  gelu_bw,       // (g, x): exact-erf GELU derivative
  gelu_tanh_bw,  // (g, x): tanh-approximation derivative
  silu_bw,       // (g, x)
  sigmoid_bw,    // (g, y): g * y * (1 - y)
  tanh_bw,       // (g, y): g * (1 - y^2)
};

enum class ReduceOp : uint8_t { sum, mean, max, min };

struct Conv2dParams {
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int groups = 1;
};

struct Pool2dParams {
  int kernel_h = 2, kernel_w = 2, stride_h = 2, stride_w = 2, pad_h = 0, pad_w = 0;
  bool max = true;  // false: average over the window, padding excluded from the count
};

struct AttentionParams {
  bool causal = false;
  double scale = 0.0;  // 0: 1/sqrt(D)
};

// The counter-based random stream: element i of a draw uses Philox(seed, offset + i), so the
// numbers do not depend on thread count or device.
struct RandomState {
  uint64_t seed = 0;
  uint64_t offset = 0;
};

// Hyper-parameters of one fused optimizer step, with PyTorch's update rules (see the kernels).
struct AdamWStep {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  int64_t step = 1;  // 1-based, for bias correction
};
struct SgdStep {
  double lr = 0.01, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  bool first_step = true;  // momentum buffer starts as the first gradient
};

// A device's memory as its driver reports it; zeros when the backend cannot tell.
struct DeviceMemory {
  int64_t total_bytes = 0;
  int64_t free_bytes = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceType deviceType() const = 0;
  virtual std::string name() const = 0;
  virtual Allocator& allocator(int device_index) = 0;
  virtual int deviceCount() const { return 1; }
  virtual void synchronize(int /*device_index*/) {}
  // The device's model ("NVIDIA H100 80GB HBM3"); the backend's name() when it cannot tell.
  virtual std::string deviceName(int device_index) const;
  // Total and free memory of the device. The CPU backend reports zeros: host RAM is not the
  // backend's to own (run/Estimate reads /proc/meminfo).
  virtual DeviceMemory deviceMemory(int device_index) const;

  // --- memory (strided) ---
  // dst[i] = convert(src[i]); shapes equal; both strided; dtypes may differ; devices may differ
  // only when one side is the host (backends of other devices implement host<->device).
  virtual void copy(const Tensor& src, const Tensor& dst);
  virtual void fill(const Tensor& dst, double value);  // dst strided
  virtual void arange(const Tensor& dst, double start, double step);

  // --- elementwise (inputs strided, output contiguous of the broadcast shape) ---
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b);
  virtual void binary(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out);
  virtual void where(const Tensor& cond, const Tensor& x, const Tensor& y, const Tensor& out);
  // out = triu/tril of x over its last two dims: keeps j - i >= k (upper) or j - i <= k (lower).
  virtual void triangle(const Tensor& x, const Tensor& out, int64_t k, bool upper);

  // --- reductions (x strided; out has x's rank with reduced dims of size 1) ---
  virtual void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims,
                      const Tensor& out);
  // Index (i64) of the max/min along `dim`; out keeps the dim with size 1.
  virtual void argReduce(bool max, const Tensor& x, int dim, const Tensor& out);

  // --- linear algebra ---
  // out[b] = op(a[b]) @ op(b[b]) (+ bias broadcast over rows), 2-D or 3-D (batched, batch dims
  // equal). a is [M,K] (or [K,M] with trans_a), b is [K,N] (or [N,K] with trans_b). `accumulate`
  // adds into out instead of overwriting (used for gradient accumulation).
  virtual void matmul(const Tensor& a, const Tensor& b, const Tensor* bias, const Tensor& out,
                      bool trans_a, bool trans_b, bool accumulate);

  // --- convolution and pooling (NCHW) ---
  virtual void conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                      const Conv2dParams& p);
  virtual void conv2dBackward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor* gx,
                              const Tensor* gw, const Tensor* gbias, const Conv2dParams& p);
  // indices (i64, for max pooling) may be written for the backward.
  virtual void pool2d(const Tensor& x, const Tensor& y, const Tensor* indices,
                      const Pool2dParams& p);
  virtual void pool2dBackward(const Tensor& gy, const Tensor* indices, const Tensor& gx,
                              const Pool2dParams& p);

  // --- normalisation and softmax (over the last dim unless said) ---
  virtual void softmax(const Tensor& x, const Tensor& y, bool log);
  virtual void softmaxBackward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log);
  // x [N, C]; mean, rstd [N] (f32); weight/bias [C] or null.
  virtual void layerNorm(const Tensor& x, const Tensor* w, const Tensor* b, double eps,
                         const Tensor& y, const Tensor& mean, const Tensor& rstd);
  virtual void layerNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                 const Tensor& mean, const Tensor& rstd, const Tensor& gx,
                                 const Tensor* gw, const Tensor* gb);
  virtual void rmsNorm(const Tensor& x, const Tensor* w, double eps, const Tensor& y,
                       const Tensor& rstd);
  virtual void rmsNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                               const Tensor& rstd, const Tensor& gx, const Tensor* gw);
  // x [N, C, *]; per-channel statistics. Training: batch stats saved in save_mean/save_invstd
  // and running stats updated in place with momentum; eval: running stats used.
  virtual void batchNorm(const Tensor& x, const Tensor* w, const Tensor* b,
                         const Tensor* running_mean, const Tensor* running_var, bool training,
                         double momentum, double eps, const Tensor& y, const Tensor& save_mean,
                         const Tensor& save_invstd);
  virtual void batchNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                 const Tensor& save_mean, const Tensor& save_invstd,
                                 const Tensor& gx, const Tensor* gw, const Tensor* gb);

  // --- losses ---
  // logits [N, C], target i64 [N]; loss [N] per row (0 where ignored), lse [N] saved for backward.
  virtual void crossEntropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                            double label_smoothing, const Tensor& loss, const Tensor& lse);
  // grad_loss [N] per row; gx [N, C].
  virtual void crossEntropyBackward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                    const Tensor& grad_loss, int64_t ignore_index,
                                    double label_smoothing, const Tensor& gx);

  // --- indexing ---
  // out[..., i, ...] = x[..., index[i], ...] along dim; index i64 (any shape for embedding:
  // weight [V, C], ids [*] -> out [*, C]). Out-of-range indices throw.
  virtual void indexSelect(const Tensor& x, int dim, const Tensor& index, const Tensor& out);
  // dst[..., index[i], ...] += src[..., i, ...] along dim (dst is not cleared first).
  virtual void indexAdd(const Tensor& dst, int dim, const Tensor& index, const Tensor& src);
  // out[i][j][k] = x[i][index[i][j][k]][k] for dim = 1 (torch.gather semantics).
  virtual void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out);
  // dst[i][index[i][j][k]][k] (+)= src[i][j][k] (torch.scatter / scatter_add semantics).
  virtual void scatter(const Tensor& dst, int dim, const Tensor& index, const Tensor& src,
                       bool add);

  // --- random (counter-based; see RandomState) ---
  virtual void randomUniform(const Tensor& out, RandomState rs, double low, double high);
  virtual void randomNormal(const Tensor& out, RandomState rs, double mean, double std);
  // out = x * mask / (1 - p), mask (u8) drawn from rs: keep where uniform >= p.
  virtual void dropout(const Tensor& x, double p, RandomState rs, const Tensor& out,
                       const Tensor& mask);

  // --- fused optimizer steps over flat buffers (param, grad, states: same numel) ---
  // AdamW (decoupled decay): p -= lr*wd*p; m, v updated; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) +
  // eps). param f32/f64/bf16/f16 (low-precision params update through f32 math), grad same dtype as
  // param, m and v f32 (f64 for f64 params).
  virtual void adamwStep(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                         const AdamWStep& s);
  // SGD with momentum/Nesterov and L2 weight decay as torch.optim.SGD; buf may be undefined when
  // momentum == 0.
  virtual void sgdStep(const Tensor& param, const Tensor& grad, const Tensor& buf,
                       const SgdStep& s);
  // AdamW (same rule and order as adamwStep) with block-wise 8-bit moments (core/optim/
  // Quantize8bit.h): per block of `block_size` elements, m = signed_map[qm] * am and v =
  // unsigned_map[qv] * av are dequantized, updated with grad, the parameter stepped, and m, v
  // requantized: new absmax per block, each code the index of the nearest map value to x / absmax
  // (ties to the lower index; all-zero blocks get absmax 0 and the code of 0). param, grad [n]
  // (f32/f64/bf16/f16, one dtype); qm, qv u8 [n]; am, av [ceil(n / block_size)] and the maps [256]
  // in the state dtype (f32, f64 for f64 params). All updated in place.
  virtual void adamw8bitStep(const Tensor& param, const Tensor& grad, const Tensor& qm,
                             const Tensor& am, const Tensor& qv, const Tensor& av,
                             const Tensor& signed_map, const Tensor& unsigned_map,
                             int64_t block_size, const AdamWStep& s);

  // --- fp8 GEMMs with delayed per-tensor scaling (core/ops/Fp8.h) ---
  // scale = s and scale_inv = 1/s (f32 [1] each, separate allocations: cuBLASLt wants aligned
  // scale pointers) with s = fp8_max / amax / 2^margin, amax the largest finite value of
  // amax_history (f32 [H]); 1 and 1 when the history holds no positive finite value.
  virtual void fp8Scale(const Tensor& amax_history, double fp8_max, int margin, const Tensor& scale,
                        const Tensor& scale_inv);
  // x [R, C] contiguous (f32/bf16/f16): q = fp8(x * scale) and/or its transpose q_t [C, R], in
  // their fp8 dtype (f8e4m3 or f8e5m2; round to nearest even, saturating to the largest finite
  // value); either may be undefined. amax (f32 [1]) = max |x| (NaN when x holds a NaN).
  virtual void quantizeFp8(const Tensor& x, const Tensor& scale, const Tensor& q, const Tensor& q_t,
                           const Tensor& amax);
  // out [M, N] = a_scale_inv * b_scale_inv * (a [M, K] @ b [N, K]^T) (+ bias [N]): the one layout
  // fp8 tensor cores take (both operands K-major). a, b fp8, not both e5m2; scale_invs f32 [1]
  // (device memory); out bf16 or f32 with bias in out's dtype; products accumulate in f32.
  virtual void matmulFp8(const Tensor& a, const Tensor& b, const Tensor& a_scale_inv,
                         const Tensor& b_scale_inv, const Tensor* bias, const Tensor& out);

  // --- attention: q [B, H, T, D], k/v [B, Hkv, S, D] (H a multiple of Hkv) ---
  // key_padding (bool [B, S], true = attend) may be null. out [B, H, T, D], lse (f32) [B, H, T].
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                         const Tensor& lse);
  virtual void attentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor* key_padding, const AttentionParams& p,
                                 const Tensor& out, const Tensor& lse, const Tensor& gout,
                                 const Tensor& gq, const Tensor& gk, const Tensor& gv);

 protected:
  [[noreturn]] void missing(const char* kernel) const;
};

// The backend for a device type. Throws, naming the device, when none is registered.
Backend& backendFor(DeviceType type);
inline Backend& backendFor(const Tensor& t) {
  return backendFor(t.device().type);
}
Allocator& allocatorFor(Device device);
bool hasBackend(DeviceType type);
// Registers (or replaces) the backend for its device type; the object must outlive its use.
void registerBackend(Backend* backend);

// Temporarily routes a device type to another backend (tests: reference vs fast path).
class ScopedBackend {
 public:
  explicit ScopedBackend(Backend* backend);
  ~ScopedBackend();
  ScopedBackend(const ScopedBackend&) = delete;
  ScopedBackend& operator=(const ScopedBackend&) = delete;

 private:
  DeviceType type_;
  Backend* previous_;
};

}  // namespace lathe
