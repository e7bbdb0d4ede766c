// Reductions over dims (sum, mean, max, min, var, argmax/argmin) and their gradients.
#include "core/ops/Autocast.h"
#include "core/ops/OpsCommon.h"

namespace lathe {
namespace {

Shape dropDims(const Shape& s, const std::vector<int>& dims) {
  Shape out;
  for (size_t i = 0; i < s.size(); ++i)
    if (std::find(dims.begin(), dims.end(), static_cast<int>(i)) == dims.end()) out.push_back(s[i]);
  return out;
}

int64_t countOver(const Tensor& a, const std::vector<int>& dims) {
  int64_t n = 1;
  for (int d : dims) n *= a.shape()[static_cast<size_t>(d)];
  return n;
}

// Reduces into the keepdim shape, then views away the reduced dims unless keepdim.
Tensor reduceKernel(ReduceOp op, const Tensor& a, const std::vector<int>& dims, bool keepdim,
                    const char* name) {
  LATHE_CHECK(a.dtype() != DType::b8 || op == ReduceOp::max || op == ReduceOp::min, name,
              ": bool tensor ", describe(a));
  if (op == ReduceOp::max || op == ReduceOp::min)
    LATHE_CHECK(countOver(a, dims) > 0, name, ": cannot reduce an empty dimension of ",
                describe(a));
  if (op == ReduceOp::mean) checkFloating(a, name);
  const Shape kshape = detail::keepdimShape(a.shape(), dims);
  Tensor out = Tensor::empty(kshape, a.dtype(), a.device());
  if (out.numel() > 0) backendFor(a).reduce(op, a, dims, out);
  if (keepdim) return out;
  return Tensor::makeView(out, dropDims(a.shape(), dims),
                          contiguousStrides(dropDims(a.shape(), dims)), 0);
}

// Expands a (possibly dim-dropped) gradient back over the reduced dims.
Tensor expandBack(const Tensor& g, const Shape& kshape, const Shape& full) {
  return g.reshape(kshape).expand(full);
}

}  // namespace

Tensor sum(const Tensor& a, const std::vector<int>& dims0, bool keepdim) {
  if (autocast::wantsF32(a)) return sum(autocast::f32(a), dims0, keepdim);
  const auto dims = detail::normDims(a, dims0, "sum");
  Tensor out = reduceKernel(ReduceOp::sum, a, dims, keepdim, "sum");
  Shape full = a.shape(), kshape = detail::keepdimShape(full, dims);
  return recordUnary("Sum", {a}, out, [full, kshape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{expandBack(g[0], kshape, full)};
  });
}

Tensor mean(const Tensor& a, const std::vector<int>& dims0, bool keepdim) {
  if (autocast::wantsF32(a)) return mean(autocast::f32(a), dims0, keepdim);
  const auto dims = detail::normDims(a, dims0, "mean");
  Tensor out = reduceKernel(ReduceOp::mean, a, dims, keepdim, "mean");
  Shape full = a.shape(), kshape = detail::keepdimShape(full, dims);
  const double n = static_cast<double>(countOver(a, dims));
  return recordUnary("Mean", {a}, out, [full, kshape, n](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{expandBack(div(g[0], n), kshape, full)};
  });
}

namespace {
Tensor extremum(ReduceOp op, const Tensor& a, const std::vector<int>& dims0, bool keepdim,
                const char* name) {
  const auto dims = detail::normDims(a, dims0, name);
  Tensor out = reduceKernel(op, a, dims, keepdim, name);
  if (!needsGrad({&a})) return out;
  Shape full = a.shape(), kshape = detail::keepdimShape(full, dims);
  SavedTensor sa(a, name), so(out, name);
  return recordUnary(name, {a}, out, [sa, so, full, kshape, dims](const std::vector<Tensor>& g) {
    // The gradient goes to the elements equal to the extremum, split evenly among ties.
    Tensor hit = eq(sa.get(), so.get().reshape(kshape));
    Tensor one = Tensor::ones({}, g[0].dtype(), g[0].device());
    Tensor mask = where(hit, one, detail::zeroScalar(g[0]));
    Tensor count = sum(mask, dims, true);
    return std::vector<Tensor>{mul(div(g[0].reshape(kshape), count), mask)};
  });
}
}  // namespace

Tensor max(const Tensor& a, const std::vector<int>& dims, bool keepdim) {
  return extremum(ReduceOp::max, a, dims, keepdim, "max");
}
Tensor min(const Tensor& a, const std::vector<int>& dims, bool keepdim) {
  return extremum(ReduceOp::min, a, dims, keepdim, "min");
}

Tensor var(const Tensor& a, const std::vector<int>& dims0, int correction, bool keepdim) {
  checkFloating(a, "var");
  const auto dims = detail::normDims(a, dims0, "var");
  const int64_t n = countOver(a, dims);
  LATHE_CHECK(n - correction > 0, "var: ", n, " elements with correction ", correction,
              " leave no degrees of freedom (", describe(a), ")");
  Tensor centred = sub(a, mean(a, dims, true));
  return div(sum(square(centred), dims, keepdim), static_cast<double>(n - correction));
}

namespace {
Tensor argKernel(bool is_max, const Tensor& a, int dim, bool keepdim) {
  const int d = a.normDim(dim);
  const char* name = is_max ? "argmax" : "argmin";
  LATHE_CHECK(a.dim() > 0 && a.shape()[static_cast<size_t>(d)] > 0, name,
              ": cannot reduce an empty dimension of ", describe(a));
  Shape kshape = detail::keepdimShape(a.shape(), {d});
  Tensor out = Tensor::empty(kshape, DType::i64, a.device());
  if (out.numel() > 0) backendFor(a).argReduce(is_max, a, d, out);
  return keepdim ? out : out.squeeze(d);
}
}  // namespace

Tensor argmax(const Tensor& a, int dim, bool keepdim) {
  return argKernel(true, a, dim, keepdim);
}
Tensor argmin(const Tensor& a, int dim, bool keepdim) {
  return argKernel(false, a, dim, keepdim);
}

}  // namespace lathe
