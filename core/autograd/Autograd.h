// Define-by-run autograd. An op whose inputs require grad records a Node holding its backward
// function and edges to the nodes of its inputs; Tensor::backward() walks the graph in reverse
// topological order and accumulates into leaves' .grad. Saved tensors remember the storage
// version at save time: if an in-place op changed one before backward, backward throws rather
// than compute a wrong gradient. Gradient code runs with grad mode off (no higher-order grads).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/Tensor.h"

namespace lathe {

struct Edge {
  std::shared_ptr<Node> node;  // null: the input needs no gradient
  int input_nr = 0;
};

class Node {
 public:
  virtual ~Node() = default;
  // Gradients w.r.t. each input (undefined Tensor where none flows), given output gradients
  // (undefined where an output received none).
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) = 0;
  virtual std::string name() const = 0;
  virtual void release() {}  // frees saved tensors after a backward without retain_graph
  int numOutputs() const { return num_outputs_; }

  std::vector<Edge> next;  // one per differentiable input
  int num_outputs_ = 1;
};

// Is gradient recording on for this thread? NoGradGuard turns it off for a scope.
bool gradEnabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

namespace detail {
struct SavedHandle;  // a saved tensor that activation checkpointing recomputes on demand
}

// A tensor saved for backward with the version it had when saved. Inside a checkpoint() region
// (or when it is a recomputable output of one) it holds a handle instead, and get()
// recomputes the region the first time backward asks.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, const char* what);  // stores a detached alias or a handle
  // Returns the tensor; throws if it was modified in place since it was saved.
  const Tensor& get() const;
  bool defined() const { return tensor_.defined() || handle_ != nullptr; }
  void reset() {
    tensor_ = Tensor();
    handle_.reset();
  }

 private:
  Tensor tensor_;
  std::shared_ptr<detail::SavedHandle> handle_;
  uint64_t version_ = 0;
  const char* what_ = "";
};

using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

// The node most ops record: a name and a backward closure.
class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) override;
  std::string name() const override { return name_; }
  void release() override { fn_ = nullptr; }

 private:
  std::string name_;
  BackwardFn fn_;
};

// True if grad mode is on and any input requires grad.
bool needsGrad(std::initializer_list<const Tensor*> inputs);
bool needsGrad(const std::vector<Tensor>& inputs);

// Connects `outputs` to a new node computing input gradients with `fn`. Call only when
// needsGrad(inputs); inputs that do not require grad get null edges (their gradient is
// ignored). Returns the node.
std::shared_ptr<Node> record(const std::string& name, const std::vector<Tensor>& inputs,
                             const std::vector<Tensor*>& outputs, BackwardFn fn);
// Single-output convenience: records when needed and returns `out`.
Tensor recordUnary(const std::string& name, const std::vector<Tensor>& inputs, Tensor out,
                   BackwardFn fn);

// Runs backward from roots with the given gradients (same shapes).
void runBackward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                 bool retain_graph);

// Computes and returns d(outputs)/d(inputs) without touching .grad (used by checkpointing and
// gradcheck).
std::vector<Tensor> grad(const std::vector<Tensor>& outputs,
                         const std::vector<Tensor>& grad_outputs, const std::vector<Tensor>& inputs,
                         bool retain_graph = false);

// ---- Activation checkpointing ----
// checkpoint(fn, inputs) runs fn with its graph recorded as usual, but every tensor an op inside
// fn saves for backward is dropped and replaced by a handle; only `inputs` are kept. The first
// time backward needs one of the handles, fn is run again from the kept inputs (grad on, the
// random stream rewound to where the forward drew, the forward's autocast state, allocations
// tagged MemoryTag::activations) and the tensors it saves fill the handles in order. Gradients
// then flow through the original graph, so they reach the inputs, the parameters fn uses and
// everything upstream exactly as without checkpointing (bit-identical with deterministic
// kernels), under backward() and grad() alike. Regions nest (an inner region's inputs are
// saved tensors of the outer one). Inputs may be undefined or not require grad; fn may return
// several tensors. fn must be deterministic given its inputs and the random stream and must not
// change the state it reads between forward and backward (parameters, training flag): the
// recomputation is checked to save tensors of the same shapes in the same order. With grad
// mode off fn simply runs.
using CheckpointFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
struct CheckpointOptions {
  // Selective checkpointing: the outputs are recomputable too. An op outside the region that
  // later saves an output (or a view of it) stores a handle, and backward re-runs fn (from
  // its kept inputs) instead of keeping the output. For cheap functions (norms, activations,
  // copies) whose outputs feed matmuls that would otherwise keep them alive.
  bool recompute_outputs = false;
};
std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs,
                               const CheckpointOptions& options = {});
// Single input and output, recomputable outputs: checkpoint({fn(x)}, {x}, {true})[0].
Tensor recomputable(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x);
// True on this thread while a checkpointed function is re-run for backward: modules skip side
// effects there (BatchNorm does not update its running statistics a second time).
bool isRecomputing();

}  // namespace lathe
