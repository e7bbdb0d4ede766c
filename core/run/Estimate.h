// Pre-launch estimate of a run's peak memory and step time: the run is built exactly as the
// Runner builds it (full data, model, methods, optimizer, Trainer), a few real training steps are
// timed at two small batch sizes b1 < b2, and each memory tag's peak, the total peak and the step
// time are fitted as a + k * batch and extrapolated to the config's batch size; the total peak is
// at least that fit and at least every resident tag plus the activations' peak. Parameters,
// gradients and optimizer state come out exact (they do not depend on the batch); activations,
// workspace and other bytes are linear in the batch for every preset (the allocator counts exact
// bytes, with no caching on the CPU), which is what makes two points enough.
//
// Before anything is loaded or built, a lower bound of the resident bytes is counted from the
// spec (residentLowerBound): when it alone exceeds the capacity, the estimate answers "does not
// fit" at once, with no calibration, instead of running out of memory while building the model.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/base/Error.h"
#include "core/run/RunConfig.h"
#include "core/tensor/Allocator.h"

namespace lathe::run {

struct EstimateOptions {
  int warmup_steps = 2;                // untimed steps before the timed ones at each batch size
  int timed_steps = 4;                 // the step time is the fastest of them
  int64_t max_calibration_batch = 16;  // b2 = min(batch_size, this); b1 = max(1, b2 / 4)
  // > 0: plan for this many bytes instead of the device's memory (a smaller machine, a test).
  int64_t override_capacity_bytes = 0;
  // When set and true, the estimate stops at its next phase or step and throws
  // EstimateCancelled (the workbench cancels an estimate whose config is no longer on screen).
  const std::atomic<bool>* cancel = nullptr;
};

// Thrown by estimateRun when EstimateOptions::cancel was set.
class EstimateCancelled : public Error {
 public:
  EstimateCancelled() : Error("estimate: cancelled") {}
};

// One calibration point: what the allocator and the clock saw at one batch size.
struct CalibrationPoint {
  int64_t batch = 0;
  std::array<int64_t, kNumMemoryTags> tag_peak{};
  int64_t peak = 0;
  // The fastest timed step (one micro-batch per step). On a loaded machine OpenMP's spinning
  // threads make single steps 10x slower at random; the minimum is the least disturbed one.
  double step_time_s = 0;
};

struct Estimate {
  std::string name;
  std::string device;
  int64_t batch_size = 0;
  int64_t grad_accum = 1;
  int64_t planned_steps = 0;
  std::array<int64_t, kNumMemoryTags> tag_bytes{};  // estimated peak of each tag
  int64_t peak_bytes = 0;                           // estimated peak of the total (<= tag sum)
  double step_time_s = 0;                           // one optimizer step (grad_accum micro-batches)
  double total_time_s = 0;                          // planned_steps steps; evaluation not included
  int64_t capacity_bytes = 0;                       // the device's memory; 0 = unknown
  std::string capacity_source;                      // "physical RAM", or why it is unknown
  bool fits = true;                           // peak_bytes <= capacity_bytes (true when unknown)
  std::vector<CalibrationPoint> calibration;  // empty when the run was not built
  std::string note;  // why the run was not built (its lower bound exceeds the capacity), or ""

  // Whether the figures were measured (false: a lower bound from the spec, nothing timed).
  bool calibrated() const { return !calibration.empty(); }

  nlohmann::json toJson() const;
};

// Builds and calibrates the run of `config` on its hardware.device (a few seconds: the data are
// loaded in full, since the resident data count towards the peak). Throws lathe::Error for a
// config that cannot run (unknown method, batch larger than the training set, ...). When
// residentLowerBound(config) already exceeds the capacity, returns at once without loading or
// building anything: fits = false, the parameter, gradient and optimizer-state tags and the peak
// hold the lower bound, no calibration, zero times, and `note` says why.
Estimate estimateRun(const RunConfig& config, const EstimateOptions& options = {});

// A lower bound of the bytes the run holds at once after its optimizer is built, counted from
// the spec without allocating: the model's parameters as buildModel allocates them (f32),
// their gradients and the optimizer's state per trainable parameter (adamw and sophia 8 bytes,
// lion and sgd with momentum 4, adamw8bit 2 (its u8 moments), adafactor 4 with beta1 > 0, else
// 0: its factored moments are not counted; an optimizer not listed here counts 0). Only the
// parameters count when a method of another category than optimizer, precision or memory
// could change what trains (LoRA freezes, sharding divides). Alignment padding, data,
// activations and workspace are not counted. Filled: the three tags; the other tags are 0.
std::array<int64_t, kNumMemoryTags> residentLowerBound(const RunConfig& config);

// The device's memory capacity in bytes, and where the figure comes from; 0 when unknown.
int64_t deviceCapacity(const std::string& device, std::string* source = nullptr);

}  // namespace lathe::run
