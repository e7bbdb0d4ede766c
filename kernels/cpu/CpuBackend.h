// The CPU backend Lathe runs on: the reference kernels, with oneDNN primitives and vectorised
// loops overriding the hot ones (matmul, convolution, pooling, norms, softmax, elementwise,
// reductions, the AdamW step). Threads: one OpenMP pool shared with oneDNN, sized to the cores
// or LATHE_NUM_THREADS.
#pragma once

#include "kernels/cpu/reference/ReferenceBackend.h"

namespace lathe::cpu {

class CpuBackend : public ReferenceBackend {
 public:
  std::string name() const override { return "onednn"; }
  // memory-bound fast paths (fast/Elementwise.cpp): contiguous f32/f64 unary and binary ops
  // (a broadcast scalar allowed), f32 <-> f64 copies, fill, sum/mean over leading or trailing
  // dims; bit-identical to the reference except the rounding order of long sums.
  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) override;
  void binary(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) override;
  void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims,
              const Tensor& out) override;
  // AdamW on f32 (fast/Optim.cpp): the reference update on AVX lanes, bit-identical.
  void adamwStep(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                 const AdamWStep& s) override;
  // matmul, convolution, pooling through oneDNN (onednn/Matmul.cpp, Conv.cpp, Pool.cpp):
  // f32 and bf16; other dtypes and unimplemented cases fall back to the reference kernels.
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
  // attention fast path (fast/Attention.cpp): f32 on AVX2+FMA or AVX-512, else the reference.
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* key_padding,
                 const AttentionParams& p, const Tensor& out, const Tensor& lse) override;
  void attentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                         const Tensor& lse, const Tensor& gout, const Tensor& gq, const Tensor& gk,
                         const Tensor& gv) override;
  // softmax and normalisation fast paths (onednn/Norm.cpp): f32 only (oneDNN softmax_v2, and
  // row loops for AVX-512 or AVX2+FMA); other dtypes and older CPUs use the reference kernels.
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
  void crossEntropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                    double label_smoothing, const Tensor& loss, const Tensor& lse) override;
  void crossEntropyBackward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                            const Tensor& grad_loss, int64_t ignore_index, double label_smoothing,
                            const Tensor& gx) override;
};

// Registers the CPU backend (idempotent), sizes the thread pool and records capabilities.
void registerBackend();
ReferenceBackend& referenceBackend();
CpuBackend& fastBackend();

// The thread pool size (OpenMP, shared with oneDNN).
int numThreads();
void setNumThreads(int n);

}  // namespace lathe::cpu
