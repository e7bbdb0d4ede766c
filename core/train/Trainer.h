// Trainer: the training loop every run goes through (CLI, GUI, benchmarks). One step = grad_accum
// micro-batches forward + backward, optional clipping by global norm, the LR of the schedule,
// one optimizer step over the flat parameter buffer. It measures each step (loss, LR, gradient
// norm, time, throughput, memory by tag), evaluates every N steps and at the end, and writes
// checkpoints that resume bit-exactly on the CPU: model and optimizer state, the global RNG
// state, the loader position and the counters go into one safetensors file, written atomically.
//
// The loss follows the task: cross-entropy over class logits (label smoothing optional),
// cross-entropy over every position for language models ([B, T, V] logits, [B, T] targets),
// mean squared error for regression.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/data/DataLoader.h"
#include "core/data/DatasetSpec.h"
#include "core/nn/Presets.h"
#include "core/ops/Fp8.h"
#include "core/optim/LrSchedule.h"
#include "core/optim/Optimizer.h"
#include "core/tensor/Allocator.h"

namespace lathe::train {

struct TrainOptions {
  int64_t epochs = 1;     // used when max_steps is 0
  int64_t max_steps = 0;  // optimizer steps; overrides epochs when > 0
  int64_t batch_size = 64;
  int64_t grad_accum = 1;  // micro-batches per optimizer step
  double clip_norm = 0.0;  // clip gradients to this global L2 norm; 0 = off
  double label_smoothing = 0.0;
  int64_t eval_every = 0;        // steps between evaluations; 0 = at the end of every epoch
  int64_t eval_batches = 0;      // batches per evaluation; 0 = the whole validation set
  int64_t log_every = 1;         // steps between on_step calls
  int64_t checkpoint_every = 0;  // steps between checkpoints (needs checkpoint_path); 0 = off
  std::string checkpoint_path;
  bool shuffle = true;
  bool drop_last = true;
  int prefetch = 2;
  uint64_t seed = 0;  // data order, augmentation, dropout
  Device device = Device::cpu();
  // Mixed precision (the precision method sets these): forward passes and losses run under
  // AutocastGuard(compute_dtype) with f32 master weights; f32 = off. Dynamic loss scaling (for
  // f16): the loss is multiplied by the scale before backward and the gradients divided by it;
  // a step whose gradients overflow is skipped and the scale halved; after
  // scale_growth_interval clean steps in a row the scale doubles.
  // f8e4m3 means fp8 training (core/ops/Fp8.h): linear layers in e4m3/e5m2 with delayed
  // scaling over an amax history of fp8_history uses, every other op under bf16 autocast.
  DType compute_dtype = DType::f32;
  int fp8_history = 16;
  int fp8_margin = 0;
  bool loss_scaling = false;
  double init_loss_scale = 65536.0;
  int64_t scale_growth_interval = 2000;
};

struct StepMetrics {
  int64_t step = 0;  // completed optimizer steps (1 after the first)
  int64_t total_steps = 0;
  double epoch = 0;      // fractional epochs completed
  double loss = 0;       // mean over the step's micro-batches
  double accuracy = -1;  // of the step's batches (classification); -1 when not applicable
  double lr = 0;
  double grad_norm = 0;  // before clipping
  double step_time_s = 0;
  double samples_per_s = 0;
  double tokens_per_s = 0;    // language models; 0 otherwise
  double elapsed_s = 0;       // training time so far (evaluation excluded)
  MemoryStats memory;         // the device allocator's counters (peaks since training began)
  double loss_scale = 0;      // the dynamic loss scale after this step; 0 without loss scaling
  int64_t skipped_steps = 0;  // steps skipped so far (overflowing or non-finite gradients)
  bool skipped = false;       // this step's update was skipped
};

struct EvalMetrics {
  int64_t step = 0;
  std::string split;  // "val" or "test"
  double loss = 0;
  double accuracy = -1;    // classification
  double perplexity = -1;  // language models: exp(loss)
  int64_t examples = 0;
  double time_s = 0;
};

// Callbacks, all optional, called on the training thread.
struct TrainerHooks {
  std::function<void(const StepMetrics&)> on_step;
  std::function<void(const EvalMetrics&)> on_eval;
  std::function<void(const std::string&)> on_log;
  // Checked between steps: true stops the loop (the run can be resumed from a checkpoint).
  std::function<bool()> should_stop;
  // Called after a checkpoint is written, with its path and size.
  std::function<void(const std::string&, int64_t)> on_checkpoint;
};

class Trainer {
 public:
  // The model is trained where it is (move it with Model::to first; the options' device must
  // match). The optimizer was built over the model (optim::makeAdamW / makeSgd).
  Trainer(std::shared_ptr<Model> model, std::unique_ptr<optim::Optimizer> optimizer,
          optim::LrSchedule schedule, data::LoadedData data, TrainOptions options);
  ~Trainer();

  TrainerHooks& hooks() { return hooks_; }

  // Trains until the step budget is spent or should_stop says so; returns true when finished.
  bool run();
  // One optimizer step; returns its metrics.
  StepMetrics step();
  bool finished() const { return step_ >= totalSteps(); }
  int64_t totalSteps() const;
  int64_t stepCount() const { return step_; }

  // Evaluates on the validation (or test) split; max_batches 0 = all of it.
  EvalMetrics evaluate(const std::string& split = "val", int64_t max_batches = 0);

  // Writes a checkpoint atomically (temp file, fsync, rename).
  void saveCheckpoint(const std::string& path) const;
  // Restores a checkpoint written by a trainer of the same model, optimizer and data; the next
  // step continues exactly where the saved run was.
  void loadCheckpoint(const std::string& path);

  Model& model() { return *model_; }
  optim::Optimizer& optimizer() { return *optimizer_; }
  const TrainOptions& options() const { return options_; }
  const Fp8State* fp8State() const { return fp8_.get(); }  // null unless training in fp8
  const data::LoadedData& data() const { return data_; }
  double elapsedSeconds() const { return elapsed_s_; }
  int64_t samplesSeen() const { return samples_seen_; }

 private:
  data::Batch nextBatch();
  // Loss (and the number of correct predictions, for classification) of one batch.
  Tensor lossOf(const Tensor& output, const Tensor& target, int64_t* correct) const;
  void synchronize() const;
  void log(const std::string& line) const;
  // Curvature hook for second-order optimizers (Sophia): runs optimizer_->estimateCurvature with
  // forward + backward passes on `batch` (the step's first micro-batch); leaves gradients zero.
  void curvaturePass(const data::Batch& batch);

  std::shared_ptr<Model> model_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  optim::LrSchedule schedule_;
  data::LoadedData data_;
  TrainOptions options_;
  TrainerHooks hooks_;
  std::unique_ptr<data::DataLoader> loader_;
  std::unique_ptr<Fp8State> fp8_;  // fp8 training only
  int64_t step_ = 0;
  int64_t samples_seen_ = 0;
  double elapsed_s_ = 0;
  int64_t last_eval_step_ = -1;
  // Dynamic loss scaling state (checkpointed).
  double loss_scale_ = 1.0;
  int64_t clean_steps_ = 0;  // consecutive steps without overflow since the last change
  int64_t skipped_steps_ = 0;
};

// The optimizer steps a run of `options` over `train_examples` examples takes (what
// Trainer::totalSteps() returns; schedules are built from it before the trainer exists).
int64_t plannedSteps(const TrainOptions& options, int64_t train_examples);

// Reads a checkpoint's counters without a trainer (the run store shows them).
struct CheckpointInfo {
  int64_t step = 0;
  int64_t samples_seen = 0;
  double elapsed_s = 0;
  data::LoaderPosition position;
};
CheckpointInfo readCheckpointInfo(const std::string& path);

}  // namespace lathe::train
