// Optimizer base (flattening by decay rule, flat state, checkpoint state by parameter name),
// SGD and AdamW as thin wrappers over the backends' fused step kernels, and gradient norms.
// No code path here touches memory directly: everything goes through ops or backend kernels on
// the groups' devices, so the same code runs on CPU and CUDA.
#include "core/optim/Optimizer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "core/backend/Backend.h"
#include "core/nn/Layers.h"
#include "core/ops/Ops.h"
#include "core/optim/OptimCommon.h"

namespace lathe::optim {
namespace {

using internal::checkOption;
using internal::nonNegative;
using internal::unitInterval;
using internal::viewOf;

// Elements per slice when reducing or scaling gradients: the f64 temporaries of a slice (256 KiB
// each) stay in the L2 cache between the conversion, the square and the sum, instead of
// streaming three passes of 8 bytes per parameter through memory; the workspace is bounded
// however large the model is.
constexpr int64_t kChunk = int64_t{1} << 15;

// Decayed: any parameter with dim >= 2 that no Embedding owns (matricesOnly), or all of them.
ParameterBuffer::Partition decayPartition(Module& model, DecayRule rule) {
  if (rule == DecayRule::all)
    return [](const std::string&, const Tensor&) { return Optimizer::kDecayed; };
  std::unordered_set<const TensorImpl*> tables;
  for (auto& [path, m] : model.namedModules())
    if (const auto* e = dynamic_cast<const Embedding*>(m)) tables.insert(e->weight().implPtr());
  return [tables = std::move(tables)](const std::string&, const Tensor& p) {
    return p.dim() >= 2 && tables.count(p.implPtr()) == 0 ? Optimizer::kDecayed
                                                          : Optimizer::kNotDecayed;
  };
}

ParameterBuffer flatten(Module& model, const char* who, DecayRule rule) {
  LATHE_CHECK(model.numParameters(/*trainable_only=*/true) > 0, who, ": the model (",
              model.typeName(), ") has no trainable parameters (", model.numParameters(),
              " parameters, all frozen)");
  return ParameterBuffer(model, decayPartition(model, rule));
}

class Sgd final : public Optimizer {
 public:
  Sgd(Module& model, const SgdOptions& o)
      : Optimizer(model, "makeSgd", o.lr, o.decay,
                  o.momentum != 0.0 ? std::vector<std::string>{"momentum_buffer"}
                                    : std::vector<std::string>{}),
        o_(o) {}
  std::string name() const override { return "sgd"; }

 protected:
  void stepGroup(const ParameterBuffer::Group& group, bool decayed,
                 const std::vector<Tensor>& state, int64_t step) override {
    SgdStep s;
    s.lr = lr();
    s.momentum = o_.momentum;
    s.dampening = o_.dampening;
    s.weight_decay = decayed ? o_.weight_decay : 0.0;
    s.nesterov = o_.nesterov;
    s.first_step = step == 1;
    backendFor(group.params)
        .sgdStep(group.params, group.grads, state.empty() ? Tensor() : state[0], s);
  }

 private:
  SgdOptions o_;
};

class AdamW final : public Optimizer {
 public:
  AdamW(Module& model, const AdamWOptions& o)
      : Optimizer(model, "makeAdamW", o.lr, o.decay, {"exp_avg", "exp_avg_sq"}), o_(o) {}
  std::string name() const override { return "adamw"; }

 protected:
  void stepGroup(const ParameterBuffer::Group& group, bool decayed,
                 const std::vector<Tensor>& state, int64_t step) override {
    AdamWStep s;
    s.lr = lr();
    s.beta1 = o_.beta1;
    s.beta2 = o_.beta2;
    s.eps = o_.eps;
    s.weight_decay = decayed ? o_.weight_decay : 0.0;
    s.step = step;
    backendFor(group.params).adamwStep(group.params, group.grads, state[0], state[1], s);
  }

 private:
  AdamWOptions o_;
};

}  // namespace

Optimizer::Optimizer(Module& model, const char* who, double lr, DecayRule decay,
                     std::vector<std::string> states)
    : buffer_(flatten(model, who, decay)), state_names_(std::move(states)), lr_(0.0) {
  LATHE_CHECK(nonNegative(lr), who, ": option lr = ", lr, " is invalid; expected >= 0");
  lr_ = lr;
  MemoryTagScope tag(MemoryTag::optimizer_state);
  for (const ParameterBuffer::Group& g : buffer_.groups()) {
    std::vector<Tensor>& st = state_.emplace_back();
    std::vector<SlotState>& slots = slot_state_.emplace_back(g.slots.size());
    if (!g.trainable) continue;
    for (size_t k = 0; k < state_names_.size(); ++k)
      st.push_back(Tensor::zeros({g.params.numel()}, stateDtype(g.dtype), g.device));
    for (size_t si = 0; si < g.slots.size(); ++si) {
      const ParameterBuffer::Slot& s = g.slots[si];
      for (size_t k = 0; k < state_names_.size(); ++k) {
        slots[si].names.push_back(state_names_[k]);
        slots[si].views.push_back(viewOf(st[k], s.param.shape(), s.offset));
      }
    }
  }
  orderSlots(model);
}

Optimizer::Optimizer(Module& model, const char* who, double lr, DecayRule decay,
                     const StateLayout& layout)
    : buffer_(flatten(model, who, decay)), lr_(0.0) {
  LATHE_CHECK(nonNegative(lr), who, ": option lr = ", lr, " is invalid; expected >= 0");
  lr_ = lr;
  MemoryTagScope tag(MemoryTag::optimizer_state);
  for (const ParameterBuffer::Group& g : buffer_.groups()) {
    std::vector<Tensor>& st = state_.emplace_back();
    std::vector<SlotState>& slots = slot_state_.emplace_back(g.slots.size());
    if (!g.trainable) continue;
    // Pass 1: sizes and offsets per (name, dtype); pass 2: allocate and view.
    struct Flat {
      std::string name;
      DType dtype;
      int64_t size = 0;
    };
    std::vector<Flat> flats;
    std::vector<std::vector<std::pair<size_t, int64_t>>> where(g.slots.size());
    std::vector<std::vector<ParamState>> specs(g.slots.size());
    for (size_t si = 0; si < g.slots.size(); ++si) {
      specs[si] = layout(g.slots[si].name, g.slots[si].param);
      for (const ParamState& ps : specs[si]) {
        size_t f = 0;
        while (f < flats.size() && !(flats[f].name == ps.name && flats[f].dtype == ps.dtype)) ++f;
        if (f == flats.size()) flats.push_back({ps.name, ps.dtype, 0});
        where[si].emplace_back(f, flats[f].size);
        flats[f].size += shapeNumel(ps.shape);
        if (std::find(state_names_.begin(), state_names_.end(), ps.name) == state_names_.end())
          state_names_.push_back(ps.name);
      }
    }
    for (const Flat& f : flats) st.push_back(Tensor::zeros({f.size}, f.dtype, g.device));
    for (size_t si = 0; si < g.slots.size(); ++si)
      for (size_t k = 0; k < specs[si].size(); ++k) {
        slots[si].names.push_back(specs[si][k].name);
        slots[si].views.push_back(
            viewOf(st[where[si][k].first], specs[si][k].shape, where[si][k].second));
      }
  }
  orderSlots(model);
}

void Optimizer::orderSlots(Module& model) {
  // Checkpoint order: the module's registration order, not the groups'.
  std::unordered_map<std::string, std::pair<size_t, size_t>> where;
  for (size_t gi = 0; gi < buffer_.groups().size(); ++gi) {
    const auto& slots = buffer_.groups()[gi].slots;
    for (size_t si = 0; si < slots.size(); ++si) where[slots[si].name] = {gi, si};
  }
  for (auto& [name, p] : model.namedParameters()) {
    auto it = where.find(name);
    if (it != where.end() && buffer_.groups()[it->second.first].trainable)
      order_.push_back(it->second);
  }
}

size_t Optimizer::groupIndex(const ParameterBuffer::Group& group) const {
  const auto& groups = buffer_.groups();
  LATHE_CHECK(!groups.empty() && &group >= &groups.front() && &group <= &groups.back(), name(),
              ": a parameter group of another buffer");
  return static_cast<size_t>(&group - &groups.front());
}

const std::vector<Tensor>& Optimizer::paramState(const ParameterBuffer::Group& group,
                                                 size_t slot) const {
  return slot_state_[groupIndex(group)].at(slot).views;
}

const std::vector<std::string>& Optimizer::paramStateNames(const ParameterBuffer::Group& group,
                                                           size_t slot) const {
  return slot_state_[groupIndex(group)].at(slot).names;
}

void Optimizer::estimateCurvature(const GradientPass& /*pass*/) {}

Optimizer::~Optimizer() = default;

void Optimizer::setLr(double lr) {
  LATHE_CHECK(nonNegative(lr), name(), ": learning rate ", lr, " is invalid; expected >= 0");
  lr_ = lr;
}

void Optimizer::step() {
  LATHE_CHECK(buffer_.attached(), name(),
              ".step: the model's parameters changed since the optimizer was built (a module was "
              "added or replaced, to() moved them, or requires_grad changed); build a new "
              "optimizer over the model");
  const std::string detached = buffer_.detachedGradient();
  LATHE_CHECK(detached.empty(), name(), ".step: the gradient of '", detached,
              "' is not in the optimizer's flat buffer (dropped by Module::zeroGrad(true) or "
              "replaced); zero gradients with optimizer.buffer().zeroGrad() instead");
  const int64_t step = step_count_ + 1;
  for (size_t i = 0; i < buffer_.groups().size(); ++i) {
    const ParameterBuffer::Group& g = buffer_.groups()[i];
    if (!g.trainable) continue;
    stepGroup(g, g.partition == kDecayed, state_[i], step);
    // The kernels write in place behind autograd's back: mark the writes as in-place ops do.
    g.params.storage()->bumpVersion();
    for (const Tensor& t : state_[i]) t.storage()->bumpVersion();
  }
  step_count_ = step;
}

int64_t Optimizer::stateBytes() const {
  int64_t bytes = 0;
  for (const auto& st : state_)
    for (const Tensor& t : st) bytes += static_cast<int64_t>(t.nbytes());
  return bytes;
}

NamedTensors Optimizer::stateDict() const {
  NamedTensors out;
  {
    MemoryTagScope tag(MemoryTag::optimizer_state);
    out.emplace_back("step", Tensor::scalar(static_cast<double>(step_count_), DType::f64));
    out.emplace_back("lr", Tensor::scalar(lr_, DType::f64));
  }
  for (const auto& [gi, si] : order_) {
    const ParameterBuffer::Slot& s = buffer_.groups()[gi].slots[si];
    const SlotState& ss = slot_state_[gi][si];
    for (size_t k = 0; k < ss.names.size(); ++k)
      out.emplace_back(s.name + "." + ss.names[k], ss.views[k]);
  }
  return out;
}

std::vector<const Tensor*> Optimizer::matchStateDict(const NamedTensors& state,
                                                     const NamedTensors& mine) const {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < mine.size(); ++i) index[mine[i].first] = i;
  std::vector<const Tensor*> source(mine.size(), nullptr);
  std::vector<bool> seen(mine.size(), false);
  std::vector<std::string> problems;
  for (const auto& [key, t] : state) {
    auto it = index.find(key);
    if (it == index.end()) {
      problems.push_back("unexpected key '" + key + "'");
      continue;
    }
    const Tensor& want = mine[it->second].second;
    if (seen[it->second]) {
      problems.push_back("duplicate key '" + key + "'");
    } else if (!t.defined()) {
      problems.push_back("key '" + key + "' holds an undefined tensor");
    } else if (t.shape() != want.shape()) {
      problems.push_back("key '" + key + "' has shape " + shapeStr(t.shape()) + ", expected " +
                         shapeStr(want.shape()));
    } else if (t.dtype() != want.dtype() && !(isFloating(t.dtype()) && isFloating(want.dtype()))) {
      // Quantized codes are not values: converting them would load garbage.
      problems.push_back("key '" + key + "' has dtype " + dtypeName(t.dtype()) + ", expected " +
                         dtypeName(want.dtype()));
    } else {
      source[it->second] = &t;
    }
    seen[it->second] = true;
  }
  for (size_t i = 0; i < mine.size(); ++i)
    if (!seen[i]) problems.push_back("missing key '" + mine[i].first + "'");
  // mine[0] is "step", mine[1] "lr" (see stateDict).
  if (source[0] != nullptr) {
    const double step = source[0]->item();
    if (!(step >= 0.0 && step <= 9.0e15 && std::floor(step) == step))
      problems.push_back(detail::concat("key 'step' = ", step, " is not a non-negative integer"));
  }
  if (source[1] != nullptr && !nonNegative(source[1]->item()))
    problems.push_back(detail::concat("key 'lr' = ", source[1]->item(), " is not >= 0"));
  if (!problems.empty()) {
    std::string msg, names;
    for (const std::string& p : problems) msg += (msg.empty() ? "" : "; ") + p;
    for (const std::string& n : state_names_) names += ", <parameter>." + n;
    fail(name(), ".loadStateDict: ", msg, " (expected 'step', 'lr'", names,
         " for each trainable parameter)");
  }
  return source;
}

void Optimizer::checkStateDict(const NamedTensors& state) const {
  matchStateDict(state, stateDict());
}

void Optimizer::loadStateDict(const NamedTensors& state) {
  const NamedTensors mine = stateDict();
  const std::vector<const Tensor*> source = matchStateDict(state, mine);
  NoGradGuard no_grad;
  for (size_t i = 2; i < mine.size(); ++i) Tensor(mine[i].second).copy_(*source[i]);
  step_count_ = static_cast<int64_t>(source[0]->item());
  lr_ = source[1]->item();
}

std::unique_ptr<Optimizer> makeSgd(Module& model, const SgdOptions& o) {
  const char* who = "makeSgd";
  checkOption(nonNegative(o.lr), who, "lr", o.lr, ">= 0");
  checkOption(unitInterval(o.momentum), who, "momentum", o.momentum, "in [0, 1)");
  checkOption(std::isfinite(o.dampening) && o.dampening >= 0.0 && o.dampening <= 1.0, who,
              "dampening", o.dampening, "in [0, 1]");
  checkOption(nonNegative(o.weight_decay), who, "weight_decay", o.weight_decay, ">= 0");
  LATHE_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0), who,
              ": option nesterov needs momentum > 0 and dampening = 0, got momentum = ", o.momentum,
              ", dampening = ", o.dampening);
  return std::make_unique<Sgd>(model, o);
}

std::unique_ptr<Optimizer> makeAdamW(Module& model, const AdamWOptions& o) {
  const char* who = "makeAdamW";
  checkOption(nonNegative(o.lr), who, "lr", o.lr, ">= 0");
  checkOption(unitInterval(o.beta1), who, "beta1", o.beta1, "in [0, 1)");
  checkOption(unitInterval(o.beta2), who, "beta2", o.beta2, "in [0, 1)");
  checkOption(nonNegative(o.eps), who, "eps", o.eps, ">= 0");
  checkOption(nonNegative(o.weight_decay), who, "weight_decay", o.weight_decay, ">= 0");
  return std::make_unique<AdamW>(model, o);
}

double gradNorm(const ParameterBuffer& buffer) {
  NoGradGuard no_grad;
  MemoryTagScope tag(MemoryTag::workspace);
  double sum_sq = 0.0;
  for (const ParameterBuffer::Group& g : buffer.groups()) {
    if (!g.trainable) continue;
    // Squares in f64 (no f32 overflow, no rounding before the sum); one host read per group.
    std::vector<Tensor> partial;
    const int64_t n = g.grads.numel();
    for (int64_t b = 0; b < n; b += kChunk)
      partial.push_back(sum(square(g.grads.slice(0, b, std::min(n, b + kChunk)).to(DType::f64))));
    if (!partial.empty())
      sum_sq += (partial.size() == 1 ? partial[0] : sum(stack(partial, 0))).item();
  }
  return std::sqrt(sum_sq);
}

double clipGradNorm(ParameterBuffer& buffer, double max_norm) {
  LATHE_CHECK(std::isfinite(max_norm) && max_norm > 0.0, "clipGradNorm: max_norm = ", max_norm,
              " is invalid; expected a positive finite number");
  const double norm = gradNorm(buffer);
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) scaleGrads(buffer, coef);
  return norm;
}

void scaleGrads(ParameterBuffer& buffer, double factor) {
  if (factor == 1.0) return;
  // In place through the backend: one pass, and no temporary, so a step that clips for the
  // first time late in a run allocates nothing (a GPU's caching allocator stays warm).
  for (const ParameterBuffer::Group& g : buffer.groups()) {
    if (!g.trainable || g.grads.numel() == 0) continue;
    backendFor(g.grads).unary(UnaryOp::mul_scalar, g.grads, g.grads, factor, 0.0);
    g.grads.storage()->bumpVersion();
  }
}

}  // namespace lathe::optim
