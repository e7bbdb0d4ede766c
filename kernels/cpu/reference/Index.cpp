// PLACEHOLDER: kernels of this group are being written; until then they report missing.
#include "kernels/cpu/reference/ReferenceBackend.h"

namespace lathe::cpu {

void ReferenceBackend::indexSelect(const Tensor&, int, const Tensor&, const Tensor&) {
  missing("indexSelect");
}
void ReferenceBackend::indexAdd(const Tensor&, int, const Tensor&, const Tensor&) {
  missing("indexAdd");
}
void ReferenceBackend::gather(const Tensor&, int, const Tensor&, const Tensor&) {
  missing("gather");
}
void ReferenceBackend::scatter(const Tensor&, int, const Tensor&, const Tensor&, bool) {
  missing("scatter");
}

}  // namespace lathe::cpu
