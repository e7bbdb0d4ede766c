// The CUDA backend class (kernels/cuda only). Kernel groups live in their own .cu files:
// CudaBackend.cu (devices, streams, copies), Elementwise.cu, Reduce.cu, Matmul.cu (cuBLASLt),
// Random.cu, Norm.cu (softmax, layer/RMS norm, cross-entropy), Index.cu.
#pragma once

#include <memory>
#include <vector>

#include "core/backend/Backend.h"
#include "kernels/cuda/CudaAllocator.h"

namespace lathe::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int devices);
  DeviceType deviceType() const override { return DeviceType::cuda; }
  std::string name() const override { return "cuda"; }
  Allocator& allocator(int device_index) override;
  int deviceCount() const override { return static_cast<int>(allocators_.size()); }
  void synchronize(int device_index) override;

  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void arange(const Tensor& dst, double start, double step) override;
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) override;
  void binary(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& x, const Tensor& y, const Tensor& out) override;
  void triangle(const Tensor& x, const Tensor& out, int64_t k, bool upper) override;
  void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims,
              const Tensor& out) override;
  void argReduce(bool max, const Tensor& x, int dim, const Tensor& out) override;
  void matmul(const Tensor& a, const Tensor& b, const Tensor* bias, const Tensor& out, bool trans_a,
              bool trans_b, bool accumulate) override;
  void randomUniform(const Tensor& out, RandomState rs, double low, double high) override;
  void randomNormal(const Tensor& out, RandomState rs, double mean, double std) override;
  void dropout(const Tensor& x, double p, RandomState rs, const Tensor& out,
               const Tensor& mask) override;
  // Norm.cu
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
  // Conv.cu
  void conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              const Conv2dParams& p) override;
  void conv2dBackward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor* gx,
                      const Tensor* gw, const Tensor* gbias, const Conv2dParams& p) override;
  void pool2d(const Tensor& x, const Tensor& y, const Tensor* indices,
              const Pool2dParams& p) override;
  void pool2dBackward(const Tensor& gy, const Tensor* indices, const Tensor& gx,
                      const Pool2dParams& p) override;
  // BatchNorm.cu
  void batchNorm(const Tensor& x, const Tensor* w, const Tensor* b, const Tensor* running_mean,
                 const Tensor* running_var, bool training, double momentum, double eps,
                 const Tensor& y, const Tensor& save_mean, const Tensor& save_invstd) override;
  void batchNormBackward(const Tensor& gy, const Tensor& x, const Tensor* w,
                         const Tensor& save_mean, const Tensor& save_invstd, const Tensor& gx,
                         const Tensor* gw, const Tensor* gb) override;
  // Attention.cu
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* key_padding,
                 const AttentionParams& p, const Tensor& out, const Tensor& lse) override;
  void attentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                         const Tensor& lse, const Tensor& gout, const Tensor& gq, const Tensor& gk,
                         const Tensor& gv) override;
  // Optim.cu
  void adamwStep(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                 const AdamWStep& s) override;
  void sgdStep(const Tensor& param, const Tensor& grad, const Tensor& buf,
               const SgdStep& s) override;
  void adamw8bitStep(const Tensor& param, const Tensor& grad, const Tensor& qm, const Tensor& am,
                     const Tensor& qv, const Tensor& av, const Tensor& signed_map,
                     const Tensor& unsigned_map, int64_t block_size, const AdamWStep& s) override;
  // Fp8.cu
  void fp8Scale(const Tensor& amax_history, double fp8_max, int margin, const Tensor& scale,
                const Tensor& scale_inv) override;
  void quantizeFp8(const Tensor& x, const Tensor& scale, const Tensor& q, const Tensor& q_t,
                   const Tensor& amax) override;
  void matmulFp8(const Tensor& a, const Tensor& b, const Tensor& a_scale_inv,
                 const Tensor& b_scale_inv, const Tensor* bias, const Tensor& out) override;
  // CudaBackend.cu
  std::string deviceName(int device_index) const override;
  DeviceMemory deviceMemory(int device_index) const override;
  // Index.cu
  void indexSelect(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override;
  void indexAdd(const Tensor& dst, int dim, const Tensor& index, const Tensor& src) override;
  void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override;
  void scatter(const Tensor& dst, int dim, const Tensor& index, const Tensor& src,
               bool add) override;

 private:
  std::vector<std::unique_ptr<CudaAllocator>> allocators_;
};

// Strided device-to-device copy with dtype conversion (same device).
void copyDevice(const Tensor& src, const Tensor& dst);

}  // namespace lathe::cuda
