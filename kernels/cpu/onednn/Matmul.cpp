// oneDNN matmul for f32 and bf16: transposed operands are described by their strides (no copy),
// the bias is a fused epilogue, and `accumulate` is a sum post-op (out += a @ b). Other dtypes,
// an empty inner dimension, and cases oneDNN cannot implement go to the reference kernel.
// Shapes: op(a) [B?, M, K], op(b) [B?, K, N], out [B?, M, N], bias [N].
#include "kernels/cpu/CpuBackend.h"
#include "kernels/cpu/onednn/Dnnl.h"

namespace lathe::cpu {
namespace {

using dnnl::memory;

struct MatmulPrim {
  memory::desc a, b, bias, out;
  dnnl::matmul prim;
};

// Plain descriptor of a [B?, rows, cols] matrix stored contiguously, or stored as its transpose.
memory::desc matrixDesc(bool batched, int64_t batch, int64_t rows, int64_t cols, bool trans,
                        memory::data_type dt) {
  memory::dims dims{rows, cols};
  memory::dims strides = trans ? memory::dims{1, rows} : memory::dims{cols, 1};
  if (batched) {
    dims.insert(dims.begin(), batch);
    strides.insert(strides.begin(), rows * cols);
  }
  return memory::desc(dims, dt, strides);
}

std::optional<MatmulPrim> buildMatmul(memory::data_type dt, bool batched, int64_t B, int64_t M,
                                      int64_t N, int64_t K, bool trans_a, bool trans_b,
                                      bool has_bias, bool accumulate) {
  MatmulPrim p;
  p.a = matrixDesc(batched, B, M, K, trans_a, dt);
  p.b = matrixDesc(batched, B, K, N, trans_b, dt);
  p.out = matrixDesc(batched, B, M, N, false, dt);
  if (has_bias) p.bias = matrixDesc(batched, 1, 1, N, false, dt);
  dnnl::primitive_attr attr;
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::desc d =
      has_bias ? dnnl::matmul::desc(p.a, p.b, p.bias, p.out) : dnnl::matmul::desc(p.a, p.b, p.out);
  dnnl::matmul::primitive_desc pd(d, attr, onednn::engine(), /*allow_empty=*/true);
  if (!pd) return std::nullopt;
  p.prim = dnnl::matmul(pd);
  return p;
}

}  // namespace

void CpuBackend::matmul(const Tensor& a, const Tensor& b, const Tensor* bias, const Tensor& out,
                        bool trans_a, bool trans_b, bool accumulate) {
  const auto dt = onednn::dnnlType(out.dtype());
  const bool batched = out.dim() == 3;
  const int64_t B = batched ? out.shape()[0] : 1;
  const int64_t M = out.size(-2), N = out.size(-1);
  const int64_t K = trans_a ? a.size(-2) : a.size(-1);
  if (out.numel() == 0) return;
  if (!dt || K == 0) {
    ReferenceBackend::matmul(a, b, bias, out, trans_a, trans_b, accumulate);
    return;
  }
  static onednn::PrimitiveCache<MatmulPrim> cache;
  const onednn::CacheKey key{static_cast<int64_t>(*dt), batched,   B, M, N, K, trans_a, trans_b,
                             bias != nullptr,           accumulate};
  const std::optional<MatmulPrim> p = cache.get(key, [&] {
    return buildMatmul(*dt, batched, B, M, N, K, trans_a, trans_b, bias != nullptr, accumulate);
  });
  if (!p) {
    ReferenceBackend::matmul(a, b, bias, out, trans_a, trans_b, accumulate);
    return;
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, onednn::memoryOf(p->a, a)},
                                       {DNNL_ARG_WEIGHTS, onednn::memoryOf(p->b, b)},
                                       {DNNL_ARG_DST, onednn::memoryOf(p->out, out)}};
  if (bias != nullptr) args.emplace(DNNL_ARG_BIAS, onednn::memoryOf(p->bias, *bias));
  p->prim.execute(onednn::stream(), args);
  onednn::stream().wait();
}

}  // namespace lathe::cpu
