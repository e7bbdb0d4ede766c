// Fast f32 CPU paths for softmax, layer norm, RMS norm and cross-entropy. Softmax and
// log-softmax forward and the softmax backward run oneDNN's softmax_v2 primitives (JIT, fastest
// we measured); the rest are row loops written for the compiler's vectoriser (omp simd, an exp
// without libm calls) and compiled twice, for AVX-512 and for AVX2+FMA, the widest chosen at run
// time. Rows of [N, C] are split across OpenMP threads. Saved statistics (mean, rstd, lse) are
// f32. Weight/bias gradients are summed per fixed block of rows, then over blocks in order, so
// they do not depend on the thread count. Other dtypes, and CPUs without AVX2+FMA, use the
// reference kernels.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/CpuBackend.h"
#include "kernels/cpu/fast/VecMath.h"
#include "kernels/cpu/onednn/Dnnl.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {
namespace {

constexpr int64_t kRowBlock = 32;  // rows per weight-gradient partial

// Cephes' expf (relative error ~2e-7) for the arguments softmax and cross-entropy produce
// (x - max <= 0): below -87, and -inf, give exactly 0. Written with selects so it vectorises.
[[gnu::always_inline]] inline float expNonPositive(float x) {
  const float xc = x >= -87.0f ? (x > 0.0f ? 0.0f : x) : -87.0f;  // NaN -> -87: no UB below
  return x >= -87.0f ? expInRange(xc) : (x != x ? x : 0.0f);
}

[[gnu::always_inline]] inline float rowMax(const float* x, int64_t C) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < C; ++c) m = x[c] > m ? x[c] : m;
  return m;
}

[[gnu::always_inline]] inline float rowSum(const float* x, int64_t C) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < C; ++c) s += x[c];
  return s;
}

// ---- row jobs: one description, one per-ISA entry point ----

enum class Kind {
  logSoftmaxBackward,
  layerNorm,
  layerNormBackward,
  rmsNorm,
  rmsNormBackward,
  crossEntropy,
  crossEntropyBackward
};

struct RowJob {
  Kind kind;
  int64_t C = 0;
  const float* x = nullptr;  // input rows (y for log-softmax backward)
  const float* g = nullptr;  // upstream gradient rows (per-row scalars for cross-entropy)
  const float* w = nullptr;  // weight [C] (ones when the op has none)
  const float* b = nullptr;  // bias [C] (zeros when the op has none)
  float* out = nullptr;      // y or gx rows
  float* mean = nullptr;     // [N] (cross-entropy: per-row loss)
  float* rstd = nullptr;     // [N] (cross-entropy: lse)
  float eps = 0.0f;          // norm epsilon; cross-entropy: label smoothing
  const int64_t* target = nullptr;
  int64_t ignore_index = 0;
};

// log-softmax backward: gx = g - exp(y) * sum(g).
[[gnu::always_inline]] inline void logSoftmaxBackwardRow(const RowJob& j, int64_t r) {
  const int64_t C = j.C;
  const float *y = j.x + r * C, *g = j.g + r * C;
  float* gx = j.out + r * C;
  const float s = rowSum(g, C);
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) gx[c] = g[c] - expNonPositive(y[c]) * s;
}

// Two passes over an L1/L2-resident row: mean, then the centred sum of squares (no cancellation).
[[gnu::always_inline]] inline void layerNormRow(const RowJob& j, int64_t r) {
  const int64_t C = j.C;
  const float* x = j.x + r * C;
  float* y = j.out + r * C;
  const float m = rowSum(x, C) / static_cast<float>(C);
  float v = 0.0f;
#pragma omp simd reduction(+ : v)
  for (int64_t c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
  const float rs = 1.0f / std::sqrt(v / static_cast<float>(C) + j.eps);
  j.mean[r] = m;
  j.rstd[r] = rs;
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - m) * rs * j.w[c] + j.b[c];
}

// gx = rstd * (d - mean(d) - xhat * mean(d * xhat)), d = g * w; pw/pb accumulate g * xhat, g.
[[gnu::always_inline]] inline void layerNormBackwardRow(const RowJob& j, int64_t r, float* pw,
                                                        float* pb) {
  const int64_t C = j.C;
  const float *x = j.x + r * C, *g = j.g + r * C, *w = j.w;
  float* gx = j.out + r * C;
  const float m = j.mean[r], rs = j.rstd[r];
  float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t c = 0; c < C; ++c) {
    const float d = g[c] * w[c];
    s1 += d;
    s2 += d * (x[c] - m) * rs;
  }
  s1 /= static_cast<float>(C);
  s2 /= static_cast<float>(C);
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const float xh = (x[c] - m) * rs;
    gx[c] = rs * (g[c] * w[c] - s1 - xh * s2);
    pw[c] += g[c] * xh;
    pb[c] += g[c];
  }
}

[[gnu::always_inline]] inline void rmsNormRow(const RowJob& j, int64_t r) {
  const int64_t C = j.C;
  const float* x = j.x + r * C;
  float* y = j.out + r * C;
  float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
  for (int64_t c = 0; c < C; ++c) ss += x[c] * x[c];
  const float rs = 1.0f / std::sqrt(ss / static_cast<float>(C) + j.eps);
  j.rstd[r] = rs;
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) y[c] = x[c] * rs * j.w[c];
}

// gx = rstd * (d - xhat * mean(d * xhat)), d = g * w, xhat = x * rstd; pw accumulates g * xhat.
[[gnu::always_inline]] inline void rmsNormBackwardRow(const RowJob& j, int64_t r, float* pw) {
  const int64_t C = j.C;
  const float *x = j.x + r * C, *g = j.g + r * C, *w = j.w;
  float* gx = j.out + r * C;
  const float rs = j.rstd[r];
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < C; ++c) s += g[c] * w[c] * x[c];
  s *= rs / static_cast<float>(C);
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const float xh = x[c] * rs;
    gx[c] = rs * (g[c] * w[c] - xh * s);
    pw[c] += g[c] * xh;
  }
}

// loss = lse - (1 - e) x[t] - e / C * sum(x); the row is read twice (max, then sum of exp), the
// second time from cache.
[[gnu::always_inline]] inline void crossEntropyRow(const RowJob& j, int64_t r) {
  const int64_t C = j.C, t = j.target[r];
  if (t == j.ignore_index) {
    j.mean[r] = 0.0f;
    j.rstd[r] = 0.0f;
    return;
  }
  const float* x = j.x + r * C;
  const float m = rowMax(x, C);
  float s = 0.0f, sx = 0.0f;
#pragma omp simd reduction(+ : s, sx)
  for (int64_t c = 0; c < C; ++c) {
    s += expNonPositive(x[c] - m);
    sx += x[c];
  }
  const float lse = m + std::log(s);
  j.rstd[r] = lse;
  j.mean[r] = lse - (1.0f - j.eps) * x[t] - j.eps / static_cast<float>(C) * sx;
}

// gx = g * (exp(x - lse) - e / C - (1 - e) onehot(t)): one read of the logits, one write.
[[gnu::always_inline]] inline void crossEntropyBackwardRow(const RowJob& j, int64_t r) {
  const int64_t C = j.C, t = j.target[r];
  float* gx = j.out + r * C;
  if (t == j.ignore_index) {
    std::fill(gx, gx + C, 0.0f);
    return;
  }
  const float* x = j.x + r * C;
  const float g = j.g[r], lse = j.rstd[r], smooth = j.eps / static_cast<float>(C);
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) gx[c] = g * (expNonPositive(x[c] - lse) - smooth);
  gx[t] -= g * (1.0f - j.eps);
}

// Rows [r0, r1) of a job; pw/pb are the block's weight/bias gradient partials (backward jobs).
[[gnu::always_inline]] inline void runRowsImpl(const RowJob& j, int64_t r0, int64_t r1, float* pw,
                                               float* pb) {
  for (int64_t r = r0; r < r1; ++r) {
    switch (j.kind) {
      case Kind::logSoftmaxBackward: logSoftmaxBackwardRow(j, r); break;
      case Kind::layerNorm: layerNormRow(j, r); break;
      case Kind::layerNormBackward: layerNormBackwardRow(j, r, pw, pb); break;
      case Kind::rmsNorm: rmsNormRow(j, r); break;
      case Kind::rmsNormBackward: rmsNormBackwardRow(j, r, pw); break;
      case Kind::crossEntropy: crossEntropyRow(j, r); break;
      case Kind::crossEntropyBackward: crossEntropyBackwardRow(j, r); break;
    }
  }
}

__attribute__((target("avx512f,avx2,fma"))) void runRows16(const RowJob& j, int64_t r0, int64_t r1,
                                                           float* pw, float* pb) {
  runRowsImpl(j, r0, r1, pw, pb);
}
__attribute__((target("avx2,fma"))) void runRows8(const RowJob& j, int64_t r0, int64_t r1,
                                                  float* pw, float* pb) {
  runRowsImpl(j, r0, r1, pw, pb);
}

using RunRowsFn = void (*)(const RowJob&, int64_t, int64_t, float*, float*);

// The row loop compiled for the widest ISA this CPU runs; null without AVX2+FMA.
RunRowsFn runRowsFn() {
  static const RunRowsFn fn = []() -> RunRowsFn {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return runRows16;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return runRows8;
    return nullptr;
  }();
  return fn;
}

bool useRows(const Tensor& x) {
  return x.dtype() == DType::f32 && runRowsFn() != nullptr;
}

int64_t rowsOf(const Tensor& x, int64_t C) {
  return C == 0 ? 0 : x.numel() / C;
}

// Forward jobs: rows split across threads.
void runForward(const RowJob& j, int64_t N) {
  const RunRowsFn fn = runRowsFn();
  parallelFor(N, j.C * 4, [&](int64_t r0, int64_t r1) { fn(j, r0, r1, nullptr, nullptr); });
}

// Backward jobs with weight/bias gradients: fixed blocks of rows, each with its own partial
// sums, reduced over blocks in order into gw/gb (when requested).
void runBackward(const RowJob& j, int64_t N, float* gw, float* gb) {
  const RunRowsFn fn = runRowsFn();
  const int64_t C = j.C, blocks = (N + kRowBlock - 1) / kRowBlock;
  std::vector<float> pw(static_cast<size_t>(blocks * C), 0.0f);
  std::vector<float> pb(static_cast<size_t>(blocks * C), 0.0f);
  parallelFor(blocks, kRowBlock * C * 8, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk)
      fn(j, blk * kRowBlock, std::min(N, (blk + 1) * kRowBlock), pw.data() + blk * C,
         pb.data() + blk * C);
  });
  for (float* dst : {gw, gb}) {
    if (!dst) continue;
    const float* src = dst == gw ? pw.data() : pb.data();
    std::fill(dst, dst + C, 0.0f);
    for (int64_t blk = 0; blk < blocks; ++blk)
      for (int64_t c = 0; c < C; ++c) dst[c] += src[blk * C + c];
  }
}

// Weight and bias as [C] arrays: the tensor's data, or ones/zeros held in `hold`.
const float* paramOr(const Tensor* p, int64_t C, float fill, std::vector<float>& hold) {
  if (p) return p->data<float>();
  hold.assign(static_cast<size_t>(C), fill);
  return hold.data();
}

// ---- oneDNN softmax ----

enum class SoftmaxPrim : int64_t { forward = 0, logForward = 1, backward = 2 };

onednn::PrimitiveCache<dnnl::primitive>& softmaxCache() {
  static onednn::PrimitiveCache<dnnl::primitive> cache;
  return cache;
}

// The primitive for [N, C] rows (softmax over axis 1).
dnnl::primitive softmaxPrimitive(SoftmaxPrim kind, int64_t N, int64_t C) {
  auto built = softmaxCache().get({static_cast<int64_t>(kind), N, C}, [&] {
    const dnnl::memory::desc md({N, C}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::ab);
    const auto alg = kind == SoftmaxPrim::logForward ? dnnl::algorithm::softmax_log
                                                     : dnnl::algorithm::softmax_accurate;
    const dnnl::softmax_v2_forward::primitive_desc fwd(
        {dnnl::prop_kind::forward_training, alg, md, md, 1}, onednn::engine());
    if (kind != SoftmaxPrim::backward)
      return std::optional<dnnl::primitive>(dnnl::softmax_v2_forward(fwd));
    const dnnl::softmax_v2_backward::primitive_desc bwd({alg, md, md, md, 1}, onednn::engine(),
                                                        fwd);
    return std::optional<dnnl::primitive>(dnnl::softmax_v2_backward(bwd));
  });
  return *built;
}

dnnl::memory rowsMemory(const Tensor& t, int64_t N, int64_t C) {
  return onednn::memoryOf(
      dnnl::memory::desc({N, C}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::ab), t);
}

}  // namespace

void CpuBackend::softmax(const Tensor& x, const Tensor& y, bool log) {
  if (x.dtype() != DType::f32) return ReferenceBackend::softmax(x, y, log);
  const int64_t C = x.shape().back(), N = rowsOf(x, C);
  if (N == 0 || C == 0) return;
  softmaxPrimitive(log ? SoftmaxPrim::logForward : SoftmaxPrim::forward, N, C)
      .execute(onednn::stream(),
               {{DNNL_ARG_SRC, rowsMemory(x, N, C)}, {DNNL_ARG_DST, rowsMemory(y, N, C)}});
  onednn::stream().wait();
}

void CpuBackend::softmaxBackward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  if (y.dtype() != DType::f32 || (log && !useRows(y)))
    return ReferenceBackend::softmaxBackward(y, gy, gx, log);
  const int64_t C = y.shape().back(), N = rowsOf(y, C);
  if (N == 0 || C == 0) return;
  if (log) {
    // One pass (oneDNN's log-softmax backward measured slower than this loop).
    RowJob j{Kind::logSoftmaxBackward};
    j.C = C;
    j.x = y.data<float>();
    j.g = gy.data<float>();
    j.out = gx.data<float>();
    return runForward(j, N);
  }
  softmaxPrimitive(SoftmaxPrim::backward, N, C)
      .execute(onednn::stream(), {{DNNL_ARG_DST, rowsMemory(y, N, C)},
                                  {DNNL_ARG_DIFF_DST, rowsMemory(gy, N, C)},
                                  {DNNL_ARG_DIFF_SRC, rowsMemory(gx, N, C)}});
  onednn::stream().wait();
}

void CpuBackend::layerNorm(const Tensor& x, const Tensor* w, const Tensor* b, double eps,
                           const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  if (!useRows(x)) return ReferenceBackend::layerNorm(x, w, b, eps, y, mean, rstd);
  std::vector<float> ones, zeros;
  RowJob j{Kind::layerNorm};
  j.C = x.shape().back();
  j.x = x.data<float>();
  j.w = paramOr(w, j.C, 1.0f, ones);
  j.b = paramOr(b, j.C, 0.0f, zeros);
  j.out = y.data<float>();
  j.mean = mean.data<float>();
  j.rstd = rstd.data<float>();
  j.eps = static_cast<float>(eps);
  runForward(j, rowsOf(x, j.C));
}

void CpuBackend::layerNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                   const Tensor& mean, const Tensor& rstd, const Tensor& gx,
                                   const Tensor* gw, const Tensor* gb) {
  if (!useRows(x)) return ReferenceBackend::layerNormBackward(gy, x, w, mean, rstd, gx, gw, gb);
  std::vector<float> ones;
  RowJob j{Kind::layerNormBackward};
  j.C = x.shape().back();
  j.x = x.data<float>();
  j.g = gy.data<float>();
  j.w = paramOr(w, j.C, 1.0f, ones);
  j.out = gx.data<float>();
  j.mean = mean.data<float>();
  j.rstd = rstd.data<float>();
  runBackward(j, rowsOf(x, j.C), gw ? gw->data<float>() : nullptr,
              gb ? gb->data<float>() : nullptr);
}

void CpuBackend::rmsNorm(const Tensor& x, const Tensor* w, double eps, const Tensor& y,
                         const Tensor& rstd) {
  if (!useRows(x)) return ReferenceBackend::rmsNorm(x, w, eps, y, rstd);
  std::vector<float> ones;
  RowJob j{Kind::rmsNorm};
  j.C = x.shape().back();
  j.x = x.data<float>();
  j.w = paramOr(w, j.C, 1.0f, ones);
  j.out = y.data<float>();
  j.rstd = rstd.data<float>();
  j.eps = static_cast<float>(eps);
  runForward(j, rowsOf(x, j.C));
}

void CpuBackend::rmsNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                                 const Tensor& rstd, const Tensor& gx, const Tensor* gw) {
  if (!useRows(x)) return ReferenceBackend::rmsNormBackward(gy, x, w, rstd, gx, gw);
  std::vector<float> ones;
  RowJob j{Kind::rmsNormBackward};
  j.C = x.shape().back();
  j.x = x.data<float>();
  j.g = gy.data<float>();
  j.w = paramOr(w, j.C, 1.0f, ones);
  j.out = gx.data<float>();
  j.rstd = rstd.data<float>();
  runBackward(j, rowsOf(x, j.C), gw ? gw->data<float>() : nullptr, nullptr);
}

namespace {
// Before any row is read (an exception may not leave an OpenMP region).
void checkTargets(const int64_t* t, int64_t N, int64_t C, int64_t ignore_index,
                  const Tensor& logits) {
  for (int64_t i = 0; i < N; ++i)
    LATHE_CHECK(t[i] == ignore_index || (t[i] >= 0 && t[i] < C), "crossEntropy: target ", t[i],
                " at row ", i, " is out of range for ", C, " classes (logits ", describe(logits),
                ", ignore_index ", ignore_index, ")");
}
}  // namespace

void CpuBackend::crossEntropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                              double label_smoothing, const Tensor& loss, const Tensor& lse) {
  if (!useRows(logits))
    return ReferenceBackend::crossEntropy(logits, target, ignore_index, label_smoothing, loss, lse);
  RowJob j{Kind::crossEntropy};
  j.C = logits.shape()[1];
  const int64_t N = logits.shape()[0];
  j.target = target.data<int64_t>();
  checkTargets(j.target, N, j.C, ignore_index, logits);
  j.x = logits.data<float>();
  j.mean = loss.data<float>();
  j.rstd = lse.data<float>();
  j.eps = static_cast<float>(label_smoothing);
  j.ignore_index = ignore_index;
  runForward(j, N);
}

void CpuBackend::crossEntropyBackward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                      const Tensor& grad_loss, int64_t ignore_index,
                                      double label_smoothing, const Tensor& gx) {
  if (!useRows(logits))
    return ReferenceBackend::crossEntropyBackward(logits, target, lse, grad_loss, ignore_index,
                                                  label_smoothing, gx);
  RowJob j{Kind::crossEntropyBackward};
  j.C = logits.shape()[1];
  const int64_t N = logits.shape()[0];
  j.target = target.data<int64_t>();
  checkTargets(j.target, N, j.C, ignore_index, logits);
  j.x = logits.data<float>();
  j.g = grad_loss.data<float>();
  j.rstd = lse.data<float>();  // read only
  j.out = gx.data<float>();
  j.eps = static_cast<float>(label_smoothing);
  j.ignore_index = ignore_index;
  runForward(j, N);
}

}  // namespace lathe::cpu
