// Reference 2-D convolution and pooling, forward and backward, NCHW, contiguous tensors.
// Shapes: x [N, C, H, W], w [Co, C/G, KH, KW], y [N, Co, OH, OW]; input row ih of output row oh
// and tap kh is oh*SH - PH + kh*DH (columns likewise). Every output element, and every gradient
// element, is accumulated in double by the one task that owns its plane, so there are no races
// and no atomics; padding is skipped, never read.
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {
namespace {

struct ConvGeom {
  int64_t N, C, H, W, Co, Cg, Og, KH, KW, OH, OW;
  int64_t SH, SW, PH, PW, DH, DW;
};

ConvGeom convGeom(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p) {
  ConvGeom g{};
  g.N = x.shape()[0], g.C = x.shape()[1], g.H = x.shape()[2], g.W = x.shape()[3];
  g.Co = w.shape()[0], g.Cg = w.shape()[1], g.KH = w.shape()[2], g.KW = w.shape()[3];
  g.Og = g.Co / p.groups;
  g.OH = y.shape()[2], g.OW = y.shape()[3];
  g.SH = p.stride_h, g.SW = p.stride_w, g.PH = p.pad_h, g.PW = p.pad_w;
  g.DH = p.dilation_h, g.DW = p.dilation_w;
  return g;
}

// Calls f(input offset, output offset) for every (oh, ow) whose tap (kh, kw) lands inside the
// input plane.
template <typename F>
void forEachTap(const ConvGeom& g, int64_t kh, int64_t kw, F&& f) {
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    const int64_t ih = oh * g.SH - g.PH + kh * g.DH;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      const int64_t iw = ow * g.SW - g.PW + kw * g.DW;
      if (iw < 0 || iw >= g.W) continue;
      f(ih * g.W + iw, oh * g.OW + ow);
    }
  }
}

template <typename T>
void storePlane(const std::vector<double>& acc, T* dst) {
  for (size_t i = 0; i < acc.size(); ++i) dst[i] = fromDouble<T>(acc[i]);
}

}  // namespace

void ReferenceBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                              const Conv2dParams& p) {
  const ConvGeom g = convGeom(x, w, y, p);
  LATHE_DISPATCH_FLOAT(x.dtype(), "reference conv2d", [&] {
    using T = scalar_t;
    const T* px = static_cast<const T*>(x.rawData());
    const T* pw = static_cast<const T*>(w.rawData());
    const T* pb = bias != nullptr ? static_cast<const T*>(bias->rawData()) : nullptr;
    T* py = static_cast<T*>(y.rawData());
    const int64_t cost = g.Cg * g.KH * g.KW * g.OH * g.OW;
    parallelFor(g.N * g.Co, cost, [&](int64_t t0, int64_t t1) {
      std::vector<double> acc(static_cast<size_t>(g.OH * g.OW));
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / g.Co, co = t % g.Co, grp = co / g.Og;
        std::fill(acc.begin(), acc.end(), pb != nullptr ? toDouble(pb[co]) : 0.0);
        for (int64_t ci = 0; ci < g.Cg; ++ci) {
          const T* xp = px + (n * g.C + grp * g.Cg + ci) * g.H * g.W;
          for (int64_t kh = 0; kh < g.KH; ++kh) {
            for (int64_t kw = 0; kw < g.KW; ++kw) {
              const double wv = toDouble(pw[((co * g.Cg + ci) * g.KH + kh) * g.KW + kw]);
              forEachTap(g, kh, kw, [&](int64_t i, int64_t o) {
                acc[static_cast<size_t>(o)] += wv * toDouble(xp[i]);
              });
            }
          }
        }
        storePlane(acc, py + t * g.OH * g.OW);
      }
    });
  });
}

void ReferenceBackend::conv2dBackward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                      const Tensor* gx, const Tensor* gw, const Tensor* gbias,
                                      const Conv2dParams& p) {
  const ConvGeom g = convGeom(x, w, gy, p);
  LATHE_DISPATCH_FLOAT(x.dtype(), "reference conv2dBackward", [&] {
    using T = scalar_t;
    const T* pgy = static_cast<const T*>(gy.rawData());
    const T* px = static_cast<const T*>(x.rawData());
    const T* pw = static_cast<const T*>(w.rawData());
    const int64_t ohw = g.OH * g.OW;
    if (gx != nullptr) {
      // One task per input plane (n, c): gathers from the Og output planes of its group.
      T* pgx = static_cast<T*>(gx->rawData());
      parallelFor(g.N * g.C, g.Og * g.KH * g.KW * ohw, [&](int64_t t0, int64_t t1) {
        std::vector<double> acc(static_cast<size_t>(g.H * g.W));
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t n = t / g.C, c = t % g.C, grp = c / g.Cg, ci = c % g.Cg;
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t co = grp * g.Og; co < (grp + 1) * g.Og; ++co) {
            const T* gyp = pgy + (n * g.Co + co) * ohw;
            for (int64_t kh = 0; kh < g.KH; ++kh) {
              for (int64_t kw = 0; kw < g.KW; ++kw) {
                const double wv = toDouble(pw[((co * g.Cg + ci) * g.KH + kh) * g.KW + kw]);
                forEachTap(g, kh, kw, [&](int64_t i, int64_t o) {
                  acc[static_cast<size_t>(i)] += wv * toDouble(gyp[o]);
                });
              }
            }
          }
          storePlane(acc, pgx + t * g.H * g.W);
        }
      });
    }
    if (gw != nullptr) {
      // One task per output channel: its filter gradient sums over the batch and positions.
      T* pgw = static_cast<T*>(gw->rawData());
      const int64_t taps = g.Cg * g.KH * g.KW;
      parallelFor(g.Co, g.N * taps * ohw, [&](int64_t t0, int64_t t1) {
        std::vector<double> acc(static_cast<size_t>(taps));
        for (int64_t co = t0; co < t1; ++co) {
          const int64_t grp = co / g.Og;
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t n = 0; n < g.N; ++n) {
            const T* gyp = pgy + (n * g.Co + co) * ohw;
            for (int64_t ci = 0; ci < g.Cg; ++ci) {
              const T* xp = px + (n * g.C + grp * g.Cg + ci) * g.H * g.W;
              for (int64_t kh = 0; kh < g.KH; ++kh) {
                for (int64_t kw = 0; kw < g.KW; ++kw) {
                  double s = 0.0;
                  forEachTap(g, kh, kw, [&](int64_t i, int64_t o) {
                    s += toDouble(xp[i]) * toDouble(gyp[o]);
                  });
                  acc[static_cast<size_t>((ci * g.KH + kh) * g.KW + kw)] += s;
                }
              }
            }
          }
          storePlane(acc, pgw + co * taps);
        }
      });
    }
    if (gbias != nullptr) {
      T* pgb = static_cast<T*>(gbias->rawData());
      parallelFor(g.Co, g.N * ohw, [&](int64_t t0, int64_t t1) {
        for (int64_t co = t0; co < t1; ++co) {
          double s = 0.0;
          for (int64_t n = 0; n < g.N; ++n) {
            const T* gyp = pgy + (n * g.Co + co) * ohw;
            for (int64_t o = 0; o < ohw; ++o) s += toDouble(gyp[o]);
          }
          pgb[co] = fromDouble<T>(s);
        }
      });
    }
  });
}

namespace {

struct PoolGeom {
  int64_t planes, H, W, OH, OW;
};

// The window of output (oh, ow), clipped to the input: rows [h0, h1), columns [w0, w1).
struct Window {
  int64_t h0, h1, w0, w1;
  int64_t count() const { return (h1 - h0) * (w1 - w0); }
};

Window windowOf(const PoolGeom& g, const Pool2dParams& p, int64_t oh, int64_t ow) {
  const int64_t hs = oh * p.stride_h - p.pad_h, ws = ow * p.stride_w - p.pad_w;
  return {std::max<int64_t>(hs, 0), std::min<int64_t>(hs + p.kernel_h, g.H),
          std::max<int64_t>(ws, 0), std::min<int64_t>(ws + p.kernel_w, g.W)};
}

}  // namespace

void ReferenceBackend::pool2d(const Tensor& x, const Tensor& y, const Tensor* indices,
                              const Pool2dParams& p) {
  const PoolGeom g{x.shape()[0] * x.shape()[1], x.shape()[2], x.shape()[3], y.shape()[2],
                   y.shape()[3]};
  int64_t* pi = indices != nullptr ? indices->data<int64_t>() : nullptr;
  LATHE_DISPATCH_FLOAT(x.dtype(), "reference pool2d", [&] {
    using T = scalar_t;
    const T* px = static_cast<const T*>(x.rawData());
    T* py = static_cast<T*>(y.rawData());
    const int64_t ohw = g.OH * g.OW;
    parallelFor(g.planes, ohw * p.kernel_h * p.kernel_w, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const T* xp = px + t * g.H * g.W;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const Window win = windowOf(g, p, oh, ow);
            const int64_t o = t * ohw + oh * g.OW + ow;
            if (p.max) {
              // NaN wins (as in PyTorch); an all -inf window reports its first element.
              double best = -std::numeric_limits<double>::infinity();
              int64_t arg = win.h0 * g.W + win.w0;
              for (int64_t h = win.h0; h < win.h1; ++h) {
                for (int64_t w = win.w0; w < win.w1; ++w) {
                  const double v = toDouble(xp[h * g.W + w]);
                  if (v > best || std::isnan(v)) {
                    best = v;
                    arg = h * g.W + w;
                  }
                }
              }
              py[o] = fromDouble<T>(win.count() > 0 ? best : 0.0);
              if (pi != nullptr) pi[o] = arg;
            } else {
              double s = 0.0;
              for (int64_t h = win.h0; h < win.h1; ++h) {
                for (int64_t w = win.w0; w < win.w1; ++w) s += toDouble(xp[h * g.W + w]);
              }
              py[o] = fromDouble<T>(win.count() > 0 ? s / static_cast<double>(win.count()) : 0.0);
            }
          }
        }
      }
    });
  });
}

void ReferenceBackend::pool2dBackward(const Tensor& gy, const Tensor* indices, const Tensor& gx,
                                      const Pool2dParams& p) {
  const PoolGeom g{gx.shape()[0] * gx.shape()[1], gx.shape()[2], gx.shape()[3], gy.shape()[2],
                   gy.shape()[3]};
  LATHE_CHECK(!p.max || indices != nullptr,
              "reference pool2dBackward: max pooling needs the indices saved by the forward");
  const int64_t* pi = indices != nullptr ? indices->data<int64_t>() : nullptr;
  // An out-of-range saved index is reported after the parallel region (exceptions cannot leave
  // an OpenMP region).
  std::atomic<bool> has_bad{false};
  std::atomic<int64_t> bad{0};
  LATHE_DISPATCH_FLOAT(gx.dtype(), "reference pool2dBackward", [&] {
    using T = scalar_t;
    const T* pgy = static_cast<const T*>(gy.rawData());
    T* pgx = static_cast<T*>(gx.rawData());
    const int64_t ohw = g.OH * g.OW, hw = g.H * g.W;
    parallelFor(g.planes, ohw * p.kernel_h * p.kernel_w, [&](int64_t t0, int64_t t1) {
      std::vector<double> acc(static_cast<size_t>(hw));
      for (int64_t t = t0; t < t1; ++t) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const int64_t o = t * ohw + oh * g.OW + ow;
            const double gv = toDouble(pgy[o]);
            if (p.max) {
              const int64_t idx = pi[o];
              if (idx < 0 || idx >= hw) {
                has_bad.store(true);
                bad.store(idx);
                continue;
              }
              acc[static_cast<size_t>(idx)] += gv;
            } else {
              const Window win = windowOf(g, p, oh, ow);
              if (win.count() == 0) continue;
              const double share = gv / static_cast<double>(win.count());
              for (int64_t h = win.h0; h < win.h1; ++h) {
                for (int64_t w = win.w0; w < win.w1; ++w)
                  acc[static_cast<size_t>(h * g.W + w)] += share;
              }
            }
          }
        }
        storePlane(acc, pgx + t * hw);
      }
    });
  });
  LATHE_CHECK(!has_bad.load(), "pool2dBackward: saved max index ", bad.load(),
              " is outside the input plane of ", g.H, "x", g.W, " (gx ", describe(gx), ")");
}

}  // namespace lathe::cpu
