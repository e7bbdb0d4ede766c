// RunConfig: one experiment run as versioned JSON (resources/examples/*.json):
//   {"version": 1, "name": "...", "tags": [...], "seed": 0,
//    "model": {preset spec, core/nn/Presets.h}, "dataset": {core/data/DatasetSpec.h},
//    "training": {"epochs" | "max_steps", "batch_size", "grad_accum", "clip_norm",
//                 "label_smoothing", "schedule": {"kind", "warmup_steps", "min_lr_ratio",
//                 "step_size", "gamma"}, "eval_every", "eval_batches", "checkpoint_every",
//                 "target_accuracy"},
//    "methods": [{"name": "adamw", "lr": 0.001, ...}, ...],
//    "hardware": {"device": "cpu" | "cuda:N"}}   (CPU threads: LATHE_NUM_THREADS)
// parse() validates every field with messages that point at it
// ("methods[1].lr: expected a number in [0, 10], got \"fast\""), fills defaults from the
// schemas (AdamW when no optimizer method is listed), and keeps the canonical form: the same
// run written two ways has one canonical JSON and one hash.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/optim/LrSchedule.h"
#include "core/train/Trainer.h"

namespace lathe::run {

inline constexpr int kRunConfigVersion = 1;

struct RunConfig {
  std::string name;
  std::vector<std::string> tags;
  uint64_t seed = 0;
  nlohmann::json model;    // normalised preset spec
  nlohmann::json dataset;  // normalised dataset spec
  nlohmann::json training;
  std::vector<nlohmann::json> methods;  // validated, defaults filled, in the given order
  std::string device = "cpu";
  std::optional<double> target_accuracy;
  // Relative dataset paths resolve against this (the config file's folder); not part of the
  // canonical form.
  std::string base_dir;

  // Validates and normalises; `base_dir` as above.
  static RunConfig parse(const nlohmann::json& j, const std::string& base_dir = {});
  // Reads a config file; errors name the file (and the line and column of a JSON error).
  static RunConfig load(const std::string& path);

  nlohmann::json toJson() const;  // the canonical form (every default explicit)
  std::string canonical() const;  // toJson().dump() with sorted keys
  std::string hash() const;       // "fnv1a64:<16 hex>" of canonical()

  // The pieces the runner needs.
  train::TrainOptions trainOptions() const;
  optim::LrScheduleOptions scheduleOptions(int64_t total_steps) const;
  const nlohmann::json& optimizerMethod() const;  // the methods entry that builds the optimizer
};

}  // namespace lathe::run
