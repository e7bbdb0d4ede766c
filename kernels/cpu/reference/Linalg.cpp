// PLACEHOLDER: kernels of this group are being written; until then they report missing.
#include "kernels/cpu/reference/ReferenceBackend.h"

namespace lathe::cpu {

void ReferenceBackend::matmul(const Tensor&, const Tensor&, const Tensor*, const Tensor&, bool,
                              bool, bool) {
  missing("matmul");
}

}  // namespace lathe::cpu
