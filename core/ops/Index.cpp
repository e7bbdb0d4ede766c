// Indexing ops with torch semantics: indexSelect, gather, scatter (replace or add) and
// embedding. Index tensors (i64 or i32) are converted to contiguous i64 and range-checked on the
// host before any kernel runs, so a bad index is a lathe::Error naming the value, the dim size
// and the tensor. Gradients: indexSelect/embedding scatter-add (indexAdd) into zeros, gather
// scatter-adds, scatter gathers.
#include "core/ops/OpsCommon.h"

namespace lathe {
namespace {

// index as contiguous i64 on its device, recording nothing.
Tensor indexI64(const Tensor& index) {
  NoGradGuard g;
  return index.detach().to(DType::i64).contiguous();
}

Tensor plain(const Tensor& t) {
  NoGradGuard g;
  return t.detach().contiguous();
}

void checkValues(const Tensor& idx, int64_t size, int dim, const Tensor& t, const char* op) {
  const Tensor host = idx.device().isCpu() ? idx : idx.to(Device::cpu());
  const int64_t* p = host.data<int64_t>();
  for (int64_t i = 0; i < host.numel(); ++i)
    LATHE_CHECK(p[i] >= 0 && p[i] < size, op, ": index ", p[i], " is out of range for dim ", dim,
                " of size ", size, " of ", describe(t), " (expected in [0, ", size, "))");
}

// torch's rule for gather/scatter: index has the rank of `t` and fits inside it in every dim
// (except `dim` when `skip_dim`).
void checkIndexFits(const Tensor& index, const Tensor& t, int dim, bool skip_dim, const char* op,
                    const char* what) {
  LATHE_CHECK(index.dim() == t.dim(), op, ": index ", describe(index), " must have as many dims ",
              "as ", what, " ", describe(t));
  for (int d = 0; d < t.dim(); ++d) {
    if (skip_dim && d == dim) continue;
    LATHE_CHECK(index.shape()[static_cast<size_t>(d)] <= t.shape()[static_cast<size_t>(d)], op,
                ": index ", describe(index), " is larger than ", what, " ", describe(t), " in dim ",
                d);
  }
}

void checkHasDims(const Tensor& t, const char* op) {
  LATHE_CHECK(t.dim() >= 1, op, ": input must have at least one dim, got ", describe(t));
}

// A zero tensor of `shape` with index-selected rows of `g` added back: the gradient of a select.
Tensor indexAddInto(const Shape& shape, int dim, const Tensor& idx, const Tensor& g) {
  Tensor out = Tensor::zeros(shape, g.dtype(), g.device());
  if (g.numel() > 0) backendFor(g).indexAdd(out, dim, idx, plain(g));
  return out;
}

Tensor gatherRaw(const Tensor& x, int dim, const Tensor& idx) {
  Tensor out = Tensor::empty(idx.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backendFor(x).gather(plain(x), dim, idx, out);
  return out;
}

// A copy of `base` with `src` scattered (or added) at idx along dim.
Tensor scatterRaw(const Tensor& base, int dim, const Tensor& idx, const Tensor& src, bool add) {
  Tensor out = Tensor::empty(base.shape(), base.dtype(), base.device());
  if (out.numel() > 0) backendFor(base).copy(base, out);
  if (idx.numel() > 0) backendFor(base).scatter(out, dim, idx, plain(src), add);
  return out;
}

}  // namespace

Tensor indexSelect(const Tensor& a, int dim, const Tensor& index) {
  checkHasDims(a, "indexSelect");
  detail::requireIndex(index, a.device(), "indexSelect", "index");
  LATHE_CHECK(index.dim() <= 1, "indexSelect: index must be 1-D, got ", describe(index));
  const int d = a.normDim(dim);
  const Tensor idx = indexI64(index);
  checkValues(idx, a.shape()[static_cast<size_t>(d)], d, a, "indexSelect");
  Shape os = a.shape();
  os[static_cast<size_t>(d)] = idx.numel();
  Tensor out = Tensor::empty(os, a.dtype(), a.device());
  if (out.numel() > 0) backendFor(a).indexSelect(plain(a), d, idx, out);
  if (!needsGrad({&a})) return out;
  const Shape as = a.shape();
  return recordUnary("IndexSelect", {a}, out, [idx, d, as](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{indexAddInto(as, d, idx, g[0])};
  });
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  LATHE_CHECK(weight.dim() == 2, "embedding: weight must be [V, C], got ", describe(weight));
  detail::requireIndex(ids, weight.device(), "embedding", "ids");
  const Tensor idx = indexI64(ids);
  checkValues(idx, weight.shape()[0], 0, weight, "embedding");
  Shape os = ids.shape();
  os.push_back(weight.shape()[1]);
  Tensor out = Tensor::empty(os, weight.dtype(), weight.device());
  if (out.numel() > 0) backendFor(weight).indexSelect(plain(weight), 0, idx, out);
  if (!needsGrad({&weight})) return out;
  const Shape ws = weight.shape();
  return recordUnary("Embedding", {weight}, out, [idx, ws](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{indexAddInto(ws, 0, idx, g[0])};
  });
}

Tensor gather(const Tensor& a, int dim, const Tensor& index) {
  checkHasDims(a, "gather");
  detail::requireIndex(index, a.device(), "gather", "index");
  const int d = a.normDim(dim);
  checkIndexFits(index, a, d, true, "gather", "input");
  const Tensor idx = indexI64(index);
  checkValues(idx, a.shape()[static_cast<size_t>(d)], d, a, "gather");
  Tensor out = gatherRaw(a, d, idx);
  if (!needsGrad({&a})) return out;
  const Shape as = a.shape();
  return recordUnary("Gather", {a}, out, [idx, d, as](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{
        scatterRaw(Tensor::zeros(as, g[0].dtype(), g[0].device()), d, idx, g[0], true)};
  });
}

Tensor scatter(const Tensor& a, int dim, const Tensor& index, const Tensor& src, bool add) {
  checkHasDims(a, "scatter");
  detail::requireIndex(index, a.device(), "scatter", "index");
  checkSameDevice(a, src, "scatter");
  checkSameDType(a, src, "scatter");
  const int d = a.normDim(dim);
  checkIndexFits(index, a, d, true, "scatter", "input");
  checkIndexFits(index, src, d, false, "scatter", "src");
  const Tensor idx = indexI64(index);
  checkValues(idx, a.shape()[static_cast<size_t>(d)], d, a, "scatter");
  Tensor out = scatterRaw(a, d, idx, src, add);
  if (!needsGrad({&a, &src})) return out;
  const bool need_src = src.requiresGrad();
  const Shape ss = src.shape();
  return recordUnary(add ? "ScatterAdd" : "Scatter", {a, src}, out,
                     [idx, d, add, need_src, ss](const std::vector<Tensor>& g) {
                       // The base keeps its gradient except where it was overwritten; each used src
                       // element receives the gradient of the position it went to.
                       Tensor ga =
                           add ? g[0]
                               : scatterRaw(g[0], d, idx,
                                            Tensor::zeros(idx.shape(), g[0].dtype(), g[0].device()),
                                            false);
                       Tensor gs;
                       if (need_src) {
                         Tensor part = gatherRaw(g[0], d, idx);
                         if (part.shape() == ss) {
                           gs = part;
                         } else {
                           gs = Tensor::zeros(ss, g[0].dtype(), g[0].device());
                           Tensor window = gs;
                           for (int k = 0; k < part.dim(); ++k)
                             window = window.slice(k, 0, part.shape()[k]);
                           window.copy_(part);
                         }
                       }
                       return std::vector<Tensor>{ga, gs};
                     });
}

}  // namespace lathe
