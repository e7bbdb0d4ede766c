#include "core/tensor/Tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "core/autograd/Autograd.h"
#include "core/backend/Backend.h"
#include "core/ops/Ops.h"

namespace lathe {

std::string shapeStr(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shapeNumel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguousStrides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "(undefined tensor)";
  std::string s =
      std::string(dtypeName(t.dtype())) + shapeStr(t.shape()) + " on " + t.device().str();
  if (!t.name().empty()) s = "'" + t.name() + "' " + s;
  return s;
}

// ---- Storage ----
Storage::Storage(size_t nbytes, Device device, Allocator& allocator, MemoryTag tag)
    : data_(allocator.allocate(nbytes, tag)),
      nbytes_(nbytes),
      device_(device),
      allocator_(allocator),
      tag_(tag) {}

Storage::~Storage() {
  allocator_.deallocate(data_, nbytes_, tag_);
}

void Storage::setTag(MemoryTag tag) {
  allocator_.retag(nbytes_, tag_, tag);
  tag_ = tag;
}

// ---- factories ----
Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    LATHE_CHECK(d >= 0, "cannot create a tensor of shape ", shapeStr(shape), ": negative size");
  auto impl = std::make_shared<TensorImpl>();
  const size_t nbytes = static_cast<size_t>(shapeNumel(shape)) * dtypeSize(dtype);
  impl->storage =
      std::make_shared<Storage>(nbytes, device, allocatorFor(device), currentMemoryTag());
  impl->shape = shape;
  impl->strides = contiguousStrides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (t.numel() > 0) backendFor(device.type).fill(t, value);
  return t;
}

namespace {
template <typename V>
Tensor fromHost(const std::vector<V>& values, const Shape& shape, DType dtype, Device device) {
  LATHE_CHECK(static_cast<int64_t>(values.size()) == shapeNumel(shape),
              "fromVector: ", values.size(), " values do not fill shape ", shapeStr(shape));
  Tensor host = Tensor::empty(shape, dtype, Device::cpu());
  LATHE_DISPATCH_ALL(dtype, "fromVector", [&] {
    auto* p = static_cast<scalar_t*>(host.rawData());
    for (size_t i = 0; i < values.size(); ++i)
      p[i] = fromDouble<scalar_t>(static_cast<double>(values[i]));
  });
  return device.isCpu() ? host : host.to(device);
}
}  // namespace

Tensor Tensor::fromVector(const std::vector<double>& v, const Shape& s, DType d, Device dev) {
  return fromHost(v, s, d, dev);
}
Tensor Tensor::fromVector(const std::vector<float>& v, const Shape& s, DType d, Device dev) {
  return fromHost(v, s, d, dev);
}
Tensor Tensor::fromVector(const std::vector<int64_t>& v, const Shape& s, DType d, Device dev) {
  return fromHost(v, s, d, dev);
}
Tensor Tensor::scalar(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}

Tensor Tensor::makeView(const Tensor& base, const Shape& shape, const Shape& strides,
                        int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// ---- properties ----
int Tensor::normDim(int d) const {
  const int n = dim();
  const int nd = d < 0 ? d + n : d;
  LATHE_CHECK(nd >= 0 && nd < std::max(n, 1), "dimension ", d, " is out of range for ",
              describe(*this), " (expected in [", -n, ", ", n - 1, "])");
  return nd;
}

int64_t Tensor::size(int d) const {
  return shape()[static_cast<size_t>(normDim(d))];
}

bool Tensor::isContiguous() const {
  int64_t expected = 1;
  for (size_t i = shape().size(); i-- > 0;) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

bool Tensor::sameStorage(const Tensor& other) const {
  return storage() == other.storage();
}

void* Tensor::rawData() const {
  auto* base = static_cast<char*>(storage()->data());
  return base == nullptr ? nullptr : base + offset() * static_cast<int64_t>(elementSize());
}

// ---- conversions ----
Tensor Tensor::contiguous() const {
  if (isContiguous()) return *this;
  Tensor out = empty(shape(), dtype(), device());
  backendFor(*this).copy(*this, out);
  return recordUnary("Contiguous", {*this}, out,
                     [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target, device());
  if (numel() > 0) backendFor(*this).copy(*this, out);
  if (!isFloating(target)) return out;  // integer results carry no gradient
  const DType src = dtype();
  return recordUnary("ToDType", {*this}, out, [src](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].to(src)};
  });
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor out = empty(shape(), dtype(), target);
  if (numel() > 0) {
    // The non-host side's backend moves the bytes (it knows its device's copy engine).
    Backend& b = backendFor(target.isCpu() ? device().type : target.type);
    b.copy(*this, out);
  }
  const Device src = device();
  return recordUnary("ToDevice", {*this}, out, [src](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].to(src)};
  });
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  if (numel() > 0) backendFor(*this).copy(*this, out);
  return recordUnary("Clone", {*this}, out,
                     [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
}

Tensor Tensor::detach() const {
  return makeView(*this, shape(), strides(), offset());
}

// ---- views ----
namespace {

// Strides for viewing (shape, strides) as new_shape without copying, if possible (the
// algorithm of numpy's _attempt_nocopy_reshape).
std::optional<Shape> viewStrides(const Shape& shape, const Shape& strides, const Shape& new_shape) {
  if (shapeNumel(shape) == 0 || shape.empty()) return contiguousStrides(new_shape);
  Shape out(new_shape.size());
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[static_cast<size_t>(d)];
    if (d == 0 || (shape[static_cast<size_t>(d - 1)] != 1 &&
                   strides[static_cast<size_t>(d - 1)] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 &&
             (view_numel < tensor_numel || new_shape[static_cast<size_t>(view_d)] == 1)) {
        out[static_cast<size_t>(view_d)] = view_numel * chunk_base_stride;
        view_numel *= new_shape[static_cast<size_t>(view_d)];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[static_cast<size_t>(d - 1)];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

Shape inferShape(const Shape& requested, int64_t numel, const Tensor& t) {
  Shape s = requested;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      LATHE_CHECK(infer < 0, "reshape of ", describe(t), " to ", shapeStr(requested),
                  ": only one dimension can be -1");
      infer = static_cast<int>(i);
    } else {
      LATHE_CHECK(s[i] >= 0, "reshape of ", describe(t), " to ", shapeStr(requested),
                  ": negative size");
      known *= s[i];
    }
  }
  if (infer >= 0) {
    LATHE_CHECK(known > 0 && numel % known == 0, "cannot reshape ", describe(t), " to ",
                shapeStr(requested));
    s[static_cast<size_t>(infer)] = numel / known;
  }
  LATHE_CHECK(shapeNumel(s) == numel, "cannot reshape ", describe(t), " (", numel, " elements) to ",
              shapeStr(requested), " (", shapeNumel(s), " elements)");
  return s;
}

Tensor recordView(const char* name, const Tensor& base, Tensor view, BackwardFn fn) {
  return recordUnary(name, {base}, std::move(view), std::move(fn));
}

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  Shape s = inferShape(requested, numel(), *this);
  auto st = viewStrides(shape(), strides(), s);
  LATHE_CHECK(st.has_value(), "view of ", describe(*this), " as ", shapeStr(s),
              " is not possible with its strides; use reshape() (which copies)");
  Shape orig = shape();
  return recordView(
      "View", *this, makeView(*this, s, *st, offset()),
      [orig](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0].reshape(orig)}; });
}

Tensor Tensor::reshape(const Shape& requested) const {
  Shape s = inferShape(requested, numel(), *this);
  if (s == shape()) return *this;
  if (viewStrides(shape(), strides(), s)) return view(s);
  return contiguous().view(s);
}

Tensor Tensor::permute(const std::vector<int>& dims) const {
  LATHE_CHECK(static_cast<int>(dims.size()) == dim(), "permute of ", describe(*this), " needs ",
              dim(), " dims, got ", dims.size());
  Shape s(dims.size()), st(dims.size());
  std::vector<int> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int d = normDim(dims[i]);
    LATHE_CHECK(inverse[static_cast<size_t>(d)] < 0, "permute of ", describe(*this), ": dimension ",
                d, " repeated");
    inverse[static_cast<size_t>(d)] = static_cast<int>(i);
    s[i] = shape()[static_cast<size_t>(d)];
    st[i] = strides()[static_cast<size_t>(d)];
  }
  return recordView("Permute", *this, makeView(*this, s, st, offset()),
                    [inverse](const std::vector<Tensor>& g) {
                      return std::vector<Tensor>{g[0].permute(inverse)};
                    });
}

Tensor Tensor::transpose(int a, int b) const {
  std::vector<int> p(static_cast<size_t>(dim()));
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[static_cast<size_t>(normDim(a))], p[static_cast<size_t>(normDim(b))]);
  return permute(p);
}

Tensor Tensor::slice(int d0, int64_t start, int64_t end, int64_t step) const {
  const int d = normDim(d0);
  const int64_t n = shape()[static_cast<size_t>(d)];
  LATHE_CHECK(step > 0, "slice of ", describe(*this), ": step must be positive, got ", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape(), st = strides();
  s[static_cast<size_t>(d)] = (end - start + step - 1) / step;
  st[static_cast<size_t>(d)] *= step;
  const int64_t off = offset() + start * strides()[static_cast<size_t>(d)];
  Shape orig = shape();
  DType dt = dtype();
  Device dev = device();
  return recordView("Slice", *this, makeView(*this, s, st, off),
                    [orig, dt, dev, d, start, end, step](const std::vector<Tensor>& g) {
                      Tensor full = Tensor::zeros(orig, dt, dev);
                      full.slice(d, start, end, step).copy_(g[0]);
                      return std::vector<Tensor>{full};
                    });
}

Tensor Tensor::select(int d0, int64_t index) const {
  const int d = normDim(d0);
  const int64_t n = shape()[static_cast<size_t>(d)];
  LATHE_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for dim ", d,
              " of ", describe(*this));
  if (index < 0) index += n;
  return slice(d, index, index + 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& target) const {
  LATHE_CHECK(target.size() >= shape().size(), "expand of ", describe(*this), " to ",
              shapeStr(target), ": fewer dims than the tensor");
  const size_t lead = target.size() - shape().size();
  Shape st(target.size(), 0);
  Shape s = target;
  for (size_t i = 0; i < target.size(); ++i) {
    if (i < lead) continue;
    const int64_t have = shape()[i - lead];
    if (s[i] == -1) s[i] = have;
    LATHE_CHECK(have == s[i] || have == 1, "expand of ", describe(*this), " to ", shapeStr(target),
                ": dim ", i, " has size ", have, " (must be 1 or ", s[i], ")");
    st[i] = have == s[i] ? strides()[i - lead] : 0;
  }
  if (s == shape()) return *this;
  Shape orig = shape();
  return recordView(
      "Expand", *this, makeView(*this, s, st, offset()),
      [orig](const std::vector<Tensor>& g) { return std::vector<Tensor>{sumToShape(g[0], orig)}; });
}

Tensor Tensor::unsqueeze(int d0) const {
  const int n = dim();
  const int d = d0 < 0 ? d0 + n + 1 : d0;
  LATHE_CHECK(d >= 0 && d <= n, "unsqueeze: dimension ", d0, " is out of range for ",
              describe(*this));
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return view(s);
}

Tensor Tensor::squeeze(int d0) const {
  const int d = normDim(d0);
  if (shape()[static_cast<size_t>(d)] != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + d);
  return view(s);
}

Tensor Tensor::flatten(int start_dim, int end_dim) const {
  if (dim() == 0) return reshape({1});
  const int a = normDim(start_dim), b = normDim(end_dim);
  Shape s;
  for (int i = 0; i < a; ++i) s.push_back(shape()[static_cast<size_t>(i)]);
  int64_t m = 1;
  for (int i = a; i <= b; ++i) m *= shape()[static_cast<size_t>(i)];
  s.push_back(m);
  for (int i = b + 1; i < dim(); ++i) s.push_back(shape()[static_cast<size_t>(i)]);
  return reshape(s);
}

// ---- host access ----
std::vector<double> Tensor::toDoubles() const {
  NoGradGuard no_grad;
  Tensor h = to(Device::cpu()).to(DType::f64).contiguous();
  const double* p = h.numel() ? h.data<double>() : nullptr;
  return std::vector<double>(p, p + h.numel());
}

std::vector<float> Tensor::toFloats() const {
  std::vector<double> d = toDoubles();
  return std::vector<float>(d.begin(), d.end());
}

std::vector<int64_t> Tensor::toInts() const {
  NoGradGuard no_grad;
  Tensor h = to(Device::cpu()).to(DType::i64).contiguous();
  const int64_t* p = h.numel() ? h.data<int64_t>() : nullptr;
  return std::vector<int64_t>(p, p + h.numel());
}

double Tensor::item() const {
  LATHE_CHECK(numel() == 1, "item() needs a one-element tensor, got ", describe(*this));
  return toDoubles()[0];
}

std::string Tensor::toString(int max_per_dim) const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  os << "tensor " << describe(*this);
  if (requiresGrad()) os << (gradFn() ? " grad_fn=" + gradFn()->name() : " requires_grad");
  os << "\n";
  std::vector<double> v = toDoubles();
  const bool integral = !isFloating(dtype());
  Shape st = contiguousStrides(shape());
  std::function<void(int, int64_t)> rec = [&](int d, int64_t base) {
    if (d == dim()) {
      char buf[32];
      if (integral)
        std::snprintf(buf, sizeof buf, "%lld",
                      static_cast<long long>(v[static_cast<size_t>(base)]));
      else
        std::snprintf(buf, sizeof buf, "%.4f", v[static_cast<size_t>(base)]);
      os << buf;
      return;
    }
    os << "[";
    const int64_t n = shape()[static_cast<size_t>(d)];
    for (int64_t i = 0; i < n; ++i) {
      if (n > max_per_dim && i == max_per_dim / 2) {
        os << "...";
        i = n - max_per_dim / 2 - 1;
        if (i + 1 < n) os << ", ";
        continue;
      }
      rec(d + 1, base + i * st[static_cast<size_t>(d)]);
      if (i + 1 < n)
        os << (d + 1 < dim() ? ",\n" + std::string(static_cast<size_t>(d + 1), ' ') : ", ");
    }
    os << "]";
  };
  rec(0, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  return os << t.toString();
}

// ---- in-place ----
namespace {
void checkInPlace(const Tensor& t, const char* op) {
  LATHE_CHECK(!(gradEnabled() && t.requiresGrad()), op, " on ", describe(t),
              " which requires grad: in-place changes to such tensors would corrupt gradients "
              "(wrap parameter updates in NoGradGuard)");
}
}  // namespace

Tensor& Tensor::fill_(double value) {
  checkInPlace(*this, "fill_");
  if (numel() > 0) backendFor(*this).fill(*this, value);
  storage()->bumpVersion();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  checkInPlace(*this, "copy_");
  Tensor s = src.shape() == shape() ? src : src.expand(shape());
  if (numel() > 0) {
    if (s.device() == device()) {
      backendFor(*this).copy(s, *this);
    } else {
      Backend& b = backendFor(device().isCpu() ? s.device().type : device().type);
      b.copy(s, *this);
    }
  }
  storage()->bumpVersion();
  return *this;
}

// ---- autograd ----
Tensor& Tensor::setRequiresGrad(bool on) {
  LATHE_CHECK(!on || isFloating(dtype()), "only floating-point tensors can require grad, got ",
              describe(*this));
  LATHE_CHECK(isLeaf() || on, "cannot turn off requires_grad on a non-leaf tensor ",
              describe(*this), "; use detach()");
  impl().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  return impl().grad ? Tensor(impl().grad) : Tensor();
}

void Tensor::setGrad(const Tensor& g) {
  LATHE_CHECK(!g.defined() || g.shape() == shape(), "setGrad: gradient ", describe(g),
              " does not match ", describe(*this));
  impl().grad = g.defined() ? g.implShared() : nullptr;
}

void Tensor::zeroGrad() {
  impl().grad.reset();
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  Tensor g = gradient;
  if (!g.defined()) {
    LATHE_CHECK(numel() == 1, "backward() on ", describe(*this),
                " needs an explicit gradient (only one-element tensors have an implicit one)");
    g = Tensor::ones(shape(), dtype(), device());
  }
  LATHE_CHECK(g.shape() == shape(), "backward: gradient ", describe(g), " does not match ",
              describe(*this));
  runBackward({*this}, {g}, retain_graph);
}

void Tensor::registerHook(GradHook hook) {
  LATHE_CHECK(requiresGrad(), "registerHook on ", describe(*this), " which does not require grad");
  impl().hooks.push_back(std::move(hook));
}

void Tensor::registerPostAccumulateHook(PostAccumulateHook hook) {
  LATHE_CHECK(requiresGrad() && isLeaf(), "post-accumulate hooks are for leaf tensors that ",
              "require grad; got ", describe(*this));
  impl().post_hooks.push_back(std::move(hook));
}

Tensor& Tensor::setName(std::string name) {
  impl().name = std::move(name);
  return *this;
}

}  // namespace lathe
