// Optimizers over flat parameter buffers (llm.c's layout): the model's trainable parameters are
// flattened into a ParameterBuffer partitioned into decayed and non-decayed groups, and a step
// is one fused backend kernel call (adamwStep / sgdStep) per group, on any device. State tensors
// (m, v, momentum) are flat too, one per group, tagged MemoryTag::optimizer_state, f32 (f64 for
// f64 parameters), on the group's device; checkpoints address them per parameter by name.
#pragma once

#include <cstdint>
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

class Optimizer {
 public:
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual std::string name() const = 0;  // "sgd", "adamw"

  // One update of every trainable parameter at lr() from the gradients in buffer(). Throws
  // when the model changed since the optimizer was built (see ParameterBuffer::attached) or a
  // parameter's .grad left the flat buffer (Module::zeroGrad(true): use buffer().zeroGrad()).
  void step();
  // The base learning rate of the next step (the trainer sets it from an LrSchedule first).
  double lr() const { return lr_; }
  void setLr(double lr);                             // finite and >= 0
  int64_t stepCount() const { return step_count_; }  // completed steps
  // Bytes of optimizer state (m, v, momentum buffers), the flat groups' padding included.
  int64_t stateBytes() const;

  // Checkpointing: "step" and "lr" as 0-d f64 tensors, then per trainable parameter and state
  // "<param name>.<state>" (PyTorch's names: exp_avg, exp_avg_sq, momentum_buffer), each a view
  // of the flat state with the parameter's shape. Values round-trip bit-exactly.
  NamedTensors stateDict() const;
  // Copies values in (converting dtype and device). Strict: a missing or unexpected key, a
  // shape mismatch or a bad scalar throws lathe::Error naming every offending key, and nothing
  // is changed then.
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
  // Flattens `model`'s parameters by `decay`; `states` names the flat state tensors each
  // trainable group keeps (allocated zeroed). `who` prefixes error messages ("makeAdamW").
  Optimizer(Module& model, const char* who, double lr, DecayRule decay,
            std::vector<std::string> states);
  // Updates one trainable group; `state` holds the group's tensors in the order of `states`,
  // `step` is 1-based (this step's number).
  virtual void stepGroup(const ParameterBuffer::Group& group, bool decayed,
                         const std::vector<Tensor>& state, int64_t step) = 0;

 private:
  // Matches `state` against `mine` (this->stateDict()) key by key; throws listing every
  // problem, else returns for each of mine's entries the tensor that loads into it.
  std::vector<const Tensor*> matchStateDict(const NamedTensors& state,
                                            const NamedTensors& mine) const;

  ParameterBuffer buffer_;
  std::vector<std::string> state_names_;
  std::vector<std::vector<Tensor>> state_;        // per buffer group; empty for frozen groups
  std::vector<std::pair<size_t, size_t>> order_;  // (group, slot) in registration order
  double lr_;
  int64_t step_count_ = 0;
};

// Built over the module: flattens its parameters into a ParameterBuffer grouped so decayed and
// non-decayed parameters are separate flat groups (one fused kernel call per group per step).
// The module's parameters become views of the buffer (flatten after model surgery and to());
// invalid options or a model without trainable parameters throw, naming the option and value.
std::unique_ptr<Optimizer> makeSgd(Module& model, const SgdOptions& o);
std::unique_ptr<Optimizer> makeAdamW(Module& model, const AdamWOptions& o);

// Global L2 norm of all trainable gradients, accumulated in f64 (in bounded chunks on the
// gradients' device).
double gradNorm(const ParameterBuffer& buffer);
// As torch.nn.utils.clip_grad_norm_ (eps 1e-6): when max_norm / (norm + 1e-6) < 1 the gradients
// are scaled in place by that factor. Returns the norm before clipping; a non-finite norm is
// returned as is, without scaling. max_norm must be positive.
double clipGradNorm(ParameterBuffer& buffer, double max_norm);

}  // namespace lathe::optim
