// Reference cross-entropy: logits [N, C], target i64 [N], per-row loss [N] and the row's
// log-sum-exp [N] (stat_t: f64 for f64 logits, else f32) saved for the fused backward.
// With label smoothing e (PyTorch's definition), the target distribution is
// (1 - e) * onehot(t) + e / C, so loss = lse - (1 - e) * x[t] - e / C * sum(x) and
// d loss / d x = softmax(x) - (1 - e) * onehot(t) - e / C. Ignored rows give 0 and no gradient.
#include <cmath>
#include <limits>
#include <type_traits>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {
namespace {

template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Runs before any row is read, outside the parallel region (an exception may not leave one).
void checkTargets(const int64_t* pt, int64_t N, int64_t C, int64_t ignore_index,
                  const Tensor& logits) {
  for (int64_t i = 0; i < N; ++i)
    LATHE_CHECK(pt[i] == ignore_index || (pt[i] >= 0 && pt[i] < C), "crossEntropy: target ", pt[i],
                " at row ", i, " is out of range for ", C, " classes (logits ", describe(logits),
                ", ignore_index ", ignore_index, ")");
}

}  // namespace

void ReferenceBackend::crossEntropy(const Tensor& logits, const Tensor& target,
                                    int64_t ignore_index, double label_smoothing,
                                    const Tensor& loss, const Tensor& lse) {
  const int64_t N = logits.shape()[0], C = logits.shape()[1];
  const int64_t* pt = target.data<int64_t>();
  checkTargets(pt, N, C, ignore_index, logits);
  const double eps = label_smoothing;
  LATHE_DISPATCH_FLOAT(logits.dtype(), "crossEntropy", [&] {
    using S = stat_t<scalar_t>;
    const scalar_t* px = static_cast<const scalar_t*>(logits.rawData());
    scalar_t* pl = static_cast<scalar_t*>(loss.rawData());
    S* ps = lse.data<S>();
    parallelFor(N, C * 8, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        if (pt[r] == ignore_index) {
          pl[r] = fromDouble<scalar_t>(0.0);
          ps[r] = 0;
          continue;
        }
        const scalar_t* xr = px + r * C;
        double mx = -std::numeric_limits<double>::infinity(), sum_x = 0.0;
        for (int64_t c = 0; c < C; ++c) {
          mx = std::max(mx, toDouble(xr[c]));
          sum_x += toDouble(xr[c]);
        }
        double s = 0.0;
        for (int64_t c = 0; c < C; ++c) s += std::exp(toDouble(xr[c]) - mx);
        const double l = mx + std::log(s);
        ps[r] = static_cast<S>(l);
        double v = l - (1.0 - eps) * toDouble(xr[pt[r]]);
        if (eps != 0.0) v -= eps / static_cast<double>(C) * sum_x;
        pl[r] = fromDouble<scalar_t>(v);
      }
    });
  });
}

void ReferenceBackend::crossEntropyBackward(const Tensor& logits, const Tensor& target,
                                            const Tensor& lse, const Tensor& grad_loss,
                                            int64_t ignore_index, double label_smoothing,
                                            const Tensor& gx) {
  const int64_t N = logits.shape()[0], C = logits.shape()[1];
  const int64_t* pt = target.data<int64_t>();
  checkTargets(pt, N, C, ignore_index, logits);
  const double eps = label_smoothing;
  LATHE_DISPATCH_FLOAT(logits.dtype(), "crossEntropyBackward", [&] {
    using S = stat_t<scalar_t>;
    const scalar_t* px = static_cast<const scalar_t*>(logits.rawData());
    const scalar_t* pg = static_cast<const scalar_t*>(grad_loss.rawData());
    const S* ps = lse.data<S>();
    scalar_t* po = static_cast<scalar_t*>(gx.rawData());
    parallelFor(N, C * 8, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t* orow = po + r * C;
        if (pt[r] == ignore_index) {
          for (int64_t c = 0; c < C; ++c) orow[c] = fromDouble<scalar_t>(0.0);
          continue;
        }
        const double g = toDouble(pg[r]), l = static_cast<double>(ps[r]);
        const double smooth = eps / static_cast<double>(C);
        for (int64_t c = 0; c < C; ++c) {
          double p = std::exp(toDouble(px[r * C + c]) - l) - smooth;
          if (c == pt[r]) p -= 1.0 - eps;
          orow[c] = fromDouble<scalar_t>(g * p);
        }
      }
    });
  });
}

}  // namespace lathe::cpu
