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

// A tensor saved for backward with the version it had when saved.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, const char* what);  // stores a detached alias
  // Returns the tensor; throws if it was modified in place since it was saved.
  const Tensor& get() const;
  bool defined() const { return tensor_.defined(); }
  void reset() { tensor_ = Tensor(); }

 private:
  Tensor tensor_;
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

// Activation checkpointing: runs fn without recording, keeps only the inputs, and re-runs fn
// with recording during backward. The random stream is rewound so dropout masks repeat.
std::vector<Tensor> checkpoint(
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
    const std::vector<Tensor>& inputs);

}  // namespace lathe
