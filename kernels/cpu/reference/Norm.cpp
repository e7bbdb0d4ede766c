// Reference softmax and normalisation kernels (ground truth for the fast paths). Rows are the
// last dim of a contiguous [N, C] view (batch norm: channels of [N, C, S]); every row statistic
// is accumulated in double, two-pass (mean, then centred sum of squares) so that large offsets do
// not cancel. Saved statistics (mean, rstd) are stat_t: f64 for f64 inputs (gradcheck is exact),
// f32 otherwise. Weight/bias gradients are column sums, computed per column block so that the
// result does not depend on the thread count.
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {
namespace {

template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
const T* cptr(const Tensor& t) {
  return static_cast<const T*>(t.rawData());
}
template <typename T>
T* mptr(const Tensor& t) {
  return static_cast<T*>(t.rawData());
}
template <typename T>
const T* cptrOrNull(const Tensor* t) {
  return t ? cptr<T>(*t) : nullptr;
}

int64_t lastDim(const Tensor& t) {
  return t.dim() == 0 ? 1 : t.shape().back();
}

// Sums f(row, c) over all rows for each column c into out[c] (double), parallel over column
// blocks: each thread owns whole columns, so the order of additions is fixed.
template <typename F>
void columnSums(int64_t rows, int64_t cols, std::vector<double>& out, F&& f) {
  out.assign(static_cast<size_t>(cols), 0.0);
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
  parallelFor(blocks, rows * kBlock, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t c0 = blk * kBlock, c1 = std::min(cols, c0 + kBlock);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = c0; c < c1; ++c) out[static_cast<size_t>(c)] += f(r, c);
    }
  });
}

}  // namespace

// ---- softmax ----

void ReferenceBackend::softmax(const Tensor& x, const Tensor& y, bool log) {
  const int64_t C = lastDim(x), N = C == 0 ? 0 : x.numel() / C;
  LATHE_DISPATCH_FLOAT(x.dtype(), "softmax", [&] {
    const scalar_t* px = cptr<scalar_t>(x);
    scalar_t* py = mptr<scalar_t>(y);
    parallelFor(N, C * 8, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* xr = px + r * C;
        scalar_t* yr = py + r * C;
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t c = 0; c < C; ++c) mx = std::max(mx, toDouble(xr[c]));
        double s = 0.0;
        for (int64_t c = 0; c < C; ++c) s += std::exp(toDouble(xr[c]) - mx);
        const double lse = mx + std::log(s);
        for (int64_t c = 0; c < C; ++c) {
          const double v = toDouble(xr[c]);
          yr[c] = fromDouble<scalar_t>(log ? v - lse : std::exp(v - mx) / s);
        }
      }
    });
  });
}

void ReferenceBackend::softmaxBackward(const Tensor& y, const Tensor& gy, const Tensor& gx,
                                       bool log) {
  const int64_t C = lastDim(y), N = C == 0 ? 0 : y.numel() / C;
  LATHE_DISPATCH_FLOAT(y.dtype(), "softmaxBackward", [&] {
    const scalar_t* py = cptr<scalar_t>(y);
    const scalar_t* pg = cptr<scalar_t>(gy);
    scalar_t* px = mptr<scalar_t>(gx);
    parallelFor(N, C * 4, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* yr = py + r * C;
        const scalar_t* gr = pg + r * C;
        scalar_t* xr = px + r * C;
        // softmax: gx = y * (g - sum(g * y)); log-softmax: gx = g - exp(y) * sum(g).
        double dot = 0.0;
        for (int64_t c = 0; c < C; ++c)
          dot += log ? toDouble(gr[c]) : toDouble(gr[c]) * toDouble(yr[c]);
        for (int64_t c = 0; c < C; ++c) {
          const double yv = toDouble(yr[c]), gv = toDouble(gr[c]);
          xr[c] = fromDouble<scalar_t>(log ? gv - std::exp(yv) * dot : yv * (gv - dot));
        }
      }
    });
  });
}

// ---- layer norm ----

void ReferenceBackend::layerNorm(const Tensor& x, const Tensor* w, const Tensor* b, double eps,
                                 const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  const int64_t C = lastDim(x), N = C == 0 ? 0 : x.numel() / C;
  LATHE_DISPATCH_FLOAT(x.dtype(), "layerNorm", [&] {
    using S = stat_t<scalar_t>;
    const scalar_t* px = cptr<scalar_t>(x);
    const scalar_t* pw = cptrOrNull<scalar_t>(w);
    const scalar_t* pb = cptrOrNull<scalar_t>(b);
    scalar_t* py = mptr<scalar_t>(y);
    S* pm = mean.data<S>();
    S* ps = rstd.data<S>();
    parallelFor(N, C * 4, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* xr = px + r * C;
        double m = 0.0;
        for (int64_t c = 0; c < C; ++c) m += toDouble(xr[c]);
        m /= static_cast<double>(C);
        double v = 0.0;
        for (int64_t c = 0; c < C; ++c) {
          const double d = toDouble(xr[c]) - m;
          v += d * d;
        }
        const double rs = 1.0 / std::sqrt(v / static_cast<double>(C) + eps);
        pm[r] = static_cast<S>(m);
        ps[r] = static_cast<S>(rs);
        for (int64_t c = 0; c < C; ++c) {
          double o = (toDouble(xr[c]) - m) * rs;
          if (pw) o *= toDouble(pw[c]);
          if (pb) o += toDouble(pb[c]);
          py[r * C + c] = fromDouble<scalar_t>(o);
        }
      }
    });
  });
}

void ReferenceBackend::layerNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                         const Tensor& mean, const Tensor& rstd, const Tensor& gx,
                                         const Tensor* gw, const Tensor* gb) {
  const int64_t C = lastDim(x), N = C == 0 ? 0 : x.numel() / C;
  LATHE_DISPATCH_FLOAT(x.dtype(), "layerNormBackward", [&] {
    using S = stat_t<scalar_t>;
    const scalar_t* pg = cptr<scalar_t>(gy);
    const scalar_t* px = cptr<scalar_t>(x);
    const scalar_t* pw = cptrOrNull<scalar_t>(w);
    const S* pm = mean.data<S>();
    const S* ps = rstd.data<S>();
    auto xhat = [&](int64_t r, int64_t c) {
      return (toDouble(px[r * C + c]) - static_cast<double>(pm[r])) * static_cast<double>(ps[r]);
    };
    // gx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = gy * w.
    scalar_t* pgx = mptr<scalar_t>(gx);
    parallelFor(N, C * 8, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        double s1 = 0.0, s2 = 0.0;
        for (int64_t c = 0; c < C; ++c) {
          const double d = toDouble(pg[r * C + c]) * (pw ? toDouble(pw[c]) : 1.0);
          s1 += d;
          s2 += d * xhat(r, c);
        }
        s1 /= static_cast<double>(C);
        s2 /= static_cast<double>(C);
        for (int64_t c = 0; c < C; ++c) {
          const double d = toDouble(pg[r * C + c]) * (pw ? toDouble(pw[c]) : 1.0);
          pgx[r * C + c] =
              fromDouble<scalar_t>(static_cast<double>(ps[r]) * (d - s1 - xhat(r, c) * s2));
        }
      }
    });
    std::vector<double> acc;
    if (gw) {
      columnSums(N, C, acc,
                 [&](int64_t r, int64_t c) { return toDouble(pg[r * C + c]) * xhat(r, c); });
      scalar_t* o = mptr<scalar_t>(*gw);
      for (int64_t c = 0; c < C; ++c) o[c] = fromDouble<scalar_t>(acc[static_cast<size_t>(c)]);
    }
    if (gb) {
      columnSums(N, C, acc, [&](int64_t r, int64_t c) { return toDouble(pg[r * C + c]); });
      scalar_t* o = mptr<scalar_t>(*gb);
      for (int64_t c = 0; c < C; ++c) o[c] = fromDouble<scalar_t>(acc[static_cast<size_t>(c)]);
    }
  });
}

// ---- RMS norm ----

void ReferenceBackend::rmsNorm(const Tensor& x, const Tensor* w, double eps, const Tensor& y,
                               const Tensor& rstd) {
  const int64_t C = lastDim(x), N = C == 0 ? 0 : x.numel() / C;
  LATHE_DISPATCH_FLOAT(x.dtype(), "rmsNorm", [&] {
    using S = stat_t<scalar_t>;
    const scalar_t* px = cptr<scalar_t>(x);
    const scalar_t* pw = cptrOrNull<scalar_t>(w);
    scalar_t* py = mptr<scalar_t>(y);
    S* ps = rstd.data<S>();
    parallelFor(N, C * 4, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        double ss = 0.0;
        for (int64_t c = 0; c < C; ++c) ss += toDouble(px[r * C + c]) * toDouble(px[r * C + c]);
        const double rs = 1.0 / std::sqrt(ss / static_cast<double>(C) + eps);
        ps[r] = static_cast<S>(rs);
        for (int64_t c = 0; c < C; ++c)
          py[r * C + c] =
              fromDouble<scalar_t>(toDouble(px[r * C + c]) * rs * (pw ? toDouble(pw[c]) : 1.0));
      }
    });
  });
}

void ReferenceBackend::rmsNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                       const Tensor& rstd, const Tensor& gx, const Tensor* gw) {
  const int64_t C = lastDim(x), N = C == 0 ? 0 : x.numel() / C;
  LATHE_DISPATCH_FLOAT(x.dtype(), "rmsNormBackward", [&] {
    using S = stat_t<scalar_t>;
    const scalar_t* pg = cptr<scalar_t>(gy);
    const scalar_t* px = cptr<scalar_t>(x);
    const scalar_t* pw = cptrOrNull<scalar_t>(w);
    const S* ps = rstd.data<S>();
    scalar_t* pgx = mptr<scalar_t>(gx);
    // gx = rstd * (d - xhat * mean(d * xhat)), d = gy * w, xhat = x * rstd.
    parallelFor(N, C * 6, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const double rs = static_cast<double>(ps[r]);
        double s = 0.0;
        for (int64_t c = 0; c < C; ++c)
          s +=
              toDouble(pg[r * C + c]) * (pw ? toDouble(pw[c]) : 1.0) * toDouble(px[r * C + c]) * rs;
        s /= static_cast<double>(C);
        for (int64_t c = 0; c < C; ++c) {
          const double d = toDouble(pg[r * C + c]) * (pw ? toDouble(pw[c]) : 1.0);
          pgx[r * C + c] = fromDouble<scalar_t>(rs * (d - toDouble(px[r * C + c]) * rs * s));
        }
      }
    });
    if (gw) {
      std::vector<double> acc;
      columnSums(N, C, acc, [&](int64_t r, int64_t c) {
        return toDouble(pg[r * C + c]) * toDouble(px[r * C + c]) * static_cast<double>(ps[r]);
      });
      scalar_t* o = mptr<scalar_t>(*gw);
      for (int64_t c = 0; c < C; ++c) o[c] = fromDouble<scalar_t>(acc[static_cast<size_t>(c)]);
    }
  });
}

// ---- batch norm: x [N, C, S] (S = product of the spatial dims), statistics per channel ----

void ReferenceBackend::batchNorm(const Tensor& x, const Tensor* w, const Tensor* b,
                                 const Tensor* running_mean, const Tensor* running_var,
                                 bool training, double momentum, double eps, const Tensor& y,
                                 const Tensor& save_mean, const Tensor& save_invstd) {
  const int64_t N = x.shape()[0], C = x.shape()[1];
  const int64_t S = N * C == 0 ? 0 : x.numel() / (N * C);
  const int64_t M = N * S;  // values per channel
  LATHE_DISPATCH_FLOAT(x.dtype(), "batchNorm", [&] {
    using St = stat_t<scalar_t>;
    const scalar_t* px = cptr<scalar_t>(x);
    const scalar_t* pw = cptrOrNull<scalar_t>(w);
    const scalar_t* pb = cptrOrNull<scalar_t>(b);
    scalar_t* prm = running_mean ? mptr<scalar_t>(*running_mean) : nullptr;
    scalar_t* prv = running_var ? mptr<scalar_t>(*running_var) : nullptr;
    scalar_t* py = mptr<scalar_t>(y);
    St* psm = save_mean.data<St>();
    St* psi = save_invstd.data<St>();
    parallelFor(C, M * 4, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double m = 0.0, inv = 0.0;
        if (training) {
          for (int64_t n = 0; n < N; ++n)
            for (int64_t s = 0; s < S; ++s) m += toDouble(px[(n * C + c) * S + s]);
          m /= static_cast<double>(M);
          double v = 0.0;
          for (int64_t n = 0; n < N; ++n)
            for (int64_t s = 0; s < S; ++s) {
              const double d = toDouble(px[(n * C + c) * S + s]) - m;
              v += d * d;
            }
          v /= static_cast<double>(M);
          inv = 1.0 / std::sqrt(v + eps);
          // Running variance is unbiased (PyTorch); the normalisation uses the biased one.
          if (prm) prm[c] = fromDouble<scalar_t>((1 - momentum) * toDouble(prm[c]) + momentum * m);
          if (prv && M > 1)
            prv[c] = fromDouble<scalar_t>((1 - momentum) * toDouble(prv[c]) +
                                          momentum * v * static_cast<double>(M) / (M - 1.0));
        } else {
          m = toDouble(prm[c]);
          inv = 1.0 / std::sqrt(toDouble(prv[c]) + eps);
        }
        psm[c] = static_cast<St>(m);
        psi[c] = static_cast<St>(inv);
        const double scale = inv * (pw ? toDouble(pw[c]) : 1.0);
        const double shift = (pb ? toDouble(pb[c]) : 0.0) - m * scale;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t s = 0; s < S; ++s) {
            const int64_t i = (n * C + c) * S + s;
            py[i] = fromDouble<scalar_t>(toDouble(px[i]) * scale + shift);
          }
      }
    });
  });
}

// Training-mode gradient (batch statistics depend on x):
// gx = w * invstd * (gy - mean(gy) - xhat * mean(gy * xhat)), per channel.
void ReferenceBackend::batchNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                         const Tensor& save_mean, const Tensor& save_invstd,
                                         const Tensor& gx, const Tensor* gw, const Tensor* gb) {
  const int64_t N = x.shape()[0], C = x.shape()[1];
  const int64_t S = N * C == 0 ? 0 : x.numel() / (N * C);
  const int64_t M = N * S;
  LATHE_DISPATCH_FLOAT(x.dtype(), "batchNormBackward", [&] {
    using St = stat_t<scalar_t>;
    const scalar_t* pg = cptr<scalar_t>(gy);
    const scalar_t* px = cptr<scalar_t>(x);
    const scalar_t* pw = cptrOrNull<scalar_t>(w);
    const St* psm = save_mean.data<St>();
    const St* psi = save_invstd.data<St>();
    scalar_t* pgx = mptr<scalar_t>(gx);
    scalar_t* pgw = gw ? mptr<scalar_t>(*gw) : nullptr;
    scalar_t* pgb = gb ? mptr<scalar_t>(*gb) : nullptr;
    parallelFor(C, M * 8, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const double m = static_cast<double>(psm[c]), inv = static_cast<double>(psi[c]);
        double sg = 0.0, sgx = 0.0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t s = 0; s < S; ++s) {
            const int64_t i = (n * C + c) * S + s;
            const double g = toDouble(pg[i]);
            sg += g;
            sgx += g * (toDouble(px[i]) - m) * inv;
          }
        if (pgw) pgw[c] = fromDouble<scalar_t>(sgx);
        if (pgb) pgb[c] = fromDouble<scalar_t>(sg);
        const double k = inv * (pw ? toDouble(pw[c]) : 1.0);
        const double mg = sg / static_cast<double>(M), mgx = sgx / static_cast<double>(M);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t s = 0; s < S; ++s) {
            const int64_t i = (n * C + c) * S + s;
            const double xh = (toDouble(px[i]) - m) * inv;
            pgx[i] = fromDouble<scalar_t>(k * (toDouble(pg[i]) - mg - xh * mgx));
          }
      }
    });
  });
}

}  // namespace lathe::cpu
