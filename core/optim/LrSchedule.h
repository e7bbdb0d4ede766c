// Learning-rate schedules: linear warmup then constant, cosine, linear or step decay, as a pure
// function of the 0-based step (no state, so resuming from a checkpoint needs only the step
// count). The trainer calls optimizer.setLr(schedule.at(optimizer.stepCount())) before a step.
#pragma once

#include <cstdint>
#include <string>

namespace lathe::optim {

enum class ScheduleKind { constant, cosine, linear, step };

// warmup_steps: steps 0 .. warmup_steps-1 ramp linearly as nanoGPT does,
//   lr(s) = base_lr * (s + 1) / warmup_steps, so step 0 already trains and the last warmup step
//   reaches base_lr.
// After warmup (p = (s - warmup_steps) / (total_steps - warmup_steps), clamped to [0, 1],
// min = base_lr * min_lr_ratio):
//   constant  base_lr
//   cosine    min + (base_lr - min) * (1 + cos(pi * p)) / 2   (min from total_steps on)
//   linear    min + (base_lr - min) * (1 - p)                  (min from total_steps on)
//   step      base_lr * gamma ^ floor((s - warmup_steps) / step_size)
// cosine and linear need total_steps > warmup_steps; step needs step_size > 0; total_steps is
// ignored by constant and step.
struct LrScheduleOptions {
  ScheduleKind kind = ScheduleKind::constant;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
  double min_lr_ratio = 0.0;  // in [0, 1]
  int64_t step_size = 0;
  double gamma = 0.1;  // > 0
};

class LrSchedule {
 public:
  // Throws lathe::Error naming the option and value when the options are inconsistent.
  LrSchedule(double base_lr, LrScheduleOptions o);
  double at(int64_t step) const;  // lr for 0-based step (>= 0)
  double baseLr() const { return base_lr_; }
  const LrScheduleOptions& options() const { return o_; }

 private:
  double base_lr_;
  LrScheduleOptions o_;
};

// "constant", "cosine", "linear", "step"; anything else throws, listing the valid names.
ScheduleKind parseScheduleKind(const std::string& name);
const char* scheduleKindName(ScheduleKind kind);

}  // namespace lathe::optim
