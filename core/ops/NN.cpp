// Softmax, log-softmax, layer/RMS/batch normalisation and dropout, forward and backward. Each
// op brings its input into the kernel layout (normalised dim last, contiguous) without
// recording, calls the backend, and records one node whose backward is the matching backward
// kernel. Saved statistics (mean, rstd, invstd) are f64 for f64 inputs, f32 otherwise.
#include "core/ops/Autocast.h"
#include "core/ops/OpsCommon.h"
#include "core/tensor/Random.h"

namespace lathe {
namespace {

DType statDType(DType x) {
  return x == DType::f64 ? DType::f64 : DType::f32;
}

const Tensor* ptrOrNull(const Tensor& t) {
  return t.defined() ? &t : nullptr;
}

// Checks that an optional parameter matches x in dtype and device and has `shape`.
void checkParam(const Tensor& p, const Tensor& x, const Shape& shape, const char* op,
                const char* what) {
  if (!p.defined()) return;
  LATHE_CHECK(p.shape() == shape, op, ": ", what, " ", describe(p), " does not fit input ",
              describe(x), ": expected shape ", shapeStr(shape));
  LATHE_CHECK(p.dtype() == x.dtype(), op, ": ", what, " ", describe(p), " and input ", describe(x),
              " have different dtypes");
  LATHE_CHECK(p.device() == x.device(), op, ": ", what, " ", describe(p), " and input ",
              describe(x), " are on different devices");
}

// Moves dim d last and makes the result contiguous, recording nothing.
Tensor dimLast(const Tensor& t, int d) {
  NoGradGuard g;
  Tensor v = t.detach();
  if (d != v.dim() - 1) v = v.transpose(d, -1);
  return v.contiguous();
}

Tensor softmaxImpl(const Tensor& a, int dim, bool log, const char* name) {
  checkFloating(a, name);
  if (a.dim() == 0) return softmaxImpl(a.reshape({1}), 0, log, name).reshape({});
  const int d = a.normDim(dim);
  const Tensor xt = dimLast(a, d);
  const Tensor yt = Tensor::empty(xt.shape(), a.dtype(), a.device());
  if (yt.numel() > 0) backendFor(a).softmax(xt, yt, log);
  const Tensor out = d == a.dim() - 1 ? yt : dimLast(yt, d);
  if (!needsGrad({&a})) return out;
  SavedTensor sy(yt, log ? "logSoftmax.out" : "softmax.out");
  return recordUnary(log ? "LogSoftmax" : "Softmax", {a}, out,
                     [sy, d, log](const std::vector<Tensor>& g) {
                       const Tensor& y = sy.get();
                       Tensor gt = dimLast(g[0], d);
                       Tensor gx = Tensor::empty(y.shape(), y.dtype(), y.device());
                       if (gx.numel() > 0) backendFor(y).softmaxBackward(y, gt, gx, log);
                       return std::vector<Tensor>{d == y.dim() - 1 ? gx : dimLast(gx, d)};
                     });
}

// The trailing shape a layer/RMS norm normalises over: the parameters' shape, or the last dim.
Shape normShape(const Tensor& x, const Tensor& w, const Tensor& b, const char* op) {
  LATHE_CHECK(x.dim() >= 1, op, ": input must have at least one dim, got ", describe(x));
  if (w.defined() && b.defined())
    LATHE_CHECK(w.shape() == b.shape(), op, ": weight ", describe(w), " and bias ", describe(b),
                " have different shapes");
  const Shape s = w.defined() ? w.shape() : b.defined() ? b.shape() : Shape{x.shape().back()};
  bool fits = !s.empty() && s.size() <= x.shape().size();
  for (size_t i = 0; fits && i < s.size(); ++i)
    fits = x.shape()[x.shape().size() - s.size() + i] == s[i];
  LATHE_CHECK(fits, op, ": normalised shape ", shapeStr(s), " (from the weight/bias) does not ",
              "match the trailing dims of input ", describe(x));
  LATHE_CHECK(shapeNumel(s) > 0, op, ": cannot normalise over the empty shape ", shapeStr(s),
              " of input ", describe(x));
  return s;
}

// t contiguous and detached (the kernels' layout), recording nothing.
Tensor plain(const Tensor& t) {
  NoGradGuard g;
  return t.detach().contiguous();
}
// A [N, C] contiguous view of t (whose trailing dims multiply to C > 0).
Tensor rows(const Tensor& t, int64_t C) {
  return plain(t).view({t.numel() / C, C});
}
Tensor flatParam(const Tensor& p, int64_t C) {
  return p.defined() ? plain(p).view({C}) : Tensor();
}

}  // namespace

Tensor softmax(const Tensor& a, int dim) {
  if (autocast::wantsF32(a)) return softmax(autocast::f32(a), dim);
  return softmaxImpl(a, dim, false, "softmax");
}

Tensor logSoftmax(const Tensor& a, int dim) {
  if (autocast::wantsF32(a)) return logSoftmax(autocast::f32(a), dim);
  return softmaxImpl(a, dim, true, "logSoftmax");
}

Tensor layerNorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  if (autocast::wantsF32(x, w) || autocast::wantsF32(b))
    return layerNorm(autocast::f32(x), autocast::f32(w), autocast::f32(b), eps);
  checkFloating(x, "layerNorm");
  const Shape ns = normShape(x, w, b, "layerNorm");
  checkParam(w, x, ns, "layerNorm", "weight");
  checkParam(b, x, ns, "layerNorm", "bias");
  LATHE_CHECK(eps >= 0, "layerNorm: eps must be >= 0, got ", eps);
  const int64_t C = shapeNumel(ns);
  const Tensor x2 = rows(x, C), w2 = flatParam(w, C), b2 = flatParam(b, C);
  const int64_t N = x2.shape()[0];
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({N}, statDType(x.dtype()), x.device());
  Tensor rstd = Tensor::empty({N}, statDType(x.dtype()), x.device());
  if (y.numel() > 0)
    backendFor(x).layerNorm(x2, ptrOrNull(w2), ptrOrNull(b2), eps, y.view({N, C}), mean, rstd);
  if (!needsGrad({&x, &w, &b})) return y;
  SavedTensor sx(x2, "layerNorm.x"), sw(w2, "layerNorm.weight");
  SavedTensor sm(mean, "layerNorm.mean"), sr(rstd, "layerNorm.rstd");
  const bool need_w = w.defined() && w.requiresGrad(), need_b = b.defined() && b.requiresGrad();
  const Shape xs = x.shape();
  return recordUnary("LayerNorm", {x, w, b}, y, [=](const std::vector<Tensor>& g) {
    const Tensor& xx = sx.get();
    Tensor gy = rows(g[0], C);
    Tensor gx = Tensor::empty(xx.shape(), xx.dtype(), xx.device());
    Tensor gw = need_w ? Tensor::empty({C}, xx.dtype(), xx.device()) : Tensor();
    Tensor gb = need_b ? Tensor::empty({C}, xx.dtype(), xx.device()) : Tensor();
    if (gx.numel() > 0) {
      backendFor(xx).layerNormBackward(gy, xx, ptrOrNull(sw.get()), sm.get(), sr.get(), gx,
                                       ptrOrNull(gw), ptrOrNull(gb));
    } else {
      if (need_w) gw.zero_();
      if (need_b) gb.zero_();
    }
    return std::vector<Tensor>{gx.view(xs), need_w ? gw.view(ns) : Tensor(),
                               need_b ? gb.view(ns) : Tensor()};
  });
}

Tensor rmsNorm(const Tensor& x, const Tensor& w, double eps) {
  if (autocast::wantsF32(x, w)) return rmsNorm(autocast::f32(x), autocast::f32(w), eps);
  checkFloating(x, "rmsNorm");
  const Shape ns = normShape(x, w, Tensor(), "rmsNorm");
  checkParam(w, x, ns, "rmsNorm", "weight");
  LATHE_CHECK(eps >= 0, "rmsNorm: eps must be >= 0, got ", eps);
  const int64_t C = shapeNumel(ns);
  const Tensor x2 = rows(x, C), w2 = flatParam(w, C);
  const int64_t N = x2.shape()[0];
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor rstd = Tensor::empty({N}, statDType(x.dtype()), x.device());
  if (y.numel() > 0) backendFor(x).rmsNorm(x2, ptrOrNull(w2), eps, y.view({N, C}), rstd);
  if (!needsGrad({&x, &w})) return y;
  SavedTensor sx(x2, "rmsNorm.x"), sw(w2, "rmsNorm.weight"), sr(rstd, "rmsNorm.rstd");
  const bool need_w = w.defined() && w.requiresGrad();
  const Shape xs = x.shape();
  return recordUnary("RmsNorm", {x, w}, y, [=](const std::vector<Tensor>& g) {
    const Tensor& xx = sx.get();
    Tensor gy = rows(g[0], C);
    Tensor gx = Tensor::empty(xx.shape(), xx.dtype(), xx.device());
    Tensor gw = need_w ? Tensor::empty({C}, xx.dtype(), xx.device()) : Tensor();
    if (gx.numel() > 0)
      backendFor(xx).rmsNormBackward(gy, xx, ptrOrNull(sw.get()), sr.get(), gx, ptrOrNull(gw));
    else if (need_w)
      gw.zero_();
    return std::vector<Tensor>{gx.view(xs), need_w ? gw.view(ns) : Tensor()};
  });
}

Tensor batchNorm(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& running_mean,
                 const Tensor& running_var, bool training, double momentum, double eps) {
  if (autocast::wantsF32(x, w) || autocast::wantsF32(b))
    return batchNorm(autocast::f32(x), autocast::f32(w), autocast::f32(b), running_mean,
                     running_var, training, momentum, eps);
  checkFloating(x, "batchNorm");
  LATHE_CHECK(x.dim() >= 2, "batchNorm: input must be [N, C] or [N, C, *], got ", describe(x));
  const int64_t C = x.shape()[1];
  checkParam(w, x, {C}, "batchNorm", "weight");
  checkParam(b, x, {C}, "batchNorm", "bias");
  for (const Tensor* r : {&running_mean, &running_var}) {
    const char* what = r == &running_mean ? "running_mean" : "running_var";
    checkParam(*r, x, {C}, "batchNorm", what);
    if (!r->defined()) continue;
    LATHE_CHECK(!r->requiresGrad(), "batchNorm: ", what, " ", describe(*r),
                " requires grad; running statistics are buffers, not parameters");
    LATHE_CHECK(r->isContiguous(), "batchNorm: ", what, " ", describe(*r),
                " must be contiguous (it is updated in place)");
  }
  LATHE_CHECK(training || (running_mean.defined() && running_var.defined()),
              "batchNorm: evaluation mode needs running_mean and running_var for input ",
              describe(x));
  LATHE_CHECK(eps >= 0, "batchNorm: eps must be >= 0, got ", eps);
  const int64_t per_channel = C == 0 ? 0 : x.numel() / C;
  LATHE_CHECK(!training || per_channel > 1, "batchNorm: training needs more than one value per ",
              "channel, got input ", describe(x));
  const Tensor x2 = plain(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor smean = Tensor::empty({C}, statDType(x.dtype()), x.device());
  Tensor sinv = Tensor::empty({C}, statDType(x.dtype()), x.device());
  if (x.numel() > 0) {
    backendFor(x).batchNorm(x2, ptrOrNull(w), ptrOrNull(b), ptrOrNull(running_mean),
                            ptrOrNull(running_var), training, momentum, eps, y, smean, sinv);
    if (training)
      for (const Tensor* r : {&running_mean, &running_var})
        if (r->defined()) r->storage()->bumpVersion();
  }
  if (!needsGrad({&x, &w, &b})) return y;
  SavedTensor sx(x2, "batchNorm.x"), sw(w, "batchNorm.weight");
  SavedTensor sm(smean, "batchNorm.mean"), si(sinv, "batchNorm.invstd");
  const bool need_w = w.defined() && w.requiresGrad(), need_b = b.defined() && b.requiresGrad();
  return recordUnary("BatchNorm", {x, w, b}, y, [=](const std::vector<Tensor>& g) {
    const Tensor& xx = sx.get();
    Tensor gy = plain(g[0]);
    if (training) {
      Tensor gx = Tensor::empty(xx.shape(), xx.dtype(), xx.device());
      Tensor gw = need_w ? Tensor::empty({C}, xx.dtype(), xx.device()) : Tensor();
      Tensor gb = need_b ? Tensor::empty({C}, xx.dtype(), xx.device()) : Tensor();
      backendFor(xx).batchNormBackward(gy, xx, ptrOrNull(sw.get()), sm.get(), si.get(), gx,
                                       ptrOrNull(gw), ptrOrNull(gb));
      return std::vector<Tensor>{gx, gw, gb};
    }
    // Evaluation: y is affine in x with fixed per-channel statistics, so
    // gx = gy * w * invstd, gw = sum(gy * xhat), gb = sum(gy) over all dims but the channel.
    Shape bshape(static_cast<size_t>(xx.dim()), 1);
    bshape[1] = C;
    std::vector<int> dims;
    for (int d = 0; d < xx.dim(); ++d)
      if (d != 1) dims.push_back(d);
    const Tensor inv = si.get().to(xx.dtype()).view(bshape);
    const Tensor scale = sw.defined() ? mul(inv, sw.get().view(bshape)) : inv;
    Tensor gw, gb;
    if (need_w) {
      const Tensor xhat = mul(sub(xx, sm.get().to(xx.dtype()).view(bshape)), inv);
      gw = sum(mul(gy, xhat), dims);
    }
    if (need_b) gb = sum(gy, dims);
    return std::vector<Tensor>{mul(gy, scale), gw, gb};
  });
}

Tensor dropout(const Tensor& a, double p, bool training) {
  checkFloating(a, "dropout");
  LATHE_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p, " for ", describe(a));
  if (!training || p == 0.0) return a;
  const Tensor x = plain(a);
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  Tensor mask = Tensor::empty(a.shape(), DType::u8, a.device());
  // The draw is reserved even for an empty tensor, so the stream advances the same way.
  const RandomState rs = reserveRandom(static_cast<uint64_t>(a.numel()));
  if (a.numel() > 0) backendFor(a).dropout(x, p, rs, out, mask);
  if (!needsGrad({&a})) return out;
  SavedTensor sm(mask, "dropout.mask");
  const double scale = 1.0 / (1.0 - p);
  return recordUnary("Dropout", {a}, out, [sm, scale](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{mul(mul(g[0], sm.get().to(g[0].dtype())), scale)};
  });
}

}  // namespace lathe
