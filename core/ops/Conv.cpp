// Convolution and pooling ops (NCHW) with their gradient rules. x [N, C, H, W], weight
// [Cout, C/groups, kh, kw], output [N, Cout, OH, OW] with OH = (H + 2*pad - dil*(kh-1) - 1) /
// stride + 1 (floor). Kernels get contiguous tensors; backward goes through conv2dBackward and
// pool2dBackward (max pooling saves the i64 index of each maximum within its input plane).
#include "core/ops/Autocast.h"
#include "core/ops/OpsCommon.h"

namespace lathe {
namespace {

// Output extent of one spatial dim, or a lathe::Error naming the tensors when it is empty.
int64_t outExtent(int64_t in, int k, int stride, int pad, int dil, const char* op, const char* dim,
                  const Tensor& x, const std::string& what) {
  const int64_t span = static_cast<int64_t>(dil) * (k - 1) + 1;
  const int64_t padded = in + 2 * static_cast<int64_t>(pad);
  LATHE_CHECK(padded >= span, op, ": input ", describe(x), " is too small for ", what, ": padded ",
              dim, " ", padded, " < window extent ", span);
  return (padded - span) / stride + 1;
}

Tensor contiguousDetached(const Tensor& t) {
  NoGradGuard no_grad;
  return t.detach().contiguous();
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  if (autocast::wantsLow(x, w, b))
    return conv2d(autocast::low(x), autocast::low(w), autocast::low(b), p);
  LATHE_CHECK(x.defined() && w.defined(), "conv2d: undefined input or weight");
  checkSameDevice(x, w, "conv2d");
  checkSameDType(x, w, "conv2d");
  detail::requireFloating(x, "conv2d", "input");
  LATHE_CHECK(x.dim() == 4, "conv2d: input ", describe(x), " must be 4-D [N, C, H, W]");
  LATHE_CHECK(w.dim() == 4, "conv2d: weight ", describe(w),
              " must be 4-D [Cout, Cin/groups, kh, kw]");
  LATHE_CHECK(p.stride_h >= 1 && p.stride_w >= 1 && p.dilation_h >= 1 && p.dilation_w >= 1 &&
                  p.pad_h >= 0 && p.pad_w >= 0 && p.groups >= 1,
              "conv2d: invalid parameters stride ", p.stride_h, "x", p.stride_w, ", padding ",
              p.pad_h, "x", p.pad_w, ", dilation ", p.dilation_h, "x", p.dilation_w, ", groups ",
              p.groups, " (expected stride, dilation, groups >= 1 and padding >= 0)");
  const int64_t C = x.shape()[1], Co = w.shape()[0];
  LATHE_CHECK(C % p.groups == 0 && Co % p.groups == 0, "conv2d: input ", describe(x),
              " and weight ", describe(w), ": channels ", C, " (in) and ", Co,
              " (out) must both be divisible by groups = ", p.groups);
  LATHE_CHECK(w.shape()[1] == C / p.groups, "conv2d: weight ", describe(w),
              " does not match input ", describe(x), " with groups = ", p.groups,
              ": expected weight dim 1 to be ", C / p.groups);
  if (b.defined()) {
    checkSameDevice(x, b, "conv2d");
    checkSameDType(x, b, "conv2d");
    LATHE_CHECK(b.dim() == 1 && b.shape()[0] == Co, "conv2d: bias ", describe(b),
                " does not match weight ", describe(w), ": expected shape [", Co, "]");
  }
  const std::string what = "weight " + describe(w);
  const int64_t OH = outExtent(x.shape()[2], static_cast<int>(w.shape()[2]), p.stride_h, p.pad_h,
                               p.dilation_h, "conv2d", "height", x, what);
  const int64_t OW = outExtent(x.shape()[3], static_cast<int>(w.shape()[3]), p.stride_w, p.pad_w,
                               p.dilation_w, "conv2d", "width", x, what);

  const Tensor xc = contiguousDetached(x), wc = contiguousDetached(w);
  const Tensor bc = b.defined() ? contiguousDetached(b) : Tensor();
  Tensor y = Tensor::empty({x.shape()[0], Co, OH, OW}, x.dtype(), x.device());
  Backend& be = backendFor(x);
  if (y.numel() > 0) {
    if (xc.numel() > 0 && wc.numel() > 0) {
      be.conv2d(xc, wc, bc.defined() ? &bc : nullptr, y, p);
    } else if (bc.defined()) {  // no input channels: every output is its bias
      be.copy(detail::broadcastView(bc.reshape({Co, 1, 1}), y.shape()), y);
    } else {
      be.fill(y, 0.0);
    }
  }
  if (!needsGrad({&x, &w, &b})) return y;

  const bool gx = x.requiresGrad(), gw = w.requiresGrad(), gb = b.defined() && b.requiresGrad();
  // The data gradient needs only w, the weight gradient only x; both kernels take both.
  const SavedTensor saved_x(xc, "conv2d.x"), saved_w(wc, "conv2d.w");
  const Shape sx = x.shape(), sw = w.shape();
  return recordUnary("Conv2d", {x, w, b}, y, [=](const std::vector<Tensor>& g) {
    const Tensor gy = g[0].contiguous();
    const Tensor& xs = saved_x.get();
    const Tensor& ws = saved_w.get();
    Tensor dx = gx ? Tensor::empty(sx, gy.dtype(), gy.device()) : Tensor();
    Tensor dw = gw ? Tensor::empty(sw, gy.dtype(), gy.device()) : Tensor();
    Tensor db = gb ? Tensor::empty({sw[0]}, gy.dtype(), gy.device()) : Tensor();
    if (gy.numel() == 0 || xs.numel() == 0 || ws.numel() == 0) {
      // Nothing flows through an empty convolution; the bias still sums gy.
      for (Tensor* t : {&dx, &dw})
        if (t->defined()) t->zero_();
      if (gb) db = sum(gy, {0, 2, 3});
    } else {
      backendFor(gy).conv2dBackward(gy, xs, ws, gx ? &dx : nullptr, gw ? &dw : nullptr,
                                    gb ? &db : nullptr, p);
    }
    return std::vector<Tensor>{dx, dw, db};
  });
}

namespace {

Tensor pool2d(const Tensor& x, int kernel, int stride, int padding, bool is_max) {
  const char* op = is_max ? "maxPool2d" : "avgPool2d";
  LATHE_CHECK(x.defined(), op, ": undefined input");
  detail::requireFloating(x, op, "input");
  LATHE_CHECK(x.dim() == 4 || x.dim() == 3, op, ": input ", describe(x),
              " must be 4-D [N, C, H, W] or 3-D [C, H, W]");
  if (stride == -1) stride = kernel;
  LATHE_CHECK(kernel >= 1 && stride >= 1 && padding >= 0 && padding <= kernel / 2, op, ": kernel ",
              kernel, ", stride ", stride, ", padding ", padding, " are invalid for input ",
              describe(x),
              " (expected kernel >= 1, stride >= 1 or -1, 0 <= padding <= kernel / 2)");
  Pool2dParams p;
  p.kernel_h = p.kernel_w = kernel;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = padding;
  p.max = is_max;
  const std::string what = "kernel " + std::to_string(kernel);
  const Shape sx = x.shape();
  const int64_t H = sx[sx.size() - 2], W = sx.back();
  const int64_t OH = outExtent(H, kernel, stride, padding, 1, op, "height", x, what);
  const int64_t OW = outExtent(W, kernel, stride, padding, 1, op, "width", x, what);

  Tensor xc = contiguousDetached(x);
  if (x.dim() == 3) xc = xc.reshape({1, sx[0], H, W});
  const Shape ys{xc.shape()[0], xc.shape()[1], OH, OW};
  Tensor y = Tensor::empty(ys, x.dtype(), x.device());
  const bool grad = needsGrad({&x});
  Tensor indices = is_max && grad ? Tensor::empty(ys, DType::i64, x.device()) : Tensor();
  if (y.numel() > 0) backendFor(x).pool2d(xc, y, indices.defined() ? &indices : nullptr, p);
  Shape out_shape = ys;
  if (x.dim() == 3) out_shape.erase(out_shape.begin());
  y = Tensor::makeView(y, out_shape, contiguousStrides(out_shape), 0);
  if (!grad) return y;

  return recordUnary(is_max ? "MaxPool2d" : "AvgPool2d", {x}, y,
                     [p, ys, sx, indices, xshape = xc.shape()](const std::vector<Tensor>& g) {
                       const Tensor gy = g[0].reshape(ys).contiguous();
                       Tensor gx = Tensor::empty(xshape, gy.dtype(), gy.device());
                       if (gy.numel() > 0) {
                         backendFor(gy).pool2dBackward(gy, p.max ? &indices : nullptr, gx, p);
                       } else {
                         gx.zero_();
                       }
                       return std::vector<Tensor>{gx.reshape(sx)};
                     });
}

}  // namespace

Tensor maxPool2d(const Tensor& x, int kernel, int stride, int padding) {
  return pool2d(x, kernel, stride, padding, true);
}

Tensor avgPool2d(const Tensor& x, int kernel, int stride, int padding) {
  return pool2d(x, kernel, stride, padding, false);
}

}  // namespace lathe
