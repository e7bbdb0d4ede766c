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

}  // namespace

ParameterBuffer::ParameterBuffer(Module& module, size_t align_bytes) : module_(&module) {
  LATHE_CHECK(align_bytes > 0, "ParameterBuffer: align_bytes must be positive");
  NoGradGuard no_grad;
  std::vector<int64_t> sizes;
  for (auto& [name, p] : module.namedParameters()) {
    Group* g = nullptr;
    for (auto& cand : groups_)
      if (cand.device == p.device() && cand.dtype == p.dtype() &&
          cand.trainable == p.requiresGrad())
        g = &cand;
    if (g == nullptr) {
      groups_.push_back(Group{p.device(), p.dtype(), p.requiresGrad(), Tensor(), Tensor(), {}});
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
  for (const Group& g : groups_)
    if (g.trainable && g.device == device && g.dtype == dtype) return g;
  fail("ParameterBuffer: no trainable parameters of dtype ", dtypeName(dtype), " on ",
       device.str());
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
    for (Slot& s : g.slots) {
      Tensor cur = s.param.grad();
      if (cur.defined() && cur.sameStorage(g.grads) && cur.offset() == g.grads.offset() + s.offset)
        continue;
      s.param.setGrad(viewOf(g.grads, s.param.shape(), s.offset));
    }
  }
}

}  // namespace lathe
