// Flat parameter buffers (llm.c's layout): a module's parameters gathered into one contiguous
// storage per (device, dtype, trainable) group, each parameter a view into it (still a leaf
// requiring grad), with a matching flat gradient whose views are the parameters' .grad, so an
// optimizer step or a gradient all-reduce is one pass over one tensor. Autograd accumulates in
// place into an existing .grad, so gradients land in the flat buffer.
//
// Layout: each parameter starts at a multiple of `align_bytes` (64 by default: vectorised
// kernels and cuBLASLt want aligned operands); the padding between parameters is zero in both
// buffers and its gradient stays zero, so it is inert for every element-wise optimizer rule
// (SGD, Adam(W) with weight decay, Lion) and for norms. Frozen parameters (requires_grad off)
// form their own groups without a gradient buffer. An optional partition function splits groups
// further (an optimizer's decay / no-decay parameters), so each partition is one flat tensor.
//
// Lifetime: flatten after model surgery and after Module::to(). A parameter added later
// (replaceChild, e.g. LoRA) or moved by to() is not in the buffer: attached() turns false and
// zeroGrad() throws; construct a new ParameterBuffer over the module (values and existing
// gradients are copied; the old flat storage is freed once nothing views it).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/nn/Module.h"

namespace lathe {

class ParameterBuffer {
 public:
  struct Slot {
    std::string name;    // dotted name in the module
    Tensor param;        // the module's parameter handle (a view into Group::params)
    int64_t offset = 0;  // element offset in the flat tensors
  };
  struct Group {
    Device device;
    DType dtype = DType::f32;
    bool trainable = true;
    Tensor params;  // 1-D, MemoryTag::parameters
    Tensor grads;   // 1-D, MemoryTag::gradients; undefined for frozen groups
    std::vector<Slot> slots;
    int partition = 0;  // what the partition function returned for every slot (0 without one)
  };
  // Maps a parameter (dotted name, tensor) to a partition; parameters of different partitions
  // never share a group.
  using Partition = std::function<int(const std::string& name, const Tensor& param)>;

  // Flattens `module`'s parameters (each tensor once; tied weights share one slot) in
  // registration order. Values and existing gradients are copied in; the module's handles
  // stay the same objects. Grouping: by device, dtype and requires_grad.
  explicit ParameterBuffer(Module& module, size_t align_bytes = 64);
  // The same, grouping also by partition(name, param); groups appear in the order their first
  // parameter was registered.
  ParameterBuffer(Module& module, const Partition& partition, size_t align_bytes = 64);

  const std::vector<Group>& groups() const { return groups_; }
  // The group of trainable parameters of this device and dtype; throws when there is none or
  // when partitions split them into several groups.
  const Group& group(Device device, DType dtype) const;
  // The trainable group of this device, dtype and partition; throws when there is none.
  const Group& group(Device device, DType dtype, int partition) const;
  // Total elements over all groups, padding included.
  int64_t numel() const;

  // Fills every flat gradient with 0 and re-attaches any .grad that was dropped or replaced
  // (e.g. by Module::zeroGrad(true)), so the next backward lands in the buffer again.
  void zeroGrad();
  // True while every parameter still views this buffer and the module has no parameter the
  // buffer does not know (nothing added or moved since flattening).
  bool attached() const;
  // The dotted name of the first trainable parameter whose .grad is not its view of the flat
  // gradient (dropped or replaced since flattening or the last zeroGrad), or "" when none is:
  // a backward then accumulates outside the buffer, so a flat optimizer step would miss it.
  std::string detachedGradient() const;

 private:
  Module* module_;
  std::vector<Group> groups_;
};

}  // namespace lathe
