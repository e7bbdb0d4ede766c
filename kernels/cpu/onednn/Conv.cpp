// oneDNN convolution (forward, backward data, backward weights + bias) for f32 and bf16, NCHW.
// The primitives choose their own (blocked) layouts; plain NCHW tensors are reordered in and
// out through scratch buffers, as PyTorch's mkldnn path does: the reorders cost one pass over
// each tensor, the blocked kernels save far more than that at training shapes. Primitives and
// reorders are cached per shape. f64/f16, and anything oneDNN cannot implement, use the
// reference kernels. Shapes: x [N, C, H, W], w [Co, C/G, KH, KW], y [N, Co, OH, OW].
#include "kernels/cpu/CpuBackend.h"
#include "kernels/cpu/onednn/Dnnl.h"

namespace lathe::cpu {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

struct ConvGeometry {
  memory::data_type dt = memory::data_type::f32;
  memory::dims src, wei, dst, bias, strides, dilates, pad_l, pad_r;
  onednn::CacheKey key;
};

ConvGeometry geometryOf(memory::data_type dt, const Tensor& x, const Tensor& w, const Tensor& y,
                        const Conv2dParams& p) {
  ConvGeometry g;
  g.dt = dt;
  const Shape& xs = x.shape();
  const Shape& ws = w.shape();
  g.src = {xs[0], xs[1], xs[2], xs[3]};
  g.dst = {y.shape()[0], y.shape()[1], y.shape()[2], y.shape()[3]};
  g.bias = {ws[0]};
  g.wei = p.groups > 1 ? memory::dims{p.groups, ws[0] / p.groups, ws[1], ws[2], ws[3]}
                       : memory::dims{ws[0], ws[1], ws[2], ws[3]};
  g.strides = {p.stride_h, p.stride_w};
  g.dilates = {p.dilation_h - 1, p.dilation_w - 1};
  g.pad_l = {p.pad_h, p.pad_w};
  // Symmetric padding, as PyTorch passes it: oneDNN floors the output size the way the op does,
  // so dst matches, and the padding is virtual (never read).
  g.pad_r = g.pad_l;
  g.key = {static_cast<int64_t>(dt),
           p.groups,
           p.stride_h,
           p.stride_w,
           p.pad_h,
           p.pad_w,
           p.dilation_h,
           p.dilation_w};
  for (const Shape* s : {&xs, &ws, &y.shape()}) g.key.insert(g.key.end(), s->begin(), s->end());
  return g;
}

memory::desc plainSrc(const ConvGeometry& g) {
  return {g.src, g.dt, tag::nchw};
}
memory::desc plainDst(const ConvGeometry& g) {
  return {g.dst, g.dt, tag::nchw};
}
memory::desc plainWei(const ConvGeometry& g) {
  return {g.wei, g.dt, g.wei.size() == 5 ? tag::goihw : tag::oihw};
}
memory::desc plainBias(const ConvGeometry& g) {
  return {g.bias, g.dt, tag::a};
}
memory::desc anyOf(const memory::dims& dims, memory::data_type dt) {
  return {dims, dt, tag::any};
}

// Moving a tensor between its plain layout and the layout a primitive wants; no reorder (and
// no copy) where they are the same.
struct Layout {
  memory::desc plain, want;
  std::optional<dnnl::reorder> reorder;
};

Layout layoutFor(const memory::desc& plain, const memory::desc& want, bool incoming) {
  Layout l{plain, want, std::nullopt};
  if (plain != want) {
    const auto& e = onednn::engine();
    l.reorder = incoming ? dnnl::reorder(dnnl::reorder::primitive_desc(e, plain, e, want))
                         : dnnl::reorder(dnnl::reorder::primitive_desc(e, want, e, plain));
  }
  return l;
}

// The memory a primitive reads: the tensor itself, or a reordered scratch copy.
memory stageIn(const Layout& l, const Tensor& t, Tensor& holder) {
  memory plain = onednn::memoryOf(l.plain, t);
  if (!l.reorder) return plain;
  memory staged = onednn::scratchMemory(l.want, holder);
  l.reorder->execute(onednn::stream(), plain, staged);
  return staged;
}

// The memory a primitive writes: the tensor itself, or scratch that stageOut copies back.
memory outputFor(const Layout& l, const Tensor& t, Tensor& holder) {
  return l.reorder ? onednn::scratchMemory(l.want, holder) : onednn::memoryOf(l.plain, t);
}
void stageOut(const Layout& l, memory& produced, const Tensor& t) {
  if (!l.reorder) return;
  memory plain = onednn::memoryOf(l.plain, t);
  l.reorder->execute(onednn::stream(), produced, plain);
}

std::optional<dnnl::convolution_forward::primitive_desc> forwardPd(const ConvGeometry& g,
                                                                   bool has_bias) {
  const dnnl::convolution_forward::desc d(
      dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, anyOf(g.src, g.dt),
      anyOf(g.wei, g.dt), has_bias ? plainBias(g) : memory::desc(), anyOf(g.dst, g.dt), g.strides,
      g.dilates, g.pad_l, g.pad_r);
  dnnl::convolution_forward::primitive_desc pd(d, onednn::engine(), /*allow_empty=*/true);
  if (!pd) return std::nullopt;
  return pd;
}

struct ConvFwd {
  Layout src, wei, dst;
  memory::desc bias;
  dnnl::convolution_forward prim;
};

std::optional<ConvFwd> buildForward(const ConvGeometry& g, bool has_bias) {
  const auto pd = forwardPd(g, has_bias);
  if (!pd) return std::nullopt;
  return ConvFwd{layoutFor(plainSrc(g), pd->src_desc(), true),
                 layoutFor(plainWei(g), pd->weights_desc(), true),
                 layoutFor(plainDst(g), pd->dst_desc(), false), plainBias(g),
                 dnnl::convolution_forward(*pd)};
}

struct ConvBwdData {
  Layout gy, wei, gx;
  dnnl::convolution_backward_data prim;
};

// With few input channels the blocked gradient kernels compute padded channel blocks (C = 1
// pays for 8 or 16). The data gradient measured 2-4x slower than oneDNN's gemm path on plain
// layouts (N=64, C=1..4 -> 32, 28x28, k3; from 8 channels on the blocked kernel wins). The
// weight gradient, reorders included, 2x slower for C = 1 and 2 (N=64 -> 32, 28x28, k3, one
// thread, AVX2: 9.0 against 4.8 ms), but faster from C = 3 (4.3 against 7.9 ms), where oneDNN
// has a kernel for 3-channel images. Grouped convolutions (depthwise above all) keep their
// dedicated blocked kernels.
constexpr int64_t kPlainBackwardDataMaxChannels = 4;
constexpr int64_t kPlainBackwardWeightsMaxChannels = 2;

std::optional<ConvBwdData> buildBackwardData(const ConvGeometry& g) {
  const auto hint = forwardPd(g, false);
  if (!hint) return std::nullopt;
  const bool grouped = g.wei.size() == 5;
  const int64_t cin = g.src[1];
  auto build = [&](bool plain) {
    const dnnl::convolution_backward_data::desc d(
        dnnl::algorithm::convolution_direct, plain ? plainSrc(g) : anyOf(g.src, g.dt),
        plain ? plainWei(g) : anyOf(g.wei, g.dt), plain ? plainDst(g) : anyOf(g.dst, g.dt),
        g.strides, g.dilates, g.pad_l, g.pad_r);
    return dnnl::convolution_backward_data::primitive_desc(d, onednn::engine(), *hint, true);
  };
  dnnl::convolution_backward_data::primitive_desc pd;
  if (!grouped && cin <= kPlainBackwardDataMaxChannels) pd = build(true);
  if (!pd) pd = build(false);
  if (!pd) return std::nullopt;
  return ConvBwdData{layoutFor(plainDst(g), pd.diff_dst_desc(), true),
                     layoutFor(plainWei(g), pd.weights_desc(), true),
                     layoutFor(plainSrc(g), pd.diff_src_desc(), false),
                     dnnl::convolution_backward_data(pd)};
}

struct ConvBwdWeights {
  Layout gy, src, gw;
  memory::desc gbias;
  dnnl::convolution_backward_weights prim;
};

std::optional<ConvBwdWeights> buildBackwardWeights(const ConvGeometry& g, bool has_bias) {
  const auto hint = forwardPd(g, has_bias);
  if (!hint) return std::nullopt;
  const bool grouped = g.wei.size() == 5;
  auto build = [&](bool plain) {
    const dnnl::convolution_backward_weights::desc d(
        dnnl::algorithm::convolution_direct, plain ? plainSrc(g) : anyOf(g.src, g.dt),
        plain ? plainWei(g) : anyOf(g.wei, g.dt), has_bias ? plainBias(g) : memory::desc(),
        plain ? plainDst(g) : anyOf(g.dst, g.dt), g.strides, g.dilates, g.pad_l, g.pad_r);
    return dnnl::convolution_backward_weights::primitive_desc(d, onednn::engine(), *hint, true);
  };
  dnnl::convolution_backward_weights::primitive_desc pd;
  if (!grouped && g.src[1] <= kPlainBackwardWeightsMaxChannels) pd = build(true);
  if (!pd) pd = build(false);
  if (!pd) return std::nullopt;
  return ConvBwdWeights{layoutFor(plainDst(g), pd.diff_dst_desc(), true),
                        layoutFor(plainSrc(g), pd.src_desc(), true),
                        layoutFor(plainWei(g), pd.diff_weights_desc(), false), plainBias(g),
                        dnnl::convolution_backward_weights(pd)};
}

onednn::CacheKey withTag(onednn::CacheKey key, int64_t tag_value) {
  key.push_back(tag_value);
  return key;
}

}  // namespace

void CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                        const Conv2dParams& p) {
  const auto dt = onednn::dnnlType(x.dtype());
  if (!dt || y.numel() == 0) {
    ReferenceBackend::conv2d(x, w, bias, y, p);
    return;
  }
  const ConvGeometry g = geometryOf(*dt, x, w, y, p);
  static onednn::PrimitiveCache<ConvFwd> cache;
  const auto f =
      cache.get(withTag(g.key, bias != nullptr), [&] { return buildForward(g, bias != nullptr); });
  if (!f) {
    ReferenceBackend::conv2d(x, w, bias, y, p);
    return;
  }
  Tensor hold_x, hold_w, hold_y;
  memory mx = stageIn(f->src, x, hold_x), mw = stageIn(f->wei, w, hold_w);
  memory my = outputFor(f->dst, y, hold_y);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, mx}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, my}};
  if (bias != nullptr) args.emplace(DNNL_ARG_BIAS, onednn::memoryOf(f->bias, *bias));
  f->prim.execute(onednn::stream(), args);
  stageOut(f->dst, my, y);
  onednn::stream().wait();
}

void CpuBackend::conv2dBackward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                const Tensor* gx, const Tensor* gw, const Tensor* gbias,
                                const Conv2dParams& p) {
  const auto dt = onednn::dnnlType(x.dtype());
  if (!dt || gy.numel() == 0 || x.numel() == 0) {
    ReferenceBackend::conv2dBackward(gy, x, w, gx, gw, gbias, p);
    return;
  }
  const ConvGeometry g = geometryOf(*dt, x, w, gy, p);
  static onednn::PrimitiveCache<ConvBwdData> data_cache;
  static onednn::PrimitiveCache<ConvBwdWeights> weights_cache;
  std::optional<ConvBwdData> bd;
  std::optional<ConvBwdWeights> bw;
  if (gx != nullptr) bd = data_cache.get(g.key, [&] { return buildBackwardData(g); });
  if (gw != nullptr || gbias != nullptr) {
    bw = weights_cache.get(withTag(g.key, gbias != nullptr),
                           [&] { return buildBackwardWeights(g, gbias != nullptr); });
  }
  if ((gx != nullptr && !bd) || ((gw != nullptr || gbias != nullptr) && !bw)) {
    ReferenceBackend::conv2dBackward(gy, x, w, gx, gw, gbias, p);
    return;
  }
  // gy in the layout each primitive wants; one reorder serves both when they agree.
  Tensor hold_gy, hold_gy2, hold_w, hold_x, hold_gx, hold_gw;
  std::optional<memory> gy_data;
  if (bd) {
    gy_data = stageIn(bd->gy, gy, hold_gy);
    memory mw = stageIn(bd->wei, w, hold_w);
    memory mgx = outputFor(bd->gx, *gx, hold_gx);
    bd->prim.execute(
        onednn::stream(),
        {{DNNL_ARG_DIFF_DST, *gy_data}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DIFF_SRC, mgx}});
    stageOut(bd->gx, mgx, *gx);
  }
  if (bw) {
    const bool reuse = gy_data && bd->gy.want == bw->gy.want;
    memory mgy = reuse ? *gy_data : stageIn(bw->gy, gy, hold_gy2);
    memory mx = stageIn(bw->src, x, hold_x);
    // oneDNN always produces the weight gradient; a caller that wants only the bias gradient
    // gets it written to scratch.
    Tensor gw_sink;
    if (gw == nullptr) gw_sink = Tensor::empty(w.shape(), w.dtype());
    const Tensor& gw_t = gw != nullptr ? *gw : gw_sink;
    memory mgw = outputFor(bw->gw, gw_t, hold_gw);
    std::unordered_map<int, memory> args{
        {DNNL_ARG_DIFF_DST, mgy}, {DNNL_ARG_SRC, mx}, {DNNL_ARG_DIFF_WEIGHTS, mgw}};
    if (gbias != nullptr) args.emplace(DNNL_ARG_DIFF_BIAS, onednn::memoryOf(bw->gbias, *gbias));
    bw->prim.execute(onednn::stream(), args);
    stageOut(bw->gw, mgw, gw_t);
  }
  onednn::stream().wait();
}

}  // namespace lathe::cpu
