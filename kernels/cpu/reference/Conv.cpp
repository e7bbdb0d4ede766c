// PLACEHOLDER: kernels of this group are being written; until then they report missing.
#include "kernels/cpu/reference/ReferenceBackend.h"

namespace lathe::cpu {

void ReferenceBackend::conv2d(const Tensor&, const Tensor&, const Tensor*, const Tensor&,
                              const Conv2dParams&) {
  missing("conv2d");
}
void ReferenceBackend::conv2dBackward(const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                                      const Tensor*, const Tensor*, const Conv2dParams&) {
  missing("conv2dBackward");
}
void ReferenceBackend::pool2d(const Tensor&, const Tensor&, const Tensor*, const Pool2dParams&) {
  missing("pool2d");
}
void ReferenceBackend::pool2dBackward(const Tensor&, const Tensor*, const Tensor&,
                                      const Pool2dParams&) {
  missing("pool2dBackward");
}

}  // namespace lathe::cpu
