// The reference CPU backend: plain C++ loops for every kernel of core/backend/Backend.h, for
// every float dtype (f16/bf16 computed in f32, f64 in f64). It is the ground truth the oneDNN
// path (CpuBackend) and the CUDA backend are tested against, and the CPU path for anything the
// fast backend does not override. Accumulations run in double where that is cheap, so results
// are at least as accurate as the fast paths'.
#pragma once

#include "core/backend/Backend.h"

namespace lathe::cpu {

class ReferenceBackend : public Backend {
 public:
  DeviceType deviceType() const override { return DeviceType::cpu; }
  std::string name() const override { return "reference"; }
  Allocator& allocator(int) override { return cpuAllocator(); }

  // memory and elementwise (reference/Elementwise.cpp)
  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void arange(const Tensor& dst, double start, double step) override;
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) override;
  void binary(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& x, const Tensor& y, const Tensor& out) override;
  void triangle(const Tensor& x, const Tensor& out, int64_t k, bool upper) override;
  // reductions (reference/Reduce.cpp)
  void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims,
              const Tensor& out) override;
  void argReduce(bool max, const Tensor& x, int dim, const Tensor& out) override;
  // random (reference/Random.cpp)
  void randomUniform(const Tensor& out, RandomState rs, double low, double high) override;
  void randomNormal(const Tensor& out, RandomState rs, double mean, double std) override;
  void dropout(const Tensor& x, double p, RandomState rs, const Tensor& out,
               const Tensor& mask) override;

  // linear algebra, convolution, pooling (reference/Linalg.cpp, reference/Conv.cpp)
  void matmul(const Tensor& a, const Tensor& b, const Tensor* bias, const Tensor& out, bool trans_a,
              bool trans_b, bool accumulate) override;
  void conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              const Conv2dParams& p) override;
  void conv2dBackward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor* gx,
                      const Tensor* gw, const Tensor* gbias, const Conv2dParams& p) override;
  void pool2d(const Tensor& x, const Tensor& y, const Tensor* indices,
              const Pool2dParams& p) override;
  void pool2dBackward(const Tensor& gy, const Tensor* indices, const Tensor& gx,
                      const Pool2dParams& p) override;

  // softmax, norms, losses (reference/Norm.cpp, reference/Loss.cpp)
  void softmax(const Tensor& x, const Tensor& y, bool log) override;
  void softmaxBackward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override;
  void layerNorm(const Tensor& x, const Tensor* w, const Tensor* b, double eps, const Tensor& y,
                 const Tensor& mean, const Tensor& rstd) override;
  void layerNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w, const Tensor& mean,
                         const Tensor& rstd, const Tensor& gx, const Tensor* gw,
                         const Tensor* gb) override;
  void rmsNorm(const Tensor& x, const Tensor* w, double eps, const Tensor& y,
               const Tensor& rstd) override;
  void rmsNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w, const Tensor& rstd,
                       const Tensor& gx, const Tensor* gw) override;
  void batchNorm(const Tensor& x, const Tensor* w, const Tensor* b, const Tensor* running_mean,
                 const Tensor* running_var, bool training, double momentum, double eps,
                 const Tensor& y, const Tensor& save_mean, const Tensor& save_invstd) override;
  void batchNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                         const Tensor& save_mean, const Tensor& save_invstd, const Tensor& gx,
                         const Tensor* gw, const Tensor* gb) override;
  void crossEntropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                    double label_smoothing, const Tensor& loss, const Tensor& lse) override;
  void crossEntropyBackward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                            const Tensor& grad_loss, int64_t ignore_index, double label_smoothing,
                            const Tensor& gx) override;

  // indexing (reference/Index.cpp)
  void indexSelect(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override;
  void indexAdd(const Tensor& dst, int dim, const Tensor& index, const Tensor& src) override;
  void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override;
  void scatter(const Tensor& dst, int dim, const Tensor& index, const Tensor& src,
               bool add) override;

  // optimizer steps (reference/Optim.cpp)
  void adamwStep(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                 const AdamWStep& s) override;
  void sgdStep(const Tensor& param, const Tensor& grad, const Tensor& buf,
               const SgdStep& s) override;
  void adamw8bitStep(const Tensor& param, const Tensor& grad, const Tensor& qm, const Tensor& am,
                     const Tensor& qv, const Tensor& av, const Tensor& signed_map,
                     const Tensor& unsigned_map, int64_t block_size, const AdamWStep& s) override;

  // fp8 scaling, quantization and GEMM (reference/Fp8.cpp)
  void fp8Scale(const Tensor& amax_history, double fp8_max, int margin, const Tensor& scale,
                const Tensor& scale_inv) override;
  void quantizeFp8(const Tensor& x, const Tensor& scale, const Tensor& q, const Tensor& q_t,
                   const Tensor& amax) override;
  void matmulFp8(const Tensor& a, const Tensor& b, const Tensor& a_scale_inv,
                 const Tensor& b_scale_inv, const Tensor* bias, const Tensor& out) override;

  // attention (reference/Attention.cpp)
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* key_padding,
                 const AttentionParams& p, const Tensor& out, const Tensor& lse) override;
  void attentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                         const Tensor& lse, const Tensor& gout, const Tensor& gq, const Tensor& gk,
                         const Tensor& gv) override;
};

}  // namespace lathe::cpu
