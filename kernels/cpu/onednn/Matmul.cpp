// PLACEHOLDER until the oneDNN matmul lands: the reference kernel serves.
#include "kernels/cpu/CpuBackend.h"

namespace lathe::cpu {

void CpuBackend::matmul(const Tensor& a, const Tensor& b, const Tensor* bias, const Tensor& out,
                        bool trans_a, bool trans_b, bool accumulate) {
  ReferenceBackend::matmul(a, b, bias, out, trans_a, trans_b, accumulate);
}

}  // namespace lathe::cpu
