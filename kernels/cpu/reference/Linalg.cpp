// Reference matmul: out[b] = op(a[b]) @ op(b[b]) (+ bias[N]) (+ out when accumulating), for 2-D
// or 3-D contiguous operands whose transposes are read through strides (trans flags). Each
// output row is accumulated in double, so it is the ground truth for the oneDNN and CUDA paths.
// Shapes: op(a) [M, K], op(b) [K, N], out [M, N] (with a leading batch dim B when 3-D).
#include <algorithm>
#include <vector>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {

void ReferenceBackend::matmul(const Tensor& a, const Tensor& b, const Tensor* bias,
                              const Tensor& out, bool trans_a, bool trans_b, bool accumulate) {
  const int64_t B = out.dim() == 3 ? out.shape()[0] : 1;
  const int64_t M = out.size(-2), N = out.size(-1);
  const int64_t K = trans_a ? a.size(-2) : a.size(-1);
  // Element strides of op(a) as [M, K] and of op(b) as [K, N] inside one batch entry.
  const int64_t a_ms = trans_a ? 1 : K, a_ks = trans_a ? M : 1;
  const int64_t b_ks = trans_b ? 1 : N, b_ns = trans_b ? K : 1;
  LATHE_DISPATCH_FLOAT(out.dtype(), "reference matmul", [&] {
    using T = scalar_t;
    const T* pa = static_cast<const T*>(a.rawData());
    const T* pb = static_cast<const T*>(b.rawData());
    const T* pbias = bias != nullptr ? static_cast<const T*>(bias->rawData()) : nullptr;
    T* po = static_cast<T*>(out.rawData());
    parallelFor(B * M, std::max<int64_t>(K * N, 1), [&](int64_t r0, int64_t r1) {
      std::vector<double> acc(static_cast<size_t>(N));
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t bi = r / M, i = r % M;
        const T* arow = pa + bi * M * K + i * a_ms;
        const T* bmat = pb + bi * K * N;
        if (trans_b) {
          // b is [N, K] in memory: each output is a unit-stride dot product.
          for (int64_t j = 0; j < N; ++j) {
            double s = 0.0;
            for (int64_t k = 0; k < K; ++k)
              s += toDouble(arow[k * a_ks]) * toDouble(bmat[j * b_ns + k]);
            acc[static_cast<size_t>(j)] = s;
          }
        } else {
          // b is [K, N] in memory: accumulate scaled rows of b (unit stride over N).
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t k = 0; k < K; ++k) {
            const double av = toDouble(arow[k * a_ks]);
            const T* brow = bmat + k * b_ks;
            for (int64_t j = 0; j < N; ++j) acc[static_cast<size_t>(j)] += av * toDouble(brow[j]);
          }
        }
        T* orow = po + r * N;
        for (int64_t j = 0; j < N; ++j) {
          double v = acc[static_cast<size_t>(j)];
          if (pbias != nullptr) v += toDouble(pbias[j]);
          if (accumulate) v += toDouble(orow[j]);
          orow[j] = fromDouble<T>(v);
        }
      }
    });
  });
}

}  // namespace lathe::cpu
