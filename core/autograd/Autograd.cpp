#include "core/autograd/Autograd.h"

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "core/ops/Autocast.h"
#include "core/ops/Ops.h"
#include "core/tensor/Random.h"

namespace lathe {
namespace {

thread_local bool tls_grad_enabled = true;
void pruneRecomputable();  // activation checkpointing, below

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
  pruneRecomputable();
  return captured;
}

}  // namespace

// ---- activation checkpointing: regions, handles, recomputable outputs ----
namespace detail {

// One checkpoint() region: its function, kept inputs and replay state, and (after backward
// asked for one of its saved tensors) what the recomputation produced. Released (inputs and
// recomputed tensors dropped) once every handle into it has been materialised.
struct CheckpointFrame : std::enable_shared_from_this<CheckpointFrame> {
  CheckpointFn fn;
  std::vector<SavedTensor> inputs;
  std::vector<bool> input_requires;
  RandomState rng;
  std::optional<DType> autocast;
  bool recompute_outputs = false;
  bool recomputing = false, recomputed = false, released = false;
  std::vector<Shape> saved_shapes;  // of each tensor saved inside fn during the forward
  std::vector<Tensor> slots;        // the recomputed saved tensors, taken by their handles
  size_t capture_next = 0;
  // Recomputable outputs: forward geometry, recomputed values, handles still to serve.
  std::vector<Shape> out_shapes, out_strides;
  std::vector<int64_t> out_offsets;
  std::vector<Tensor> outputs;
  std::vector<int64_t> alias_pending;
  int64_t pending = 0;  // handles not yet materialised

  std::shared_ptr<SavedHandle> newHandle(const Tensor& t);
  void capture(const Tensor& t);
  void recompute();
  void materialized(const SavedHandle& h);
  void release();
};

struct SavedHandle {
  std::shared_ptr<CheckpointFrame> frame;  // dropped once the value is materialised
  size_t index = 0;                        // slot, or output for an alias
  bool alias = false;
  Shape shape, strides;  // alias: the saved view's geometry
  int64_t delta = 0;     // alias: its offset from the output's offset
  Tensor value;

  const Tensor& get() {
    if (value.defined()) return value;
    LATHE_CHECK(frame && !frame->released,
                "checkpoint: a saved tensor was needed after its region was released (a second "
                "backward through a checkpointed graph needs retain_graph = true)");
    frame->recompute();
    if (alias) {
      const Tensor& o = frame->outputs[index];
      value = Tensor::makeView(o, shape, strides, o.offset() + delta);
    } else {
      value = std::move(frame->slots[index]);
      frame->slots[index] = Tensor();
    }
    frame->materialized(*this);
    frame.reset();
    return value;
  }
};

}  // namespace detail

namespace {

using detail::CheckpointFrame;
using detail::SavedHandle;

thread_local std::vector<CheckpointFrame*> tls_frames;  // innermost last
thread_local int tls_recompute_depth = 0;
thread_local bool tls_no_alias = false;

struct Recomputable {
  std::weak_ptr<Storage> storage;
  uint64_t version = 0;
  std::shared_ptr<CheckpointFrame> frame;
  size_t output = 0;
};
thread_local std::vector<Recomputable> tls_recomputable;

void pruneRecomputable() {
  std::erase_if(tls_recomputable,
                [](const Recomputable& r) { return r.storage.expired() || r.frame->released; });
}

struct FramePush {
  explicit FramePush(CheckpointFrame* f) { tls_frames.push_back(f); }
  ~FramePush() { tls_frames.pop_back(); }
  FramePush(const FramePush&) = delete;
  FramePush& operator=(const FramePush&) = delete;
};

struct NoAliasScope {
  NoAliasScope() : previous(tls_no_alias) { tls_no_alias = true; }
  ~NoAliasScope() { tls_no_alias = previous; }
  NoAliasScope(const NoAliasScope&) = delete;
  NoAliasScope& operator=(const NoAliasScope&) = delete;
  bool previous;
};

// A handle for a tensor saved outside any region that is (a view of) a recomputable output.
std::shared_ptr<SavedHandle> aliasHandle(const Tensor& t) {
  if (tls_recomputable.empty()) return nullptr;
  pruneRecomputable();
  for (const Recomputable& r : tls_recomputable) {
    if (r.storage.lock() != t.storage() || t.storage()->version() != r.version) continue;
    CheckpointFrame& f = *r.frame;
    auto h = std::make_shared<SavedHandle>();
    h->frame = r.frame;
    h->index = r.output;
    h->alias = true;
    h->shape = t.shape();
    h->strides = t.strides();
    h->delta = t.offset() - f.out_offsets[r.output];
    ++f.alias_pending[r.output];
    ++f.pending;
    return h;
  }
  return nullptr;
}

}  // namespace

namespace detail {

std::shared_ptr<SavedHandle> CheckpointFrame::newHandle(const Tensor& t) {
  auto h = std::make_shared<SavedHandle>();
  h->frame = shared_from_this();
  h->index = saved_shapes.size();
  saved_shapes.push_back(t.shape());
  ++pending;
  return h;
}

void CheckpointFrame::capture(const Tensor& t) {
  LATHE_CHECK(capture_next < saved_shapes.size() && saved_shapes[capture_next] == t.shape(),
              "checkpoint: the recomputation saved ", describe(t), " as its tensor #", capture_next,
              ", but the forward saved ",
              capture_next < saved_shapes.size() ? shapeStr(saved_shapes[capture_next])
                                                 : std::string("nothing more"),
              "; a checkpointed function must do the same work both times");
  slots[capture_next++] = t.detach();
}

void CheckpointFrame::recompute() {
  if (recomputed) return;
  LATHE_CHECK(!recomputing,
              "checkpoint: the function asked for its own saved tensors while being recomputed");
  std::vector<Tensor> fresh;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor d = inputs[i].defined() ? inputs[i].get().detach() : Tensor();
    if (input_requires[i]) d.setRequiresGrad(true);
    fresh.push_back(d);
  }
  slots.assign(saved_shapes.size(), Tensor());
  capture_next = 0;
  std::vector<Tensor> outs;
  {
    // Replay the forward's conditions: random stream, autocast, grad on, activation tag.
    struct Replay {
      CheckpointFrame* f;
      RandomState rng_now = rngState();
      explicit Replay(CheckpointFrame* frame) : f(frame) {
        setRngState(f->rng);
        f->recomputing = true;
        ++tls_recompute_depth;
      }
      ~Replay() {
        --tls_recompute_depth;
        f->recomputing = false;
        setRngState(rng_now);
      }
    } replay(this);
    FramePush push(this);
    EnableGradGuard grad_on;
    MemoryTagScope tag(MemoryTag::activations);
    AutocastGuard autocast_as_forward(autocast.value_or(DType::f32));
    outs = fn(fresh);
  }
  LATHE_CHECK(capture_next == saved_shapes.size(), "checkpoint: the recomputation saved ",
              capture_next, " tensors for backward where the forward saved ", saved_shapes.size(),
              "; a checkpointed function must do the same work both times");
  if (recompute_outputs) {
    LATHE_CHECK(outs.size() == out_shapes.size(), "checkpoint: the recomputation returned ",
                outs.size(), " outputs where the forward returned ", out_shapes.size());
    outputs.resize(outs.size());
    for (size_t j = 0; j < outs.size(); ++j) {
      if (alias_pending[j] == 0) continue;
      LATHE_CHECK(outs[j].defined() && outs[j].shape() == out_shapes[j] &&
                      outs[j].strides() == out_strides[j],
                  "checkpoint: recomputed output ", j, " ",
                  outs[j].defined() ? describe(outs[j]) : std::string("(undefined)"),
                  " differs in layout from the forward's ", shapeStr(out_shapes[j]));
      outputs[j] = outs[j].detach();
    }
  }
  recomputed = true;
}

void CheckpointFrame::materialized(const SavedHandle& h) {
  if (h.alias && --alias_pending[h.index] == 0) outputs[h.index] = Tensor();
  if (--pending == 0) release();
}

void CheckpointFrame::release() {
  released = true;
  fn = nullptr;
  inputs.clear();
  slots.clear();
  outputs.clear();
}

}  // namespace detail

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
  if (!tls_frames.empty()) {
    detail::CheckpointFrame* f = tls_frames.back();
    if (f->recomputing)
      f->capture(t);  // this copy belongs to the throw-away recomputed graph: holds nothing
    else
      handle_ = f->newHandle(t);
    return;
  }
  if (!tls_no_alias) {
    handle_ = aliasHandle(t);
    if (handle_) return;
  }
  tensor_ = t.detach();
  version_ = t.storage()->version();
}

const Tensor& SavedTensor::get() const {
  if (handle_) return handle_->get();
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

std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs,
                               const CheckpointOptions& options) {
  using detail::CheckpointFrame;
  if (!tls_grad_enabled) return fn(inputs);
  auto frame = std::make_shared<CheckpointFrame>();
  frame->fn = fn;
  {
    // Kept like any saved tensor (or packed by an enclosing region), but never as a handle
    // into another region's outputs: a recomputation must not need a released region.
    NoAliasScope no_alias;
    for (const Tensor& t : inputs) {
      frame->inputs.emplace_back(t, "checkpoint input");
      frame->input_requires.push_back(t.defined() && t.requiresGrad());
    }
  }
  frame->rng = rngState();
  frame->autocast = autocastDType();
  std::vector<Tensor> outs;
  {
    FramePush push(frame.get());
    outs = fn(inputs);
  }
  if (options.recompute_outputs && tls_frames.empty()) {
    pruneRecomputable();
    frame->alias_pending.assign(outs.size(), 0);
    for (size_t j = 0; j < outs.size(); ++j) {
      const Tensor& o = outs[j];
      frame->out_shapes.push_back(o.defined() ? o.shape() : Shape{});
      frame->out_strides.push_back(o.defined() ? o.strides() : Shape{});
      frame->out_offsets.push_back(o.defined() ? o.offset() : 0);
      if (o.defined() && o.numel() > 0)
        tls_recomputable.push_back({o.storage(), o.storage()->version(), frame, j});
    }
    frame->recompute_outputs = true;
  }
  return outs;
}

Tensor recomputable(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x) {
  return checkpoint([fn](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in[0])}; },
                    {x}, CheckpointOptions{true})[0];
}

bool isRecomputing() {
  return tls_recompute_depth > 0;
}

}  // namespace lathe
