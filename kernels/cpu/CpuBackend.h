// The CPU backend Lathe runs on: the reference kernels, with oneDNN primitives and vectorised
// loops overriding the hot ones (matmul, convolution, pooling, norms, softmax). Threads: one
// OpenMP pool shared with oneDNN, sized to the cores or LATHE_NUM_THREADS.
#pragma once

#include "kernels/cpu/reference/ReferenceBackend.h"

namespace lathe::cpu {

class CpuBackend : public ReferenceBackend {
 public:
  std::string name() const override { return "onednn"; }
  void matmul(const Tensor& a, const Tensor& b, const Tensor* bias, const Tensor& out, bool trans_a,
              bool trans_b, bool accumulate) override;
};

// Registers the CPU backend (idempotent), sizes the thread pool and records capabilities.
void registerBackend();
ReferenceBackend& referenceBackend();
CpuBackend& fastBackend();

// The thread pool size (OpenMP, shared with oneDNN).
int numThreads();
void setNumThreads(int n);

}  // namespace lathe::cpu
