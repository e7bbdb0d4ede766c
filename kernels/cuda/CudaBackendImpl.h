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

 private:
  std::vector<std::unique_ptr<CudaAllocator>> allocators_;
};

// Strided device-to-device copy with dtype conversion (same device).
void copyDevice(const Tensor& src, const Tensor& dst);

}  // namespace lathe::cuda
