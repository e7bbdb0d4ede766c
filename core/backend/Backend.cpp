#include "core/backend/Backend.h"

#include <array>

namespace lathe {
namespace {
std::array<Backend*, kNumDeviceTypes>& registry() {
  static std::array<Backend*, kNumDeviceTypes> r{};
  return r;
}
const char* deviceTypeName(DeviceType t) {
  return t == DeviceType::cpu ? "cpu" : "cuda";
}
}  // namespace

void Backend::missing(const char* kernel) const {
  fail("kernel '", kernel, "' is not implemented for device ", deviceTypeName(deviceType()),
       " (backend ", name(), ")");
}

std::string Backend::deviceName(int) const {
  return name();
}
DeviceMemory Backend::deviceMemory(int) const {
  return {};
}
void Backend::adamw8bitStep(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t,
                            const AdamWStep&) {
  missing("adamw8bitStep");
}
void Backend::fp8Scale(const Tensor&, double, int, const Tensor&, const Tensor&) {
  missing("fp8Scale");
}
void Backend::quantizeFp8(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                          const Tensor&) {
  missing("quantizeFp8");
}
void Backend::matmulFp8(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                        const Tensor&) {
  missing("matmulFp8");
}
void Backend::copy(const Tensor&, const Tensor&) {
  missing("copy");
}
void Backend::fill(const Tensor&, double) {
  missing("fill");
}
void Backend::arange(const Tensor&, double, double) {
  missing("arange");
}
void Backend::unary(UnaryOp, const Tensor&, const Tensor&, double, double) {
  missing("unary");
}
void Backend::binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) {
  missing("binary");
}
void Backend::where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  missing("where");
}
void Backend::triangle(const Tensor&, const Tensor&, int64_t, bool) {
  missing("triangle");
}
void Backend::reduce(ReduceOp, const Tensor&, const std::vector<int>&, const Tensor&) {
  missing("reduce");
}
void Backend::argReduce(bool, const Tensor&, int, const Tensor&) {
  missing("argReduce");
}
void Backend::matmul(const Tensor&, const Tensor&, const Tensor*, const Tensor&, bool, bool, bool) {
  missing("matmul");
}
void Backend::conv2d(const Tensor&, const Tensor&, const Tensor*, const Tensor&,
                     const Conv2dParams&) {
  missing("conv2d");
}
void Backend::conv2dBackward(const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                             const Tensor*, const Tensor*, const Conv2dParams&) {
  missing("conv2dBackward");
}
void Backend::pool2d(const Tensor&, const Tensor&, const Tensor*, const Pool2dParams&) {
  missing("pool2d");
}
void Backend::pool2dBackward(const Tensor&, const Tensor*, const Tensor&, const Pool2dParams&) {
  missing("pool2dBackward");
}
void Backend::softmax(const Tensor&, const Tensor&, bool) {
  missing("softmax");
}
void Backend::softmaxBackward(const Tensor&, const Tensor&, const Tensor&, bool) {
  missing("softmaxBackward");
}
void Backend::layerNorm(const Tensor&, const Tensor*, const Tensor*, double, const Tensor&,
                        const Tensor&, const Tensor&) {
  missing("layerNorm");
}
void Backend::layerNormBackward(const Tensor&, const Tensor&, const Tensor*, const Tensor&,
                                const Tensor&, const Tensor&, const Tensor*, const Tensor*) {
  missing("layerNormBackward");
}
void Backend::rmsNorm(const Tensor&, const Tensor*, double, const Tensor&, const Tensor&) {
  missing("rmsNorm");
}
void Backend::rmsNormBackward(const Tensor&, const Tensor&, const Tensor*, const Tensor&,
                              const Tensor&, const Tensor*) {
  missing("rmsNormBackward");
}
void Backend::batchNorm(const Tensor&, const Tensor*, const Tensor*, const Tensor*, const Tensor*,
                        bool, double, double, const Tensor&, const Tensor&, const Tensor&) {
  missing("batchNorm");
}
void Backend::batchNormBackward(const Tensor&, const Tensor&, const Tensor*, const Tensor&,
                                const Tensor&, const Tensor&, const Tensor*, const Tensor*) {
  missing("batchNormBackward");
}
void Backend::crossEntropy(const Tensor&, const Tensor&, int64_t, double, const Tensor&,
                           const Tensor&) {
  missing("crossEntropy");
}
void Backend::crossEntropyBackward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                   int64_t, double, const Tensor&) {
  missing("crossEntropyBackward");
}
void Backend::indexSelect(const Tensor&, int, const Tensor&, const Tensor&) {
  missing("indexSelect");
}
void Backend::indexAdd(const Tensor&, int, const Tensor&, const Tensor&) {
  missing("indexAdd");
}
void Backend::gather(const Tensor&, int, const Tensor&, const Tensor&) {
  missing("gather");
}
void Backend::scatter(const Tensor&, int, const Tensor&, const Tensor&, bool) {
  missing("scatter");
}
void Backend::randomUniform(const Tensor&, RandomState, double, double) {
  missing("randomUniform");
}
void Backend::randomNormal(const Tensor&, RandomState, double, double) {
  missing("randomNormal");
}
void Backend::dropout(const Tensor&, double, RandomState, const Tensor&, const Tensor&) {
  missing("dropout");
}
void Backend::adamwStep(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                        const AdamWStep&) {
  missing("adamwStep");
}
void Backend::sgdStep(const Tensor&, const Tensor&, const Tensor&, const SgdStep&) {
  missing("sgdStep");
}
void Backend::attention(const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                        const AttentionParams&, const Tensor&, const Tensor&) {
  missing("attention");
}
void Backend::attentionBackward(const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                                const AttentionParams&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, const Tensor&, const Tensor&) {
  missing("attentionBackward");
}

Backend& backendFor(DeviceType type) {
  Backend* b = registry()[static_cast<int>(type)];
  LATHE_CHECK(b != nullptr, "no backend is registered for device type ", deviceTypeName(type),
              (type == DeviceType::cuda ? " (this build has no CUDA support, or no GPU was found)"
                                        : " (call lathe::registerBackends() at start-up)"));
  return *b;
}

bool hasBackend(DeviceType type) {
  return registry()[static_cast<int>(type)] != nullptr;
}

Allocator& allocatorFor(Device device) {
  Backend& b = backendFor(device.type);
  LATHE_CHECK(device.index >= 0 && device.index < b.deviceCount(), "device ", device.str(),
              " does not exist (", b.deviceCount(), " ", deviceTypeName(device.type),
              " device(s) present)");
  return b.allocator(device.index);
}

void registerBackend(Backend* backend) {
  registry()[static_cast<int>(backend->deviceType())] = backend;
}

ScopedBackend::ScopedBackend(Backend* backend)
    : type_(backend->deviceType()), previous_(registry()[static_cast<int>(type_)]) {
  registry()[static_cast<int>(type_)] = backend;
}
ScopedBackend::~ScopedBackend() {
  registry()[static_cast<int>(type_)] = previous_;
}

}  // namespace lathe
