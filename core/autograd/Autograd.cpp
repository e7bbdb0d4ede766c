#include "core/autograd/Autograd.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "core/ops/Ops.h"
#include "core/tensor/Random.h"

namespace lathe {
namespace {

thread_local bool tls_grad_enabled = true;

// Accumulates into a leaf's .grad after running its hooks. Holds the leaf weakly, so a
// dropped parameter is not kept alive by a graph.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf) : leaf_(leaf) {}
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override {
    auto impl = leaf_.lock();
    if (!impl || !grads[0].defined()) return {};
    Tensor leaf(impl);
    Tensor g = grads[0];
    for (auto& hook : impl->hooks) {
      Tensor r = hook(g);
      if (r.defined()) g = r;
    }
    LATHE_CHECK(g.shape() == impl->shape, "gradient of shape ", shapeStr(g.shape()),
                " does not match its tensor ", describe(leaf));
    if (!impl->grad) {
      MemoryTagScope tag(MemoryTag::gradients);
      // Own the gradient: a gradient that aliases another tensor (or another leaf's grad)
      // would be changed by later in-place accumulation.
      Tensor owned = g.dtype() == impl->dtype ? g.clone() : g.to(impl->dtype);
      impl->grad = owned.implShared();
    } else {
      Tensor acc(impl->grad);
      if (acc.dtype() == g.dtype() && acc.device() == g.device() && !acc.sameStorage(g)) {
        // In place: no temporary, one pass (the flat gradient buffer is accumulated into on
        // every step, so this is the common case).
        if (acc.numel() > 0) backendFor(acc).binary(BinaryOp::add, acc, g, acc);
        acc.storage()->bumpVersion();
      } else {
        acc.copy_(add(acc, g));
      }
    }
    Tensor accumulated(impl->grad);
    for (auto& hook : impl->post_hooks) hook(accumulated);
    return {};
  }
  std::string name() const override { return "AccumulateGrad"; }

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

std::shared_ptr<Node> gradAccumulator(const Tensor& leaf) {
  TensorImpl* impl = leaf.implPtr();
  if (!impl->grad_accumulator)
    impl->grad_accumulator = std::make_shared<AccumulateGrad>(leaf.implShared());
  return impl->grad_accumulator;
}

Edge edgeOf(const Tensor& t) {
  if (!t.defined() || !t.requiresGrad()) return {};
  if (t.gradFn()) return {t.gradFn(), t.implPtr()->output_nr};
  return {gradAccumulator(t), 0};
}

void accumulateInto(Tensor& slot, const Tensor& g) {
  if (!g.defined()) return;
  slot = slot.defined() ? add(slot, g) : g;
}

// The engine. With `captures` set, the gradients arriving at those edges are returned instead
// of flowing on, and leaves' .grad is left alone.
std::vector<Tensor> execute(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                            bool retain_graph, const std::vector<Edge>* captures) {
  NoGradGuard no_grad;
  std::unordered_map<Node*, int> deps;
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::vector<std::shared_ptr<Node>> stack;
  std::unordered_set<Node*> seen;
  std::unordered_set<Node*> capture_nodes;
  if (captures)
    for (const Edge& e : *captures)
      if (e.node) capture_nodes.insert(e.node.get());

  for (const Tensor& r : roots) {
    Edge e = edgeOf(r);
    if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node);
  }
  std::vector<std::shared_ptr<Node>> all;
  while (!stack.empty()) {
    auto n = stack.back();
    stack.pop_back();
    all.push_back(n);
    if (capture_nodes.count(n.get())) continue;  // nothing beyond a captured node is needed
    for (const Edge& e : n->next) {
      if (!e.node) continue;
      ++deps[e.node.get()];
      if (seen.insert(e.node.get()).second) stack.push_back(e.node);
    }
  }
  for (const auto& n : all) buffers[n.get()].resize(static_cast<size_t>(n->numOutputs()));

  for (size_t i = 0; i < roots.size(); ++i) {
    Edge e = edgeOf(roots[i]);
    LATHE_CHECK(e.node != nullptr, "backward: tensor ", describe(roots[i]),
                " does not require grad and has no grad_fn");
    accumulateInto(buffers[e.node.get()][static_cast<size_t>(e.input_nr)], grads[i]);
  }

  std::vector<Tensor> captured(captures ? captures->size() : 0);
  std::vector<std::shared_ptr<Node>> ready;
  for (const auto& n : all)
    if (deps[n.get()] == 0) ready.push_back(n);

  while (!ready.empty()) {
    auto node = ready.back();
    ready.pop_back();
    std::vector<Tensor> in = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    if (capture_nodes.count(node.get())) {
      for (size_t c = 0; c < captures->size(); ++c)
        if ((*captures)[c].node == node)
          captured[c] = in[static_cast<size_t>((*captures)[c].input_nr)];
      continue;
    }
    const bool is_leaf_acc = dynamic_cast<AccumulateGrad*>(node.get()) != nullptr;
    std::vector<Tensor> out;
    if (!(captures && is_leaf_acc)) {
      const bool any =
          std::any_of(in.begin(), in.end(), [](const Tensor& t) { return t.defined(); });
      if (any) out = node->apply(in);
      if (!retain_graph) node->release();
    }
    for (size_t i = 0; i < node->next.size(); ++i) {
      const Edge& e = node->next[i];
      if (!e.node) continue;
      if (i < out.size() && out[i].defined())
        accumulateInto(buffers[e.node.get()][static_cast<size_t>(e.input_nr)], out[i]);
      if (--deps[e.node.get()] == 0) ready.push_back(e.node);
    }
  }
  return captured;
}

}  // namespace

bool gradEnabled() {
  return tls_grad_enabled;
}
NoGradGuard::NoGradGuard() : previous_(tls_grad_enabled) {
  tls_grad_enabled = false;
}
NoGradGuard::~NoGradGuard() {
  tls_grad_enabled = previous_;
}
EnableGradGuard::EnableGradGuard() : previous_(tls_grad_enabled) {
  tls_grad_enabled = true;
}
EnableGradGuard::~EnableGradGuard() {
  tls_grad_enabled = previous_;
}

SavedTensor::SavedTensor(const Tensor& t, const char* what) : what_(what) {
  if (!t.defined()) return;
  tensor_ = t.detach();
  version_ = t.storage()->version();
}

const Tensor& SavedTensor::get() const {
  LATHE_CHECK(!tensor_.defined() || tensor_.storage()->version() == version_,
              "autograd: the tensor '", what_, "' ", describe(tensor_),
              " saved for backward was modified in place after it was saved (version ", version_,
              " -> ", tensor_.storage()->version(), "); clone it before changing it");
  return tensor_;
}

std::vector<Tensor> FunctionNode::apply(const std::vector<Tensor>& grad_outputs) {
  LATHE_CHECK(fn_ != nullptr, "autograd: backward through '", name_,
              "' a second time; its saved tensors were freed (pass retain_graph = true)");
  return fn_(grad_outputs);
}

bool needsGrad(std::initializer_list<const Tensor*> inputs) {
  if (!tls_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requiresGrad()) return true;
  return false;
}

bool needsGrad(const std::vector<Tensor>& inputs) {
  if (!tls_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requiresGrad()) return true;
  return false;
}

std::shared_ptr<Node> record(const std::string& name, const std::vector<Tensor>& inputs,
                             const std::vector<Tensor*>& outputs, BackwardFn fn) {
  auto node = std::make_shared<FunctionNode>(name, std::move(fn));
  node->num_outputs_ = static_cast<int>(outputs.size());
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next.push_back(edgeOf(t));
  for (size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl* o = outputs[i]->implPtr();
    o->grad_fn = node;
    o->output_nr = static_cast<int>(i);
    o->requires_grad = true;
  }
  return node;
}

Tensor recordUnary(const std::string& name, const std::vector<Tensor>& inputs, Tensor out,
                   BackwardFn fn) {
  if (needsGrad(inputs)) record(name, inputs, {&out}, std::move(fn));
  return out;
}

void runBackward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                 bool retain_graph) {
  execute(roots, grads, retain_graph, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs,
                         const std::vector<Tensor>& grad_outputs, const std::vector<Tensor>& inputs,
                         bool retain_graph) {
  std::vector<Edge> captures;
  for (const Tensor& t : inputs) {
    LATHE_CHECK(t.requiresGrad(), "grad: input ", describe(t), " does not require grad");
    captures.push_back(edgeOf(t));
  }
  return execute(outputs, grad_outputs, retain_graph, &captures);
}

std::vector<Tensor> checkpoint(
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
    const std::vector<Tensor>& inputs) {
  if (!needsGrad(inputs)) return fn(inputs);
  const RandomState rng_at_start = rngState();
  std::vector<Tensor> outs;
  {
    NoGradGuard no_grad;
    outs = fn(inputs);
  }
  std::vector<SavedTensor> saved;
  for (const Tensor& t : inputs) saved.emplace_back(t, "checkpoint input");
  std::vector<bool> input_needs;
  for (const Tensor& t : inputs) input_needs.push_back(t.defined() && t.requiresGrad());

  std::vector<Tensor*> out_ptrs;
  for (Tensor& o : outs) out_ptrs.push_back(&o);
  record("Checkpoint", inputs, out_ptrs,
         [fn, saved, input_needs, rng_at_start](const std::vector<Tensor>& gouts) {
           // Recompute with the same random stream, then differentiate the recomputation.
           const RandomState rng_now = rngState();
           setRngState(rng_at_start);
           std::vector<Tensor> fresh;
           std::vector<Tensor> wrt;
           for (size_t i = 0; i < saved.size(); ++i) {
             Tensor d = saved[i].defined() ? saved[i].get().detach() : Tensor();
             if (input_needs[i]) {
               d.setRequiresGrad(true);
               wrt.push_back(d);
             }
             fresh.push_back(d);
           }
           std::vector<Tensor> outs2;
           {
             EnableGradGuard grad_on;
             outs2 = fn(fresh);
           }
           setRngState(rng_now);
           std::vector<Tensor> roots, grads;
           for (size_t i = 0; i < outs2.size() && i < gouts.size(); ++i) {
             if (gouts[i].defined() && outs2[i].requiresGrad()) {
               roots.push_back(outs2[i]);
               grads.push_back(gouts[i]);
             }
           }
           std::vector<Tensor> g =
               roots.empty() ? std::vector<Tensor>(wrt.size()) : grad(roots, grads, wrt, false);
           std::vector<Tensor> result(saved.size());
           size_t k = 0;
           for (size_t i = 0; i < saved.size(); ++i)
             if (input_needs[i]) result[i] = g[k++];
           return result;
         });
  return outs;
}

}  // namespace lathe
