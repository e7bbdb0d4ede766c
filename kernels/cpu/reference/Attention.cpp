// PLACEHOLDER: kernels of this group are being written; until then they report missing.
#include "kernels/cpu/reference/ReferenceBackend.h"

namespace lathe::cpu {

void ReferenceBackend::attention(const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                                 const AttentionParams&, const Tensor&, const Tensor&) {
  missing("attention");
}
void ReferenceBackend::attentionBackward(const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                                         const AttentionParams&, const Tensor&, const Tensor&,
                                         const Tensor&, const Tensor&, const Tensor&,
                                         const Tensor&) {
  missing("attentionBackward");
}

}  // namespace lathe::cpu
