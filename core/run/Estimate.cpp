#include "core/run/Estimate.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>

#include "core/backend/Backend.h"
#include "core/base/Error.h"
#include "core/data/DatasetSpec.h"
#include "core/methods/Method.h"
#include "core/run/Build.h"
#include "core/tensor/Random.h"

namespace lathe::run {
namespace {

using Clock = std::chrono::steady_clock;

void checkCancel(const EstimateOptions& options) {
  if (options.cancel != nullptr && options.cancel->load(std::memory_order_relaxed))
    throw EstimateCancelled();
}

// Bytes of optimizer state per trainable f32 parameter that the optimizer method `m` allocates
// at least (see residentLowerBound).
int64_t stateBytesPerParameter(const nlohmann::json& m) {
  const std::string name = m.at("name").get<std::string>();
  auto number = [&](const char* key) { return m.contains(key) ? m.at(key).get<double>() : 0.0; };
  if (name == "adamw" || name == "sophia") return 8;
  if (name == "lion") return 4;
  if (name == "sgd") return number("momentum") != 0.0 ? 4 : 0;
  if (name == "adafactor") return number("beta1") > 0.0 ? 4 : 0;
  if (name == "adamw8bit") return 2;
  return 0;
}

CalibrationPoint calibrate(const RunConfig& config, const data::LoadedData& data, Device device,
                           int64_t batch, int64_t planned_steps, const EstimateOptions& options) {
  checkCancel(options);
  BuiltRun run = buildRun(config, device);
  train::TrainOptions topt = trainOptionsFor(config, run);
  const int steps = std::max(0, options.warmup_steps) + std::max(1, options.timed_steps);
  topt.batch_size = batch;
  topt.grad_accum = 1;  // memory does not depend on it; the time is scaled afterwards
  topt.max_steps = steps;
  topt.checkpoint_every = 0;
  topt.checkpoint_path.clear();
  // The run's schedule (the LR changes no bytes).
  const optim::LrSchedule schedule = scheduleFor(config, run.lr, planned_steps);
  // The Trainer resets the allocator's peaks, as it does for the run itself.
  train::Trainer trainer(run.model, std::move(run.optimizer), schedule, data, topt);
  std::vector<double> times;
  for (int i = 0; i < steps; ++i) {
    checkCancel(options);
    const train::StepMetrics m = trainer.step();
    if (i >= options.warmup_steps) times.push_back(m.step_time_s);
  }
  const MemoryStats mem = allocatorFor(device).stats();
  CalibrationPoint p;
  p.batch = batch;
  p.tag_peak = mem.tag_peak;
  p.peak = mem.peak;
  p.step_time_s = *std::min_element(times.begin(), times.end());
  return p;
}

// a + k * x through two points, k clamped at 0 (more batch never needs less), evaluated at x;
// anchored at the larger point, which is the nearer one to x.
double extrapolate(double x1, double y1, double x2, double y2, double x) {
  if (x2 <= x1) return y2;
  const double k = std::max(0.0, (y2 - y1) / (x2 - x1));
  return std::max(0.0, y2 + k * (x - x2));
}

}  // namespace

int64_t deviceCapacity(const std::string& device, std::string* source) {
  const Device d = Device::parse(device);
  if (d.type == DeviceType::cpu) {
    const long pages = sysconf(_SC_PHYS_PAGES);
    const long page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) {
      if (source != nullptr) *source = "physical RAM";
      return static_cast<int64_t>(pages) * page;
    }
    if (source != nullptr) *source = "unknown (sysconf gave no physical memory size)";
    return 0;
  }
  if (!hasBackend(d.type) || d.index >= backendFor(d.type).deviceCount()) {
    if (source != nullptr)
      *source = "unknown (no " + d.str() + " on this machine or in this build)";
    return 0;
  }
  Backend& be = backendFor(d.type);
  const DeviceMemory mem = be.deviceMemory(d.index);
  if (mem.total_bytes <= 0) {
    if (source != nullptr) *source = "unknown (the " + d.str() + " backend reports no memory)";
    return 0;
  }
  if (source != nullptr) *source = be.deviceName(d.index) + " memory (driver)";
  return mem.total_bytes;
}

std::array<int64_t, kNumMemoryTags> residentLowerBound(const RunConfig& config) {
  std::array<int64_t, kNumMemoryTags> tags{};
  const ParameterFootprint f = parameterFootprint(config.model);  // buildModel's f32
  tags[static_cast<size_t>(MemoryTag::parameters)] = f.bytes;
  auto& registry = methods::MethodRegistry::instance();
  for (const auto& m : config.methods) {
    const std::string& category = registry.info(m.at("name").get<std::string>()).category;
    if (category != "optimizer" && category != "precision" && category != "memory")
      return tags;  // it may freeze or shard parameters: only the build's bytes are certain
  }
  const nlohmann::json& opt = config.optimizerMethod();
  tags[static_cast<size_t>(MemoryTag::gradients)] =
      f.trainable_params * static_cast<int64_t>(dtypeSize(f.dtype));
  tags[static_cast<size_t>(MemoryTag::optimizer_state)] =
      f.trainable_params * stateBytesPerParameter(opt);
  return tags;
}

Estimate estimateRun(const RunConfig& config, const EstimateOptions& options) {
  LATHE_CHECK(options.max_calibration_batch >= 1,
              "estimate: max_calibration_batch must be >= 1, got ", options.max_calibration_batch);
  LATHE_CHECK(options.override_capacity_bytes >= 0,
              "estimate: override_capacity_bytes must be >= 0, got ",
              options.override_capacity_bytes);
  checkCancel(options);
  const Device device = Device::parse(config.device);
  const train::TrainOptions topt = config.trainOptions();
  Estimate e;
  e.name = config.name;
  e.device = device.str();
  e.batch_size = topt.batch_size;
  e.grad_accum = topt.grad_accum;
  e.capacity_bytes = deviceCapacity(config.device, &e.capacity_source);
  if (options.override_capacity_bytes > 0) {
    e.capacity_source =
        "override (the device: " +
        (e.capacity_bytes > 0 ? formatBytes(e.capacity_bytes) + ", " + e.capacity_source
                              : e.capacity_source) +
        ")";
    e.capacity_bytes = options.override_capacity_bytes;
  }

  // A model too large for the capacity is answered from its spec, before it is built.
  const std::array<int64_t, kNumMemoryTags> bound = residentLowerBound(config);
  int64_t bound_sum = 0;
  for (int64_t b : bound) bound_sum += b;
  if (e.capacity_bytes > 0 && bound_sum > e.capacity_bytes) {
    e.tag_bytes = bound;
    e.peak_bytes = bound_sum;
    e.planned_steps = topt.max_steps > 0 ? topt.max_steps : 0;  // epochs need the data
    e.fits = false;
    e.note = "not built: its parameters, gradients and optimizer state alone need at least " +
             formatBytes(bound_sum) + " (counted from the spec), more than the capacity of " +
             formatBytes(e.capacity_bytes) +
             "; the data were not loaded and no step was timed, so the peak is a lower bound";
    return e;
  }

  const data::LoadedData data = data::loadDataset(config.dataset, config.seed, config.base_dir);
  checkCancel(options);
  if (topt.drop_last && data.train->size() < topt.batch_size)
    throw Error("training.batch_size: " + std::to_string(topt.batch_size) +
                " is larger than the training set (" + std::to_string(data.train->size()) +
                " examples); nothing would be trained");
  e.planned_steps = train::plannedSteps(topt, data.train->size());

  const int64_t b2 = std::min(topt.batch_size, options.max_calibration_batch);
  const int64_t b1 = std::max<int64_t>(1, b2 / 4);
  if (b1 < b2)
    e.calibration.push_back(calibrate(config, data, device, b1, e.planned_steps, options));
  e.calibration.push_back(calibrate(config, data, device, b2, e.planned_steps, options));
  const CalibrationPoint& lo = e.calibration.front();
  const CalibrationPoint& hi = e.calibration.back();
  const auto x1 = static_cast<double>(lo.batch), x2 = static_cast<double>(hi.batch);
  const auto x = static_cast<double>(topt.batch_size);
  auto fit = [&](int64_t y1, int64_t y2) {
    return static_cast<int64_t>(
        extrapolate(x1, static_cast<double>(y1), x2, static_cast<double>(y2), x));
  };
  for (size_t t = 0; t < e.tag_bytes.size(); ++t)
    e.tag_bytes[t] = fit(lo.tag_peak[t], hi.tag_peak[t]);
  // The total peak is the larger of two phases' peaks. The fit of the measured totals follows
  // the phase that peaked at the small batches, often the optimizer step (its workspace over
  // the resident state); at large batches the forward / backward phase takes over, which holds
  // every resident tag together with the activations at their peak. Both are lower bounds.
  int64_t backward_phase = 0;
  for (MemoryTag t : {MemoryTag::parameters, MemoryTag::gradients, MemoryTag::optimizer_state,
                      MemoryTag::activations, MemoryTag::other})
    backward_phase += e.tag_bytes[static_cast<size_t>(t)];
  e.peak_bytes = std::max(fit(lo.peak, hi.peak), backward_phase);
  // The optimizer's part of a step is not repeated per micro-batch, so scaling the whole
  // micro-batch step by grad_accum errs slightly high.
  e.step_time_s =
      static_cast<double>(topt.grad_accum) * extrapolate(x1, lo.step_time_s, x2, hi.step_time_s, x);
  e.total_time_s = e.step_time_s * static_cast<double>(e.planned_steps);
  e.fits = e.capacity_bytes <= 0 || e.peak_bytes <= e.capacity_bytes;
  return e;
}

nlohmann::json Estimate::toJson() const {
  nlohmann::json tags = nlohmann::json::object();
  for (int t = 0; t < kNumMemoryTags; ++t)
    tags[memoryTagName(static_cast<MemoryTag>(t))] = tag_bytes[static_cast<size_t>(t)];
  nlohmann::json cal = nlohmann::json::array();
  for (const auto& p : calibration) {
    nlohmann::json pt = nlohmann::json::object();
    for (int t = 0; t < kNumMemoryTags; ++t)
      pt[memoryTagName(static_cast<MemoryTag>(t))] = p.tag_peak[static_cast<size_t>(t)];
    cal.push_back({{"batch", p.batch},
                   {"peak_bytes", p.peak},
                   {"tag_peak_bytes", pt},
                   {"step_time_s", p.step_time_s}});
  }
  return {{"name", name},
          {"device", device},
          {"batch_size", batch_size},
          {"grad_accum", grad_accum},
          {"planned_steps", planned_steps},
          {"memory_bytes", tags},
          {"peak_memory_bytes", peak_bytes},
          {"step_time_s", step_time_s},
          {"total_time_s", total_time_s},
          {"capacity_bytes", capacity_bytes},
          {"capacity_source", capacity_source},
          {"fits", fits},
          {"note", note},
          {"calibration", cal}};
}

}  // namespace lathe::run
