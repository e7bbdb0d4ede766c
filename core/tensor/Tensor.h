// Tensor: a cheap handle (shared impl) to a strided view of a Storage. Shape and strides are in
// elements; offset is in elements from the storage start. Views share storage and its version
// counter; an in-place write bumps the version, so autograd can tell when a tensor it saved for
// backward was changed. Ops are free functions in core/ops/Ops.h; the methods here are the
// tensor's own properties, views and conversions.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/base/Error.h"
#include "core/tensor/Allocator.h"
#include "core/tensor/DType.h"

namespace lathe {

using Shape = std::vector<int64_t>;
std::string shapeStr(const Shape& s);  // "[2, 3]"
int64_t shapeNumel(const Shape& s);
Shape contiguousStrides(const Shape& s);

class Storage {
 public:
  Storage(size_t nbytes, Device device, Allocator& allocator, MemoryTag tag);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  MemoryTag tag() const { return tag_; }
  void setTag(MemoryTag tag);
  uint64_t version() const { return version_; }
  void bumpVersion() { ++version_; }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  Allocator& allocator_;
  MemoryTag tag_;
  uint64_t version_ = 0;
};

class Node;
class Tensor;
struct TensorImpl;

// A hook sees a gradient before it is accumulated into .grad and may return a replacement
// (an undefined Tensor keeps it unchanged). A post-accumulate hook sees the accumulated .grad.
using GradHook = std::function<Tensor(const Tensor&)>;
using PostAccumulateHook = std::function<void(Tensor&)>;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::f32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // set for results of recorded ops
  int output_nr = 0;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_accumulator;  // leaves only, created on first use
  std::vector<GradHook> hooks;
  std::vector<PostAccumulateHook> post_hooks;
  std::string name;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- factories (memory is tagged with the thread's current MemoryTag) ---
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu());
  // Copies host values (converted to dtype) into a new tensor of `shape` on `device`.
  static Tensor fromVector(const std::vector<double>& values, const Shape& shape,
                           DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor fromVector(const std::vector<float>& values, const Shape& shape,
                           DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor fromVector(const std::vector<int64_t>& values, const Shape& shape,
                           DType dtype = DType::i64, Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::cpu());
  // A view of `shape`/`strides` over existing storage (for backends and views).
  static Tensor makeView(const Tensor& base, const Shape& shape, const Shape& strides,
                         int64_t offset);

  // --- properties ---
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  int dim() const { return static_cast<int>(impl().shape.size()); }
  int64_t size(int d) const;  // negative d counts from the end
  int64_t numel() const { return shapeNumel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  size_t elementSize() const { return dtypeSize(impl().dtype); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * elementSize(); }
  bool isContiguous() const;
  bool sameStorage(const Tensor& other) const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  // Pointer to element 0 of this view. Typed access checks the dtype.
  void* rawData() const;
  template <typename T>
  T* data() const {
    LATHE_CHECK(DTypeOf<T>::value == dtype(), "tensor data<", dtypeName(DTypeOf<T>::value),
                ">() on a ", dtypeName(dtype()), " tensor");
    return static_cast<T*>(rawData());
  }
  TensorImpl* implPtr() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& implShared() const { return impl_; }
  int normDim(
      int d) const;  // maps a possibly negative dim into [0, dim()); throws when out of range

  // --- conversions (each returns a new tensor unless nothing changes) ---
  Tensor contiguous() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor clone() const;
  Tensor detach() const;  // same storage, no autograd history

  // --- views (recorded by autograd) ---
  Tensor reshape(const Shape& shape) const;  // view when possible, else a contiguous copy
  Tensor view(const Shape& shape) const;     // view only; throws if strides do not allow it
  Tensor permute(const std::vector<int>& dims) const;
  Tensor transpose(int a, int b) const;
  Tensor slice(int dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int dim, int64_t index) const;  // drops the dim
  Tensor expand(const Shape& shape) const;
  Tensor unsqueeze(int dim) const;
  Tensor squeeze(int dim) const;
  Tensor flatten(int start_dim = 0, int end_dim = -1) const;

  // --- host access (copies to the host when needed) ---
  double item() const;  // one-element tensors only
  std::vector<double> toDoubles() const;
  std::vector<float> toFloats() const;
  std::vector<int64_t> toInts() const;
  std::string toString(int max_per_dim = 6) const;

  // --- in-place (bump the version; refuse tensors that require grad outside NoGradGuard) ---
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);  // broadcasts src to this shape and converts dtype

  // --- autograd ---
  bool requiresGrad() const { return impl().requires_grad; }
  Tensor& setRequiresGrad(bool on = true);  // leaves of floating dtype only
  bool isLeaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const;
  void setGrad(const Tensor& g);
  void zeroGrad();  // drops .grad
  const std::shared_ptr<Node>& gradFn() const { return impl().grad_fn; }
  // Runs backprop from this tensor; a non-scalar needs an explicit gradient.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  void registerHook(GradHook hook);
  void registerPostAccumulateHook(PostAccumulateHook hook);
  const std::string& name() const { return impl().name; }
  Tensor& setName(std::string name);

 private:
  TensorImpl& impl() const {
    LATHE_CHECK(impl_ != nullptr, "use of an undefined tensor");
    return *impl_;
  }
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// "f32[2, 3] on cpu" for error messages.
std::string describe(const Tensor& t);

}  // namespace lathe
