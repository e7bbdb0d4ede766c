// Optimizers over flat parameter buffers (llm.c's layout): the model's trainable parameters are
// flattened into a ParameterBuffer partitioned into decayed and non-decayed groups, and a step
// is one fused backend kernel call (adamwStep / sgdStep) per group, or a short chain of tensor
// ops over the flat group (Lion, Sophia) or over each parameter's view of it (Adafactor, 8-bit
// AdamW), on any device. State tensors (m, v, momentum, factored or quantized moments) are flat
// too, one per group and state name, tagged MemoryTag::optimizer_state, f32 (f64 for f64
// parameters) unless quantized, on the group's device; checkpoints address them per parameter.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/nn/Module.h"
#include "core/nn/ParameterBuffer.h"

namespace lathe::optim {

// Which parameters get weight decay. matricesOnly (the PyTorch/nanoGPT convention, extended):
// no decay for biases and norm weights (any parameter with dim < 2) and for Embedding tables
// (tensors some Embedding module owns, tied ones included); every other parameter is decayed.
enum class DecayRule { all, matricesOnly /* default */ };

// torch.optim.SGD: L2 weight decay added to the gradient, momentum buffer starting as the first
// gradient, Nesterov needing momentum > 0 and dampening 0.
struct SgdOptions {
  double lr = 0.01, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  DecayRule decay = DecayRule::matricesOnly;
};
// torch.optim.AdamW: decoupled weight decay (p *= 1 - lr * wd), bias-corrected moments.
struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  DecayRule decay = DecayRule::matricesOnly;
};

// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): the update is the
// sign of an interpolation of momentum and gradient, c = b1 m + (1 - b1) g,
// p = p (1 - lr wd) - lr sign(c), then m = b2 m + (1 - b2) g. One f32 state (exp_avg).
struct LionOptions {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.99, weight_decay = 0.0;
  DecayRule decay = DecayRule::matricesOnly;
};

// Sophia (Liu et al. 2023): m = b1 m + (1 - b1) g; every `hessian_every` steps (steps 1, k+1,
// 2k+1, ...) a diagonal Hessian estimate h_hat updates h = b2 h + (1 - b2) h_hat; then
// p = p (1 - lr wd) - lr clip(m / max(gamma h, eps), 1), clip to [-1, 1] per coordinate.
// Estimators: Gauss-Newton-Bartlett (Sophia-G): h_hat = B g_s * g_s, g_s the gradient of the
// mean loss over B terms against labels sampled from the model's own output distribution;
// Hutchinson (Sophia-H): h_hat = u * (H u) for a Rademacher u. Lathe's autograd has no double
// backward, so H u is the finite difference (grad(p + fd_eps u) - grad(p)) / fd_eps on one
// batch (forward differences: O(fd_eps) truncation error, f32 rounding of about 1e-7 |g| /
// fd_eps). Two f32 states (exp_avg, hessian). Without estimates (h = 0) the step is
// lr sign(m), as in the paper's clipping.
enum class HessianEstimator { gaussNewtonBartlett, hutchinson };
struct SophiaOptions {
  double lr = 1e-4, beta1 = 0.96, beta2 = 0.99, gamma = 0.01, eps = 1e-12;
  double weight_decay = 0.1;
  int64_t hessian_every = 10;  // k
  HessianEstimator estimator = HessianEstimator::gaussNewtonBartlett;
  double fd_eps = 1e-3;  // Hutchinson: finite-difference step along u
  DecayRule decay = DecayRule::matricesOnly;
};

// Adafactor (Shazeer & Stern 2018) with the formulas of Hugging Face transformers'
// optimization.Adafactor: b2_t = 1 - t^decay_rate; for parameters of dim >= 2 the second moment
// of g^2 + eps1 is factored into row means (shape[:-1]) and column means (shape[:-2] + [C]),
// v_hat = row col / mean(row); 1-D parameters keep a full v. u = g / sqrt(v_hat), clipped to
// u / max(1, RMS(u) / clip_threshold). Step size: lr, or with relative_step min(1e-2, 1/sqrt t)
// (min(1e-6 t, 1/sqrt t) with warmup_init), times max(eps2, RMS(p)) when scale_parameter.
// Optional first moment (beta1 > 0) on the scaled update; decoupled weight decay
// p -= wd * step_size * p. States: exp_avg_sq_row / exp_avg_sq_col or exp_avg_sq, and exp_avg.
struct AdafactorOptions {
  double lr = 1e-3;
  bool relative_step = false, scale_parameter = false, warmup_init = false;
  double beta1 = 0.0;  // 0: no first moment (Adafactor's default)
  double decay_rate = -0.8, clip_threshold = 1.0, eps1 = 1e-30, eps2 = 1e-3;
  double weight_decay = 0.0;
  DecayRule decay = DecayRule::matricesOnly;
};

// AdamW with 8-bit block-wise quantized moments (Dettmers et al. 2022, "8-bit Optimizers via
// Block-wise Quantization"): each parameter's m and v are stored as u8 codes of a dynamic
// quantization map (signed for m, unsigned for v, bitsandbytes' create_dynamic_map) with one
// f32 absmax per block of block_size (2048 or 256) elements. A step dequantizes, applies the
// torch.optim.AdamW update in f32 (master weights stay in the parameters' dtype), and
// requantizes with round-to-nearest. Parameters with fewer than min_8bit_size elements keep f32
// moments (bitsandbytes' min_8bit_size). States: exp_avg, exp_avg_sq (u8 or f32) and
// exp_avg_absmax, exp_avg_sq_absmax.
struct AdamW8bitOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  int64_t block_size = 2048;     // 2048 or 256
  int64_t min_8bit_size = 4096;  // smaller parameters keep f32 states
  DecayRule decay = DecayRule::matricesOnly;
};

// Curvature estimates for second-order optimizers (Sophia). Before each step the training loop
// asks curvatureWanted(); when it is not `none` it calls estimateCurvature(pass) on that step's
// first batch, then zeroes the gradients and runs the step as usual.
enum class CurvatureLoss {
  none,
  sampledLabels,  // the loss against labels sampled from the model's output (Gauss-Newton-Bartlett)
  taskLoss,       // the training loss itself (Hessian-vector products)
};
// Zeroes the flat gradients, runs forward and backward of the requested loss on one fixed batch
// at the parameters' current values, leaves the gradient in the optimizer's buffer and returns
// the number of terms the loss averages (examples, or tokens for a language model). An
// estimator may call it several times, changing parameters in between and restoring them.
using GradientPass = std::function<int64_t()>;

class Optimizer {
 public:
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual std::string name() const = 0;  // "sgd", "adamw", "lion", "sophia", ...

  // One update of every trainable parameter at lr() from the gradients in buffer(). Throws
  // when the model changed since the optimizer was built (see ParameterBuffer::attached) or a
  // parameter's .grad left the flat buffer (Module::zeroGrad(true): use buffer().zeroGrad()).
  void step();
  // The base learning rate of the next step (the trainer sets it from an LrSchedule first).
  double lr() const { return lr_; }
  void setLr(double lr);                             // finite and >= 0
  int64_t stepCount() const { return step_count_; }  // completed steps
  // Bytes of optimizer state (m, v, momentum buffers, quantization maps), the flat groups'
  // padding included: what the allocator counts under MemoryTag::optimizer_state.
  virtual int64_t stateBytes() const;

  // What the next step's curvature estimate needs (see CurvatureLoss); `none` by default.
  virtual CurvatureLoss curvatureWanted() const { return CurvatureLoss::none; }
  // Updates the curvature state from `pass` (called when curvatureWanted() is not `none`).
  virtual void estimateCurvature(const GradientPass& pass);

  // Checkpointing: "step" and "lr" as 0-d f64 tensors, then per trainable parameter and state
  // "<param name>.<state>" (PyTorch's names: exp_avg, exp_avg_sq, momentum_buffer, ...), each a
  // view of the flat state (shaped like the parameter for element-wise states). Values
  // round-trip bit-exactly.
  NamedTensors stateDict() const;
  // Copies values in (converting dtype and device). Strict: a missing or unexpected key, a
  // shape mismatch, a non-float dtype mismatch (quantized states) or a bad scalar throws
  // lathe::Error naming every offending key, and nothing is changed then.
  void loadStateDict(const NamedTensors& state);
  // The validation half of loadStateDict: throws the same error, changes nothing (lets a
  // checkpoint loader check model and optimizer state before changing either).
  void checkStateDict(const NamedTensors& state) const;

  // The flat parameters and gradients (zeroGrad, gradient norms, all-reduce). Groups with
  // partition kDecayed get the weight decay, kNotDecayed ones do not.
  ParameterBuffer& buffer() { return buffer_; }
  const ParameterBuffer& buffer() const { return buffer_; }
  static constexpr int kNotDecayed = 0, kDecayed = 1;

 protected:
  // One state tensor a parameter keeps: checkpoint suffix, shape, dtype.
  struct ParamState {
    std::string name;
    Shape shape;
    DType dtype = DType::f32;
  };
  // The states of one trainable parameter (by name and value), for per-parameter layouts.
  using StateLayout =
      std::function<std::vector<ParamState>(const std::string& name, const Tensor& param)>;

  // Flattens `model`'s parameters by `decay`; `states` names the element-wise state tensors
  // each trainable group keeps: each as long as the group's flat buffer (padding included), in
  // stateDtype, allocated zeroed. `who` prefixes error messages ("makeAdamW").
  Optimizer(Module& model, const char* who, double lr, DecayRule decay,
            std::vector<std::string> states);
  // Per-parameter states: `layout` lists each trainable parameter's tensors; per group, the
  // tensors of one (name, dtype) are packed back to back in one flat, zeroed tensor.
  Optimizer(Module& model, const char* who, double lr, DecayRule decay, const StateLayout& layout);

  // Updates one trainable group; `state` holds the group's flat tensors (element-wise layout:
  // in the order of `states`; per-parameter layout: in order of first appearance), `step` is
  // 1-based (this step's number).
  virtual void stepGroup(const ParameterBuffer::Group& group, bool decayed,
                         const std::vector<Tensor>& state, int64_t step) = 0;

  // The state dtype of a parameter dtype: f64 for f64, f32 otherwise.
  static DType stateDtype(DType param) { return param == DType::f64 ? DType::f64 : DType::f32; }
  // The flat state tensors of buffer().groups()[group] (empty for frozen groups).
  const std::vector<Tensor>& groupState(size_t group) const { return state_[group]; }
  // Parameter `slot` of `group` (one of buffer().groups()): its state views, in the layout's
  // order, and their names.
  const std::vector<Tensor>& paramState(const ParameterBuffer::Group& group, size_t slot) const;
  const std::vector<std::string>& paramStateNames(const ParameterBuffer::Group& group,
                                                  size_t slot) const;

 private:
  struct SlotState {
    std::vector<std::string> names;
    std::vector<Tensor> views;
  };
  size_t groupIndex(const ParameterBuffer::Group& group) const;
  void orderSlots(Module& model);

  // Matches `state` against `mine` (this->stateDict()) key by key; throws listing every
  // problem, else returns for each of mine's entries the tensor that loads into it.
  std::vector<const Tensor*> matchStateDict(const NamedTensors& state,
                                            const NamedTensors& mine) const;

  ParameterBuffer buffer_;
  std::vector<std::string> state_names_;    // the union of the parameters' state names, for errors
  std::vector<std::vector<Tensor>> state_;  // per buffer group; empty for frozen groups
  std::vector<std::vector<SlotState>> slot_state_;  // per buffer group, per slot
  std::vector<std::pair<size_t, size_t>> order_;    // (group, slot) in registration order
  double lr_;
  int64_t step_count_ = 0;
};

// Built over the module: flattens its parameters into a ParameterBuffer grouped so decayed and
// non-decayed parameters are separate flat groups (one fused kernel call per group per step).
// The module's parameters become views of the buffer (flatten after model surgery and to());
// invalid options or a model without trainable parameters throw, naming the option and value.
std::unique_ptr<Optimizer> makeSgd(Module& model, const SgdOptions& o);
std::unique_ptr<Optimizer> makeAdamW(Module& model, const AdamWOptions& o);
std::unique_ptr<Optimizer> makeLion(Module& model, const LionOptions& o);
std::unique_ptr<Optimizer> makeSophia(Module& model, const SophiaOptions& o);
std::unique_ptr<Optimizer> makeAdafactor(Module& model, const AdafactorOptions& o);
std::unique_ptr<Optimizer> makeAdamW8bit(Module& model, const AdamW8bitOptions& o);

// A Rademacher tensor (+1 / -1 with probability 1/2 each) from the global random stream: the
// probe vector of Sophia-H's Hutchinson estimator, one draw of shape [n] per trainable group in
// group order.
Tensor rademacher(int64_t n, DType dtype, Device device);

// Global L2 norm of all trainable gradients, accumulated in f64 (in bounded chunks on the
// gradients' device).
double gradNorm(const ParameterBuffer& buffer);
// As torch.nn.utils.clip_grad_norm_ (eps 1e-6): when max_norm / (norm + 1e-6) < 1 the gradients
// are scaled in place by that factor. Returns the norm before clipping; a non-finite norm is
// returned as is, without scaling. max_norm must be positive.
double clipGradNorm(ParameterBuffer& buffer, double max_norm);
// Multiplies every trainable gradient by `factor` in place (loss-scale unscaling, clipping).
void scaleGrads(ParameterBuffer& buffer, double factor);

}  // namespace lathe::optim
