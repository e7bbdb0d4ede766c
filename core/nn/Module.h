// Module: the building block of models, with named parameters, buffers and children kept in
// registration order, addressed by dotted names ("blocks.3.mlp.fc1.weight"). Invariant: a
// registered parameter or buffer keeps its TensorImpl for the module's lifetime; to(), load and
// ParameterBuffer re-point that impl at new memory (rebindTensor), so handles held elsewhere
// (layers' members, optimizers) stay valid. Children are called through the registry, so
// replaceChild() (how LoRA, fake-quant, pruning masks are injected) takes effect in forward.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/Tensor.h"

namespace lathe {

// Where and how a module's parameters are created.
struct ModuleOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  // false: parameters are allocated but not initialised (they are about to be loaded).
  bool initialize = true;
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Activation checkpointing of a block (see checkpoint() in core/autograd/Autograd.h):
//   none       every activation the backward needs is kept
//   full       only the block's input is kept; the whole block is re-run in backward
//   selective  matmul/conv/attention outputs are kept; the cheap ops that feed the next matmul
//              (norms, activations, layout copies) are re-run from them in backward
enum class CheckpointMode { none, full, selective };
const char* checkpointModeName(CheckpointMode m);
// "none" | "full" | "selective"; throws naming `what` otherwise.
CheckpointMode parseCheckpointMode(const std::string& name, const std::string& what);

// Makes `target` view `source`'s memory (storage, shape, strides, offset, dtype) while keeping
// target's identity, autograd leaf state, hooks and requires_grad. Shapes must match.
void rebindTensor(const Tensor& target, const Tensor& source);

class Module {
 public:
  explicit Module(std::string type_name);
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The single-tensor forward; modules without one throw, naming their type.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  const std::string& typeName() const { return type_name_; }
  // The module's configuration for summaries, e.g. "in=768, out=3072, bias".
  virtual std::string configString() const { return ""; }

  // --- registration (names are unique per module and contain no '.') ---
  // Registers a parameter (floating dtype), tags its memory as MemoryTag::parameters and sets
  // requires_grad; returns the handle the module keeps.
  Tensor registerParameter(const std::string& name, const Tensor& value, bool requires_grad = true);
  // Registers a buffer (model state that is not trained: running statistics, RoPE tables).
  // Persistent buffers are part of stateDict(); all are moved by to(). Tagged as parameters.
  Tensor registerBuffer(const std::string& name, const Tensor& value, bool persistent = true);
  // Registers a child and returns its slot, which child(slot) resolves at call time.
  size_t registerModule(const std::string& name, std::shared_ptr<Module> module);

  // --- access ---
  Module& child(size_t slot) const;
  // The child in `slot` as M; throws naming the child when it was replaced by another type.
  template <class M>
  M& childAs(size_t slot) const {
    auto* m = dynamic_cast<M*>(&child(slot));
    if (m == nullptr) failChildType(slot);
    return *m;
  }
  // The descendant at a dotted path ("" is this module); throws naming the missing part.
  std::shared_ptr<Module> find(const std::string& path) const;
  // Replaces the descendant at a dotted path; throws when the path does not exist.
  void replaceChild(const std::string& path, std::shared_ptr<Module> module);
  Tensor parameter(const std::string& dotted_name) const;  // throws when absent
  Tensor buffer(const std::string& dotted_name) const;     // throws when absent

  // Parameters of this module and its descendants, each tensor once (a tensor registered
  // under two names, e.g. tied weights, keeps its first name), in registration order.
  NamedTensors namedParameters() const;
  std::vector<Tensor> parameters() const;
  NamedTensors namedBuffers(bool persistent_only = false) const;
  // (dotted path, module) for this module ("") and every descendant, depth first.
  std::vector<std::pair<std::string, Module*>> namedModules();
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }

  // --- state ---
  // Parameters and persistent buffers by dotted name (per module: parameters, buffers, then
  // children, as PyTorch orders them); a tied tensor appears once, under its first name.
  NamedTensors stateDict() const;
  // Copies values in (converting dtype and device). Any key may name any alias of a tied
  // tensor. Strict: missing or unexpected keys are an error; a shape mismatch always is. The
  // error lists every problem, and nothing is changed when it is thrown.
  void loadStateDict(const NamedTensors& state, bool strict = true);
  // The validation half of loadStateDict on (name, shape) pairs: throws the same error, else
  // returns for each key the tensor it loads into (undefined where a non-strict load skips
  // it). Lets a file loader stream tensors one at a time.
  std::vector<Tensor> checkStateDict(const std::vector<std::pair<std::string, Shape>>& keys,
                                     bool strict = true) const;

  void train(bool on = true);
  void eval() { train(false); }
  bool isTraining() const { return training_; }

  // Moves parameters and buffers (and existing gradients) in place; floating tensors get
  // `dtype`, integer ones keep theirs. Parameters stay leaves requiring grad. Parameters that
  // viewed a ParameterBuffer get storage of their own when they move: flatten again after.
  void to(Device device, DType dtype);
  void to(Device device);
  void to(DType dtype);

  // Number of parameter elements (each tensor once); trainable = requires grad.
  int64_t numParameters(bool trainable_only = false) const;
  // Fills existing gradients with 0 in place (gradient views into a ParameterBuffer stay
  // attached); with set_to_none, drops them instead (PyTorch's default).
  void zeroGrad(bool set_to_none = false);
  // Freezes (false) or unfreezes (true) every parameter of this module and its descendants.
  void setRequiresGrad(bool on);

  // An indented tree of modules with their configuration and parameter counts.
  std::string summary() const;

 protected:
  bool training_ = true;

 private:
  struct Buffer {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  void checkNewName(const std::string& name, const char* what) const;
  [[noreturn]] void failChildType(size_t slot) const;
  // Visits (dotted name, tensor) of every parameter or buffer, duplicates included.
  void visitTensors(const std::string& prefix, bool params, bool buffers, bool persistent_only,
                    const std::function<void(const std::string&, const Tensor&)>& fn) const;
  void summaryInto(std::string& out, const std::string& name, int depth) const;
  // Applies fn to every parameter and buffer (each tensor once).
  void moveTensors(const std::function<Tensor(const Tensor&)>& convert);

  std::string type_name_;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<Buffer> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace lathe
