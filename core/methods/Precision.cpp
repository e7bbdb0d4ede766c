// The precision method: mixed-precision training with f32 master weights. Forward passes and
// losses run under autocast (core/ops/Autocast.h: matmuls, convolutions and attention in bf16 or
// f16; softmax, norms, losses and reductions in f32); f16 adds dynamic loss scaling, whose
// skipped steps the run reports. On the CPU, bf16 runs through oneDNN (native on processors with
// AVX512-BF16 or AMX, emulated and slower elsewhere); f16 has no fast CPU kernels and computes
// through the reference kernels. fp8 runs the linear layers' GEMMs in fp8 (core/ops/Fp8.h).
#include "core/methods/Method.h"

namespace lathe::methods {
namespace {

class PrecisionMethod final : public Method {
 public:
  static const MethodInfo& staticInfo() {
    static const MethodInfo info{
        "precision",
        "Mixed precision",
        "precision",
        "bf16 / fp16 autocast with f32 master weights; dynamic loss scaling for fp16",
        {{"dtype",
          ParamType::choice,
          "bf16",
          0,
          0,
          false,
          {"bf16", "fp16", "fp8"},
          "",
          "the dtype matmuls, convolutions and attention run in; softmax, norms, losses and "
          "reductions stay f32. fp8: linear layers in e4m3 (forward) and e5m2 (gradients) with "
          "delayed per-tensor scaling through cuBLASLt (GPUs with fp8 tensor cores, sm_89+; "
          "emulated and slow on the CPU), everything else bf16"},
         {"loss_scaling",
          ParamType::choice,
          "auto",
          0,
          0,
          false,
          {"auto", "dynamic", "none"},
          "",
          "dynamic: scale the loss, skip steps whose gradients overflow and halve the scale; "
          "auto: dynamic for fp16, none for bf16 (same exponent range as f32)"},
         {"init_scale",
          ParamType::number,
          65536.0,
          1.0,
          16777216.0,
          true,
          {},
          "",
          "the loss scale at the start (2^16)"},
         {"growth_interval",
          ParamType::integer,
          2000,
          1,
          1000000,
          false,
          {},
          "steps",
          "clean steps in a row after which the scale doubles"},
         {"fp8_history",
          ParamType::integer,
          16,
          1,
          1024,
          false,
          {},
          "steps",
          "fp8: the amax history each scale is computed from (delayed scaling)"},
         {"fp8_margin",
          ParamType::integer,
          0,
          0,
          16,
          false,
          {},
          "",
          "fp8: scale = fp8_max / amax / 2^margin; a larger margin leaves headroom for growing "
          "values"}}};
    return info;
  }
  const MethodInfo& info() const override { return staticInfo(); }
  void configureTraining(train::TrainOptions& o) const override {
    const std::string dtype = params_.at("dtype").get<std::string>();
    const std::string scaling = params_.at("loss_scaling").get<std::string>();
    o.compute_dtype = dtype == "fp16" ? DType::f16 : dtype == "fp8" ? DType::f8e4m3 : DType::bf16;
    o.fp8_history = static_cast<int>(params_.at("fp8_history").get<int64_t>());
    o.fp8_margin = static_cast<int>(params_.at("fp8_margin").get<int64_t>());
    o.loss_scaling = scaling == "dynamic" || (scaling == "auto" && dtype == "fp16");
    o.init_loss_scale = params_.at("init_scale").get<double>();
    o.scale_growth_interval = params_.at("growth_interval").get<int64_t>();
  }
};

}  // namespace

void registerPrecisionMethods(MethodRegistry& registry) {
  registry.add(PrecisionMethod::staticInfo(), [] { return std::make_unique<PrecisionMethod>(); });
}

}  // namespace lathe::methods
