// Pre-launch estimate of a run's peak memory and step time: the run is built exactly as the
// Runner builds it (full data, model, methods, optimizer, Trainer), a few real training steps are
// timed at two small batch sizes b1 < b2, and each memory tag's peak, the total peak and the step
// time are fitted as a + k * batch and extrapolated to the config's batch size; the total peak is
// at least that fit and at least every resident tag plus the activations' peak. Parameters,
// gradients and optimizer state come out exact (they do not depend on the batch); activations,
// workspace and other bytes are linear in the batch for every preset (the allocator counts exact
// bytes, with no caching on the CPU), which is what makes two points enough.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/run/RunConfig.h"
#include "core/tensor/Allocator.h"

namespace lathe::run {

struct EstimateOptions {
  int warmup_steps = 2;                // untimed steps before the timed ones at each batch size
  int timed_steps = 4;                 // the step time is the fastest of them
  int64_t max_calibration_batch = 16;  // b2 = min(batch_size, this); b1 = max(1, b2 / 4)
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
  bool fits = true;  // peak_bytes <= capacity_bytes (true when unknown)
  std::vector<CalibrationPoint> calibration;

  nlohmann::json toJson() const;
};

// Builds and calibrates the run of `config` on its hardware.device (a few seconds: the data are
// loaded in full, since the resident data count towards the peak). Throws lathe::Error for a
// config that cannot run (unknown method, batch larger than the training set, ...).
Estimate estimateRun(const RunConfig& config, const EstimateOptions& options = {});

// The device's memory capacity in bytes, and where the figure comes from; 0 when unknown.
int64_t deviceCapacity(const std::string& device, std::string* source = nullptr);

}  // namespace lathe::run
