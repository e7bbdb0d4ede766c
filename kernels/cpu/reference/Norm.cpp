// PLACEHOLDER: kernels of this group are being written; until then they report missing.
#include "kernels/cpu/reference/ReferenceBackend.h"

namespace lathe::cpu {

void ReferenceBackend::softmax(const Tensor&, const Tensor&, bool) {
  missing("softmax");
}
void ReferenceBackend::softmaxBackward(const Tensor&, const Tensor&, const Tensor&, bool) {
  missing("softmaxBackward");
}
void ReferenceBackend::layerNorm(const Tensor&, const Tensor*, const Tensor*, double, const Tensor&,
                                 const Tensor&, const Tensor&) {
  missing("layerNorm");
}
void ReferenceBackend::layerNormBackward(const Tensor&, const Tensor&, const Tensor*, const Tensor&,
                                         const Tensor&, const Tensor&, const Tensor*,
                                         const Tensor*) {
  missing("layerNormBackward");
}
void ReferenceBackend::rmsNorm(const Tensor&, const Tensor*, double, const Tensor&, const Tensor&) {
  missing("rmsNorm");
}
void ReferenceBackend::rmsNormBackward(const Tensor&, const Tensor&, const Tensor*, const Tensor&,
                                       const Tensor&, const Tensor*) {
  missing("rmsNormBackward");
}
void ReferenceBackend::batchNorm(const Tensor&, const Tensor*, const Tensor*, const Tensor*,
                                 const Tensor*, bool, double, double, const Tensor&, const Tensor&,
                                 const Tensor&) {
  missing("batchNorm");
}
void ReferenceBackend::batchNormBackward(const Tensor&, const Tensor&, const Tensor*, const Tensor&,
                                         const Tensor&, const Tensor&, const Tensor*,
                                         const Tensor*) {
  missing("batchNormBackward");
}

}  // namespace lathe::cpu
