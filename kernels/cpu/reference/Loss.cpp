// PLACEHOLDER: kernels of this group are being written; until then they report missing.
#include "kernels/cpu/reference/ReferenceBackend.h"

namespace lathe::cpu {

void ReferenceBackend::crossEntropy(const Tensor&, const Tensor&, int64_t, double, const Tensor&,
                                    const Tensor&) {
  missing("crossEntropy");
}
void ReferenceBackend::crossEntropyBackward(const Tensor&, const Tensor&, const Tensor&,
                                            const Tensor&, int64_t, double, const Tensor&) {
  missing("crossEntropyBackward");
}

}  // namespace lathe::cpu
