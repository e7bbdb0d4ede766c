// Learning-rate schedules: option checks up front, then a closed form per kind (see the header).
#include "core/optim/LrSchedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/base/Error.h"

namespace lathe::optim {

LrSchedule::LrSchedule(double base_lr, LrScheduleOptions o) : base_lr_(base_lr), o_(o) {
  const char* kind = scheduleKindName(o.kind);
  LATHE_CHECK(std::isfinite(base_lr) && base_lr >= 0.0, "LrSchedule(", kind,
              "): base lr = ", base_lr, " is invalid; expected >= 0");
  LATHE_CHECK(o.warmup_steps >= 0, "LrSchedule(", kind, "): option warmup_steps = ", o.warmup_steps,
              " is invalid; expected >= 0");
  LATHE_CHECK(std::isfinite(o.min_lr_ratio) && o.min_lr_ratio >= 0.0 && o.min_lr_ratio <= 1.0,
              "LrSchedule(", kind, "): option min_lr_ratio = ", o.min_lr_ratio,
              " is invalid; expected in [0, 1]");
  if (o.kind == ScheduleKind::cosine || o.kind == ScheduleKind::linear) {
    LATHE_CHECK(o.total_steps > o.warmup_steps, "LrSchedule(", kind,
                "): option total_steps = ", o.total_steps,
                " is invalid; expected more than warmup_steps = ", o.warmup_steps);
  }
  if (o.kind == ScheduleKind::step) {
    LATHE_CHECK(o.step_size > 0, "LrSchedule(step): option step_size = ", o.step_size,
                " is invalid; expected > 0");
    LATHE_CHECK(std::isfinite(o.gamma) && o.gamma > 0.0,
                "LrSchedule(step): option gamma = ", o.gamma, " is invalid; expected > 0");
  }
}

double LrSchedule::at(int64_t step) const {
  LATHE_CHECK(step >= 0, "LrSchedule::at: step ", step, " is negative");
  if (step < o_.warmup_steps)
    return base_lr_ * static_cast<double>(step + 1) / static_cast<double>(o_.warmup_steps);
  const int64_t s = step - o_.warmup_steps;
  const double min_lr = base_lr_ * o_.min_lr_ratio;
  const auto progress = [&] {
    const double p = static_cast<double>(s) / static_cast<double>(o_.total_steps - o_.warmup_steps);
    return std::min(p, 1.0);
  };
  switch (o_.kind) {
    case ScheduleKind::constant: return base_lr_;
    case ScheduleKind::cosine:
      return min_lr + (base_lr_ - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress()));
    case ScheduleKind::linear: return min_lr + (base_lr_ - min_lr) * (1.0 - progress());
    case ScheduleKind::step: {
      const int64_t decays = s / o_.step_size;  // whole periods completed
      return base_lr_ * std::pow(o_.gamma, static_cast<double>(decays));
    }
  }
  return base_lr_;
}

ScheduleKind parseScheduleKind(const std::string& name) {
  for (ScheduleKind k :
       {ScheduleKind::constant, ScheduleKind::cosine, ScheduleKind::linear, ScheduleKind::step})
    if (name == scheduleKindName(k)) return k;
  fail("unknown learning-rate schedule '", name,
       "'; expected one of: constant, cosine, linear, step");
}

const char* scheduleKindName(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::constant: return "constant";
    case ScheduleKind::cosine: return "cosine";
    case ScheduleKind::linear: return "linear";
    case ScheduleKind::step: return "step";
  }
  return "?";
}

}  // namespace lathe::optim
