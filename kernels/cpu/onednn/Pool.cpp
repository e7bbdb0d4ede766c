// Fast 2-D pooling for f32 and bf16, NCHW. Average pooling (padding excluded from the count) and
// max pooling without saved indices run as oneDNN primitives. Max pooling for training must
// save i64 indices within the input plane, which oneDNN's opaque workspace cannot give, so it is
// a direct loop here: one pass over x per plane, computing in float. Other dtypes and anything
// oneDNN cannot implement use the reference kernels. x [N, C, H, W], y [N, C, OH, OW].
#include <atomic>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/CpuBackend.h"
#include "kernels/cpu/onednn/Dnnl.h"
#include "kernels/cpu/reference/Strided.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#define LATHE_POOL_SSE 1
#endif

namespace lathe::cpu {
namespace {

using dnnl::memory;

struct PoolPrims {
  memory::desc src, dst;
  dnnl::pooling_forward fwd;
  std::optional<dnnl::pooling_backward> bwd;  // built for average pooling only
};

std::optional<PoolPrims> buildPool(memory::data_type dt, const Shape& xs, const Shape& ys,
                                   const Pool2dParams& p) {
  PoolPrims r;
  r.src = memory::desc({xs[0], xs[1], xs[2], xs[3]}, dt, memory::format_tag::nchw);
  r.dst = memory::desc({ys[0], ys[1], ys[2], ys[3]}, dt, memory::format_tag::nchw);
  const auto alg =
      p.max ? dnnl::algorithm::pooling_max : dnnl::algorithm::pooling_avg_exclude_padding;
  // Symmetric padding: oneDNN floors the output size as the op does; padding is never read.
  const memory::dims strides{p.stride_h, p.stride_w}, kernel{p.kernel_h, p.kernel_w},
      pad{p.pad_h, p.pad_w};
  // Inference for max (no workspace wanted); training for average, whose backward needs a hint.
  const auto kind = p.max ? dnnl::prop_kind::forward_inference : dnnl::prop_kind::forward_training;
  const dnnl::pooling_forward::desc fd(kind, alg, r.src, r.dst, strides, kernel, pad, pad);
  const dnnl::pooling_forward::primitive_desc fpd(fd, onednn::engine(), true);
  if (!fpd) return std::nullopt;
  r.fwd = dnnl::pooling_forward(fpd);
  if (!p.max) {
    const dnnl::pooling_backward::desc bd(alg, r.src, r.dst, strides, kernel, pad, pad);
    const dnnl::pooling_backward::primitive_desc bpd(bd, onednn::engine(), fpd, true);
    if (!bpd) return std::nullopt;
    r.bwd = dnnl::pooling_backward(bpd);
  }
  return r;
}

std::optional<PoolPrims> poolPrims(memory::data_type dt, const Shape& xs, const Shape& ys,
                                   const Pool2dParams& p) {
  static onednn::PrimitiveCache<PoolPrims> cache;
  onednn::CacheKey key{static_cast<int64_t>(dt),
                       p.kernel_h,
                       p.kernel_w,
                       p.stride_h,
                       p.stride_w,
                       p.pad_h,
                       p.pad_w,
                       p.max};
  key.insert(key.end(), xs.begin(), xs.end());
  key.insert(key.end(), ys.begin(), ys.end());
  return cache.get(key, [&] { return buildPool(dt, xs, ys, p); });
}

// Max pooling with indices: each task owns whole planes of x and y. Taps run in the outer loops
// and output columns in the inner one, which holds no branches, so the compiler vectorises it:
// a data-dependent branch per element (unpredictable on real data) would cost more than the
// loads. Taps are visited in window order with a strict >, and NaN (v != v) always takes over,
// which gives the reference's choice of index.
template <typename T>
void maxPoolWithIndices(const Tensor& x, const Tensor& y, const Tensor& indices,
                        const Pool2dParams& p) {
  const int64_t planes = x.shape()[0] * x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  const int64_t OH = y.shape()[2], OW = y.shape()[3];
  const int64_t SW = p.stride_w, KW = p.kernel_w;
  const T* px = static_cast<const T*>(x.rawData());
  T* py = static_cast<T*>(y.rawData());
  int64_t* pi = indices.data<int64_t>();
  parallelFor(planes, OH * OW * p.kernel_h * KW, [&](int64_t t0, int64_t t1) {
    std::vector<float> best(static_cast<size_t>(OW));
    std::vector<int32_t> tap(static_cast<size_t>(OW));  // kh * KW + kw of the maximum, -1: none
    for (int64_t t = t0; t < t1; ++t) {
      const T* xp = px + t * H * W;
      for (int64_t oh = 0; oh < OH; ++oh) {
        std::fill(best.begin(), best.end(), -std::numeric_limits<float>::infinity());
        std::fill(tap.begin(), tap.end(), -1);
        const int64_t hs = oh * p.stride_h - p.pad_h;
        for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
          const int64_t ih = hs + kh;
          if (ih < 0 || ih >= H) continue;
          for (int64_t kw = 0; kw < KW; ++kw) {
            // Columns ow whose tap lands inside the row: 0 <= ow*SW - PW + kw < W.
            const int64_t off = kw - p.pad_w;
            const int64_t ow0 = off >= 0 ? 0 : (-off + SW - 1) / SW;
            const int64_t ow1 = std::min<int64_t>(OW, W - off <= 0 ? 0 : (W - off - 1) / SW + 1);
            const T* row = xp + ih * W;
            const auto tk = static_cast<int32_t>(kh * KW + kw);
            float* bp = best.data();
            int32_t* tp = tap.data();
            for (int64_t ow = ow0; ow < ow1; ++ow) {
              const float v = static_cast<float>(row[ow * SW + off]);
              const bool take = (v > bp[ow]) | (v != v);
              bp[ow] = take ? v : bp[ow];
              tp[ow] = take ? tk : tp[ow];
            }
          }
        }
        T* yp = py + (t * OH + oh) * OW;
        int64_t* ip = pi + (t * OH + oh) * OW;
        const int64_t h0 = std::max<int64_t>(hs, 0);
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t ws = ow * SW - p.pad_w;
          const int32_t k = tap[static_cast<size_t>(ow)];
          yp[ow] = static_cast<T>(best[static_cast<size_t>(ow)]);
          // An all -inf window reports its first element, as the reference does.
          ip[ow] = k < 0 ? h0 * W + std::max<int64_t>(ws, 0) : (hs + k / KW) * W + ws + k % KW;
        }
      }
    }
  });
}

// The 2x2, stride 2, unpadded case (LeNet's and VGG's pools) with every window inside the plane:
// the four taps are read directly with the general kernel's selection rule (window order,
// strict >, NaN takes over; an all -inf window reports its first element). On x86 four outputs
// at a time: even/odd taps split by shuffles, selections by masks (the compiler turns the scalar
// selects into branches, which mispredict on real activations).
struct Pick {
  float best;
  int32_t tap;
};
[[gnu::always_inline]] inline Pick pick4(float v0, float v1, float v2, float v3) {
  Pick p{-std::numeric_limits<float>::infinity(), 0};
  const float v[4] = {v0, v1, v2, v3};
  for (int32_t t = 0; t < 4; ++t) {
    const bool take = (v[t] > p.best) | (v[t] != v[t]);
    p.best = take ? v[t] : p.best;
    p.tap = take ? t : p.tap;
  }
  return p;
}

#ifdef LATHE_POOL_SSE
// Lanes of `take` get v and tap t, the others keep theirs.
[[gnu::always_inline]] inline void takeSse(__m128 v, int32_t t, __m128& best, __m128i& tap) {
  const __m128 take = _mm_or_ps(_mm_cmpgt_ps(v, best), _mm_cmpunord_ps(v, v));
  best = _mm_or_ps(_mm_and_ps(take, v), _mm_andnot_ps(take, best));
  const __m128i tk = _mm_castps_si128(take);
  tap = _mm_or_si128(_mm_and_si128(tk, _mm_set1_epi32(t)), _mm_andnot_si128(tk, tap));
}
#endif

void maxPool2x2(const Tensor& x, const Tensor& y, const Tensor& indices) {
  const int64_t planes = x.shape()[0] * x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  const int64_t OH = y.shape()[2], OW = y.shape()[3];
  const float* px = x.data<float>();
  float* py = y.data<float>();
  int64_t* pi = indices.data<int64_t>();
  parallelFor(planes, OH * OW * 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t oh = 0; oh < OH; ++oh) {
        const int64_t row0 = 2 * oh * W;
        const float* r0 = px + t * H * W + row0;
        const float* r1 = r0 + W;
        float* yp = py + (t * OH + oh) * OW;
        int64_t* ip = pi + (t * OH + oh) * OW;
        int64_t ow = 0;
#ifdef LATHE_POOL_SSE
        for (; ow + 4 <= OW; ow += 4) {
          const __m128 a0 = _mm_loadu_ps(r0 + 2 * ow), a1 = _mm_loadu_ps(r0 + 2 * ow + 4);
          const __m128 b0 = _mm_loadu_ps(r1 + 2 * ow), b1 = _mm_loadu_ps(r1 + 2 * ow + 4);
          __m128 best = _mm_set1_ps(-std::numeric_limits<float>::infinity());
          __m128i tap = _mm_setzero_si128();
          takeSse(_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0)), 0, best, tap);
          takeSse(_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)), 1, best, tap);
          takeSse(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)), 2, best, tap);
          takeSse(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)), 3, best, tap);
          _mm_storeu_ps(yp + ow, best);
          alignas(16) int32_t k[4];
          _mm_store_si128(reinterpret_cast<__m128i*>(k), tap);
          for (int64_t l = 0; l < 4; ++l)
            ip[ow + l] = row0 + (k[l] >> 1) * W + 2 * (ow + l) + (k[l] & 1);
        }
#endif
        for (; ow < OW; ++ow) {
          const Pick p = pick4(r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]);
          yp[ow] = p.best;
          ip[ow] = row0 + (p.tap >> 1) * W + 2 * ow + (p.tap & 1);
        }
      }
    }
  });
}

// Scatters gy into gx at the saved indices, plane by plane (no two tasks share a plane).
template <typename T>
void maxPoolBackward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  const int64_t planes = gx.shape()[0] * gx.shape()[1], HW = gx.shape()[2] * gx.shape()[3];
  const int64_t OHW = gy.shape()[2] * gy.shape()[3];
  const T* pgy = static_cast<const T*>(gy.rawData());
  const int64_t* pi = indices.data<int64_t>();
  T* pgx = static_cast<T*>(gx.rawData());
  std::atomic<bool> has_bad{false};
  std::atomic<int64_t> bad{0};
  parallelFor(planes, OHW + HW, [&](int64_t t0, int64_t t1) {
    // f32 accumulates in gx itself (the same float sums); other types in a float plane.
    std::vector<float> scratch(std::is_same_v<T, float> ? 0 : static_cast<size_t>(HW));
    for (int64_t t = t0; t < t1; ++t) {
      T* gxp = pgx + t * HW;
      float* acc = nullptr;
      if constexpr (std::is_same_v<T, float>) {
        acc = gxp;
      } else {
        acc = scratch.data();
      }
      std::fill(acc, acc + HW, 0.0f);
      for (int64_t o = t * OHW; o < (t + 1) * OHW; ++o) {
        const int64_t idx = pi[o];
        if (idx < 0 || idx >= HW) {
          has_bad.store(true);
          bad.store(idx);
          continue;
        }
        acc[idx] += static_cast<float>(pgy[o]);
      }
      if constexpr (!std::is_same_v<T, float>)
        for (int64_t i = 0; i < HW; ++i) gxp[i] = static_cast<T>(acc[i]);
    }
  });
  LATHE_CHECK(!has_bad.load(), "pool2dBackward: saved max index ", bad.load(),
              " is outside the input plane of ", gx.shape()[2], "x", gx.shape()[3], " (gx ",
              describe(gx), ")");
}

}  // namespace

void CpuBackend::pool2d(const Tensor& x, const Tensor& y, const Tensor* indices,
                        const Pool2dParams& p) {
  const auto dt = onednn::dnnlType(x.dtype());
  if (!dt || y.numel() == 0) {
    ReferenceBackend::pool2d(x, y, indices, p);
    return;
  }
  if (p.max && indices != nullptr) {
    const bool two_by_two = p.kernel_h == 2 && p.kernel_w == 2 && p.stride_h == 2 &&
                            p.stride_w == 2 && p.pad_h == 0 && p.pad_w == 0 &&
                            y.shape()[2] * 2 <= x.shape()[2] && y.shape()[3] * 2 <= x.shape()[3];
    if (two_by_two && x.dtype() == DType::f32) {
      maxPool2x2(x, y, *indices);
    } else if (x.dtype() == DType::f32) {
      maxPoolWithIndices<float>(x, y, *indices, p);
    } else {
      maxPoolWithIndices<BFloat16>(x, y, *indices, p);
    }
    return;
  }
  const auto prims = poolPrims(*dt, x.shape(), y.shape(), p);
  if (!prims) {
    ReferenceBackend::pool2d(x, y, indices, p);
    return;
  }
  prims->fwd.execute(onednn::stream(), {{DNNL_ARG_SRC, onednn::memoryOf(prims->src, x)},
                                        {DNNL_ARG_DST, onednn::memoryOf(prims->dst, y)}});
  onednn::stream().wait();
}

void CpuBackend::pool2dBackward(const Tensor& gy, const Tensor* indices, const Tensor& gx,
                                const Pool2dParams& p) {
  const auto dt = onednn::dnnlType(gx.dtype());
  if (!dt || gy.numel() == 0 || (p.max && indices == nullptr)) {
    ReferenceBackend::pool2dBackward(gy, indices, gx, p);
    return;
  }
  if (p.max) {
    if (gx.dtype() == DType::f32) {
      maxPoolBackward<float>(gy, *indices, gx);
    } else {
      maxPoolBackward<BFloat16>(gy, *indices, gx);
    }
    return;
  }
  const auto prims = poolPrims(*dt, gx.shape(), gy.shape(), p);
  if (!prims || !prims->bwd) {
    ReferenceBackend::pool2dBackward(gy, indices, gx, p);
    return;
  }
  prims->bwd->execute(onednn::stream(), {{DNNL_ARG_DIFF_DST, onednn::memoryOf(prims->dst, gy)},
                                         {DNNL_ARG_DIFF_SRC, onednn::memoryOf(prims->src, gx)}});
  onednn::stream().wait();
}

}  // namespace lathe::cpu
