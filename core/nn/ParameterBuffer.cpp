// Flattening: lay out slots per group, allocate the flat tensors zeroed (padding stays 0), copy
// values and gradients in, then re-point each parameter handle (rebindTensor) and its .grad at
// views of the flat tensors.
#include "core/nn/ParameterBuffer.h"

#include <algorithm>
#include <unordered_set>

#include "core/autograd/Autograd.h"

namespace lathe {
namespace {

Tensor viewOf(const Tensor& flat, const Shape& shape, int64_t offset) {
  return Tensor::makeView(flat, shape, contiguousStrides(shape), flat.offset() + offset);
}

// Whether the slot's parameter .grad is still its view of the group's flat gradient.
bool gradAttached(const ParameterBuffer::Group& g, const ParameterBuffer::Slot& s) {
  const Tensor cur = s.param.grad();
  return cur.defined() && cur.sameStorage(g.grads) && cur.offset() == g.grads.offset() + s.offset;
}

}  // namespace

ParameterBuffer::ParameterBuffer(Module& module, size_t align_bytes)
    : ParameterBuffer(module, Partition(), align_bytes) {}

ParameterBuffer::ParameterBuffer(Module& module, const Partition& partition, size_t align_bytes)
    : module_(&module) {
  LATHE_CHECK(align_bytes > 0, "ParameterBuffer: align_bytes must be positive");
  NoGradGuard no_grad;
  std::vector<int64_t> sizes;
  for (auto& [name, p] : module.namedParameters()) {
    const int part = partition ? partition(name, p) : 0;
    Group* g = nullptr;
    for (auto& cand : groups_) {
      if (cand.device == p.device() && cand.dtype == p.dtype() &&
          cand.trainable == p.requiresGrad() && cand.partition == part) {
        g = &cand;
      }
    }
    if (g == nullptr) {
      groups_.push_back(
          Group{p.device(), p.dtype(), p.requiresGrad(), Tensor(), Tensor(), {}, part});
      sizes.push_back(0);
      g = &groups_.back();
    }
    int64_t& size = sizes[static_cast<size_t>(g - groups_.data())];
    const int64_t align =
        std::max<int64_t>(1, static_cast<int64_t>(align_bytes / dtypeSize(p.dtype())));
    size = (size + align - 1) / align * align;
    g->slots.push_back(Slot{name, p, size});
    size += p.numel();
  }
  for (size_t i = 0; i < groups_.size(); ++i) {
    Group& g = groups_[i];
    {
      MemoryTagScope tag(MemoryTag::parameters);
      g.params = Tensor::zeros({sizes[i]}, g.dtype, g.device);
    }
    if (g.trainable) {
      MemoryTagScope tag(MemoryTag::gradients);
      g.grads = Tensor::zeros({sizes[i]}, g.dtype, g.device);
    }
    for (Slot& s : g.slots) {
      Tensor pv = viewOf(g.params, s.param.shape(), s.offset);
      pv.copy_(s.param.detach());
      Tensor old_grad = s.param.grad();
      rebindTensor(s.param, pv);
      if (g.trainable) {
        Tensor gv = viewOf(g.grads, s.param.shape(), s.offset);
        if (old_grad.defined()) gv.copy_(old_grad);
        s.param.setGrad(gv);
      } else {
        s.param.setGrad(Tensor());
      }
    }
  }
}

const ParameterBuffer::Group& ParameterBuffer::group(Device device, DType dtype) const {
  const Group* found = nullptr;
  for (const Group& g : groups_) {
    if (!g.trainable || g.device != device || g.dtype != dtype) continue;
    LATHE_CHECK(found == nullptr, "ParameterBuffer: trainable ", dtypeName(dtype),
                " parameters on ", device.str(), " are split into several partitions (",
                found->partition, ", ", g.partition, ", ...); ask for one by partition");
    found = &g;
  }
  if (found == nullptr) {
    fail("ParameterBuffer: no trainable parameters of dtype ", dtypeName(dtype), " on ",
         device.str());
  }
  return *found;
}

const ParameterBuffer::Group& ParameterBuffer::group(Device device, DType dtype,
                                                     int partition) const {
  for (const Group& g : groups_)
    if (g.trainable && g.device == device && g.dtype == dtype && g.partition == partition) return g;
  fail("ParameterBuffer: no trainable parameters of dtype ", dtypeName(dtype), " on ", device.str(),
       " in partition ", partition);
}

int64_t ParameterBuffer::numel() const {
  int64_t n = 0;
  for (const Group& g : groups_) n += g.params.numel();
  return n;
}

bool ParameterBuffer::attached() const {
  std::unordered_set<const TensorImpl*> known;
  for (const Group& g : groups_) {
    for (const Slot& s : g.slots) {
      if (!s.param.sameStorage(g.params) || s.param.requiresGrad() != g.trainable) return false;
      known.insert(s.param.implPtr());
    }
  }
  for (const auto& [name, p] : module_->namedParameters())
    if (!known.count(p.implPtr())) return false;
  return true;
}

void ParameterBuffer::zeroGrad() {
  LATHE_CHECK(attached(), "ParameterBuffer::zeroGrad: the module's parameters changed since ",
              "flattening (a module was added or replaced, to() moved them, or requires_grad ",
              "changed); build a new ParameterBuffer over the module");
  NoGradGuard no_grad;
  for (Group& g : groups_) {
    if (!g.trainable) continue;
    g.grads.zero_();
    for (Slot& s : g.slots)
      if (!gradAttached(g, s)) s.param.setGrad(viewOf(g.grads, s.param.shape(), s.offset));
  }
}

std::string ParameterBuffer::detachedGradient() const {
  for (const Group& g : groups_) {
    if (!g.trainable) continue;
    for (const Slot& s : g.slots)
      if (!gradAttached(g, s)) return s.name;
  }
  return "";
}

}  // namespace lathe
