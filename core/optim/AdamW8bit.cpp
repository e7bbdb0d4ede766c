// AdamW with 8-bit block-wise quantized moments (Dettmers et al. 2022). Per parameter: below
// min_8bit_size elements the moments stay f32 and the fused adamwStep kernel updates them; at or
// above it m and v are u8 codes of bitsandbytes' dynamic maps (signed for m, unsigned for v) with
// one absmax per block, kept per parameter so blocks never mix parameters. A step, per block:
// dequantize, torch.optim.AdamW's update in f32 (f64 for f64 parameters), requantize; the
// parameters themselves (master weights) stay in their dtype. State bytes: 2 per element + 8 per
// block, vs 8 per element for f32 AdamW. The quantized step is one fused backend kernel
// (Backend::adamw8bitStep), a single pass with no temporaries; Quantize8bit's tensor-op
// functions are its test oracle.
#include <cmath>

#include "core/backend/Backend.h"
#include "core/ops/Ops.h"
#include "core/optim/OptimCommon.h"
#include "core/optim/Optimizer.h"
#include "core/optim/Quantize8bit.h"

namespace lathe::optim {
namespace {

using internal::checkOption;
using internal::nonNegative;
using internal::unitInterval;
using internal::viewOf;

class AdamW8bit final : public Optimizer {
 public:
  AdamW8bit(Module& model, const AdamW8bitOptions& o)
      : Optimizer(model, "makeAdamW8bit", o.lr, o.decay, layout(o)), o_(o) {
    MemoryTagScope tag(MemoryTag::optimizer_state);
    const auto sm = dynamicQuantizationMap(true), um = dynamicQuantizationMap(false);
    for (const ParameterBuffer::Group& g : buffer().groups()) {
      Maps& maps = maps_.emplace_back();
      if (!g.trainable) continue;
      const DType dt = stateDtype(g.dtype);
      maps.is_signed = Tensor::fromVector(sm, {256}, dt, g.device);
      maps.is_unsigned = Tensor::fromVector(um, {256}, dt, g.device);
    }
  }
  std::string name() const override { return "adamw8bit"; }

  int64_t stateBytes() const override {
    int64_t bytes = Optimizer::stateBytes();
    for (const Maps& m : maps_)
      if (m.is_signed.defined())
        bytes += static_cast<int64_t>(m.is_signed.nbytes() + m.is_unsigned.nbytes());
    return bytes;
  }

 protected:
  void stepGroup(const ParameterBuffer::Group& group, bool decayed,
                 const std::vector<Tensor>& /*state*/, int64_t step) override {
    AdamWStep s;
    s.lr = lr();
    s.beta1 = o_.beta1;
    s.beta2 = o_.beta2;
    s.eps = o_.eps;
    s.weight_decay = decayed ? o_.weight_decay : 0.0;
    s.step = step;
    const Maps& maps = maps_[groupIndexOf(group)];
    for (size_t si = 0; si < group.slots.size(); ++si) {
      const ParameterBuffer::Slot& slot = group.slots[si];
      const int64_t n = slot.param.numel();
      if (n == 0) continue;
      const std::vector<Tensor>& st = paramState(group, si);
      const Tensor p = viewOf(group.params, {n}, slot.offset);
      const Tensor g = viewOf(group.grads, {n}, slot.offset);
      if (st.size() == 2) {  // small: f32 moments, the fused kernel
        backendFor(p).adamwStep(p, g, viewOf(st[0], {n}, 0), viewOf(st[1], {n}, 0), s);
        continue;
      }
      const Tensor qm = viewOf(st[0], {n}, 0), qv = viewOf(st[2], {n}, 0);
      backendFor(p).adamw8bitStep(p, g, qm, st[1], qv, st[3], maps.is_signed, maps.is_unsigned,
                                  o_.block_size, s);
      for (const Tensor& t : {st[0], st[1], st[2], st[3]}) t.storage()->bumpVersion();
    }
  }

 private:
  struct Maps {
    Tensor is_signed, is_unsigned;
  };

  size_t groupIndexOf(const ParameterBuffer::Group& group) const {
    return static_cast<size_t>(&group - &buffer().groups().front());
  }

  // Per parameter: f32 exp_avg, exp_avg_sq below min_8bit_size; else u8 codes shaped like the
  // parameter and one absmax per block.
  static StateLayout layout(const AdamW8bitOptions& o) {
    return [o](const std::string&, const Tensor& p) {
      const DType dt = stateDtype(p.dtype());
      const int64_t n = p.numel();
      if (n < o.min_8bit_size)
        return std::vector<ParamState>{{"exp_avg", p.shape(), dt}, {"exp_avg_sq", p.shape(), dt}};
      const Shape blocks{(n + o.block_size - 1) / o.block_size};
      return std::vector<ParamState>{{"exp_avg", p.shape(), DType::u8},
                                     {"exp_avg_absmax", blocks, dt},
                                     {"exp_avg_sq", p.shape(), DType::u8},
                                     {"exp_avg_sq_absmax", blocks, dt}};
    };
  }

  AdamW8bitOptions o_;
  std::vector<Maps> maps_;  // per buffer group
};

}  // namespace

std::unique_ptr<Optimizer> makeAdamW8bit(Module& model, const AdamW8bitOptions& o) {
  const char* who = "makeAdamW8bit";
  checkOption(nonNegative(o.lr), who, "lr", o.lr, ">= 0");
  checkOption(unitInterval(o.beta1), who, "beta1", o.beta1, "in [0, 1)");
  checkOption(unitInterval(o.beta2), who, "beta2", o.beta2, "in [0, 1)");
  checkOption(nonNegative(o.eps), who, "eps", o.eps, ">= 0");
  checkOption(nonNegative(o.weight_decay), who, "weight_decay", o.weight_decay, ">= 0");
  checkOption(o.block_size == 2048 || o.block_size == 256, who, "block_size",
              static_cast<double>(o.block_size), "2048 or 256");
  checkOption(o.min_8bit_size >= 0, who, "min_8bit_size", static_cast<double>(o.min_8bit_size),
              ">= 0");
  return std::make_unique<AdamW8bit>(model, o);
}

}  // namespace lathe::optim
