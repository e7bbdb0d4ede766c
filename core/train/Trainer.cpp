#include "core/train/Trainer.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/autograd/Autograd.h"
#include "core/backend/Backend.h"
#include "core/base/Error.h"
#include "core/io/Safetensors.h"
#include "core/ops/Autocast.h"
#include "core/ops/Ops.h"
#include "core/tensor/Random.h"

namespace lathe::train {

using Clock = std::chrono::steady_clock;

namespace {

// The forward's precision: autocast in compute_dtype (f32: off); for fp8 (f8e4m3), bf16
// autocast with fp8 linears on top.
class PrecisionScope {
 public:
  PrecisionScope(DType compute, Fp8State* fp8)
      : autocast_(compute == DType::f8e4m3 ? DType::bf16 : compute) {
    if (fp8 != nullptr) fp8_.emplace(*fp8);
  }

 private:
  AutocastGuard autocast_;
  std::optional<Fp8AutocastGuard> fp8_;
};

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

data::LoaderOptions loaderOptions(const TrainOptions& o) {
  data::LoaderOptions l;
  l.batch_size = o.batch_size;
  l.shuffle = o.shuffle;
  l.seed = o.seed;
  l.drop_last = o.drop_last;
  l.prefetch = o.prefetch;
  return l;
}

constexpr const char* kMetaKey = "lathe.checkpoint";

}  // namespace

Trainer::Trainer(std::shared_ptr<Model> model, std::unique_ptr<optim::Optimizer> optimizer,
                 optim::LrSchedule schedule, data::LoadedData data, TrainOptions options)
    : model_(std::move(model)),
      optimizer_(std::move(optimizer)),
      schedule_(std::move(schedule)),
      data_(std::move(data)),
      options_(std::move(options)) {
  LATHE_CHECK(model_ != nullptr, "Trainer: no model");
  LATHE_CHECK(optimizer_ != nullptr, "Trainer: no optimizer");
  LATHE_CHECK(data_.train != nullptr && data_.train->size() > 0,
              "Trainer: the training set is empty");
  LATHE_CHECK(options_.batch_size >= 1, "training.batch_size: expected >= 1, got ",
              options_.batch_size);
  LATHE_CHECK(options_.grad_accum >= 1, "training.grad_accum: expected >= 1, got ",
              options_.grad_accum);
  LATHE_CHECK(options_.max_steps > 0 || options_.epochs > 0,
              "training: give epochs or max_steps (both are 0)");
  for (const auto& [name, p] : model_->namedParameters())
    LATHE_CHECK(p.device() == options_.device, "Trainer: parameter '", name, "' is on ",
                p.device().str(), " but training runs on ", options_.device.str(),
                "; move the model first");
  if (options_.drop_last && data_.train->size() < options_.batch_size)
    throw Error("training.batch_size: " + std::to_string(options_.batch_size) +
                " is larger than the training set (" + std::to_string(data_.train->size()) +
                " examples); nothing would be trained");
  LATHE_CHECK(options_.compute_dtype == DType::f32 || options_.compute_dtype == DType::bf16 ||
                  options_.compute_dtype == DType::f16 || options_.compute_dtype == DType::f8e4m3,
              "precision: compute dtype ", dtypeName(options_.compute_dtype),
              " is not supported; expected f32, bf16, f16 or f8e4m3 (fp8)");
  if (options_.compute_dtype == DType::f8e4m3)
    fp8_ = std::make_unique<Fp8State>(Fp8Recipe{options_.fp8_history, options_.fp8_margin});
  LATHE_CHECK(!options_.loss_scaling ||
                  (std::isfinite(options_.init_loss_scale) && options_.init_loss_scale > 0 &&
                   options_.scale_growth_interval >= 1),
              "precision: loss scaling needs init_scale > 0 and growth_interval >= 1, got ",
              options_.init_loss_scale, " and ", options_.scale_growth_interval);
  loss_scale_ = options_.loss_scaling ? options_.init_loss_scale : 1.0;
  loader_ = std::make_unique<data::DataLoader>(data_.train, loaderOptions(options_));
  manualSeed(options_.seed);
  allocatorFor(options_.device).resetPeaks();
}

Trainer::~Trainer() = default;

int64_t plannedSteps(const TrainOptions& o, int64_t train_examples) {
  if (o.max_steps > 0) return o.max_steps;
  const int64_t batches = o.drop_last ? train_examples / o.batch_size
                                      : (train_examples + o.batch_size - 1) / o.batch_size;
  return std::max<int64_t>(1, batches / std::max<int64_t>(1, o.grad_accum) * o.epochs);
}

int64_t Trainer::totalSteps() const {
  return plannedSteps(options_, data_.train->size());
}

void Trainer::log(const std::string& line) const {
  if (hooks_.on_log) hooks_.on_log(line);
}

void Trainer::synchronize() const {
  if (options_.device.type != DeviceType::cpu)
    backendFor(options_.device.type).synchronize(options_.device.index);
}

data::Batch Trainer::nextBatch() {
  if (auto b = loader_->next()) return std::move(*b);
  // The epoch ended: the loader moved to the next one.
  auto b = loader_->next();
  LATHE_CHECK(b.has_value(), "Trainer: the data loader gave no batch for a whole epoch");
  return std::move(*b);
}

Tensor Trainer::lossOf(const Tensor& output, const Tensor& target, int64_t* correct) const {
  switch (data_.task) {
    case data::TaskKind::language_model: {
      const int64_t V = output.size(-1);
      Tensor logits = output.reshape({-1, V});
      Tensor t = target.reshape({-1});
      if (correct != nullptr) {
        NoGradGuard g;
        *correct = static_cast<int64_t>(sum(eq(argmax(logits, -1), t).to(DType::f32)).item());
      }
      return crossEntropy(logits, t, -100, options_.label_smoothing);
    }
    case data::TaskKind::regression: {
      Tensor out = output.reshape(target.shape());
      return mseLoss(out, target.to(out.dtype()));
    }
    case data::TaskKind::classification:
    default: {
      if (correct != nullptr) {
        NoGradGuard g;
        *correct = static_cast<int64_t>(sum(eq(argmax(output, -1), target).to(DType::f32)).item());
      }
      return crossEntropy(output, target, -100, options_.label_smoothing);
    }
  }
}

StepMetrics Trainer::step() {
  LATHE_CHECK(!finished(), "Trainer: all ", totalSteps(), " steps are done");
  model_->train();
  const auto t0 = Clock::now();
  double loss_sum = 0;
  int64_t correct = 0, predictions = 0, samples = 0, tokens = 0;
  // Curvature hook (Sophia): an extra pass on the first micro-batch; see curvaturePass().
  std::optional<data::Batch> first;
  if (optimizer_->curvatureWanted() != optim::CurvatureLoss::none) {
    first = nextBatch();
    curvaturePass(*first);
  }
  for (int64_t micro = 0; micro < options_.grad_accum; ++micro) {
    data::Batch b = micro == 0 && first ? std::move(*first) : nextBatch();
    Tensor x = b.input.to(options_.device);
    Tensor y = b.target.to(options_.device);
    int64_t c = 0;
    Tensor loss;
    {
      PrecisionScope precision(options_.compute_dtype, fp8_.get());
      Tensor out = model_->forward(x);
      loss = lossOf(out, y, data_.task == data::TaskKind::regression ? nullptr : &c);
    }
    const double factor =
        (options_.loss_scaling ? loss_scale_ : 1.0) / static_cast<double>(options_.grad_accum);
    if (factor != 1.0)
      mul(loss, factor).backward();
    else
      loss.backward();
    loss_sum += loss.item();
    correct += c;
    predictions += y.numel();
    samples += b.size();
    if (data_.task == data::TaskKind::language_model) tokens += y.numel();
  }
  auto& buffer = optimizer_->buffer();
  double norm = 0;
  if (options_.loss_scaling) {
    // Unscale and clip in one pass over the gradients (the norm is read once, scaled).
    norm = optim::gradNorm(buffer) / loss_scale_;
    if (std::isfinite(norm)) {
      double coef = 1.0 / loss_scale_;
      if (options_.clip_norm > 0) coef *= std::min(1.0, options_.clip_norm / (norm + 1e-6));
      optim::scaleGrads(buffer, coef);
    }
  } else {
    norm = options_.clip_norm > 0 ? optim::clipGradNorm(buffer, options_.clip_norm)
                                  : optim::gradNorm(buffer);
  }
  const double lr = schedule_.at(step_);
  optimizer_->setLr(lr);
  const bool skipped = !std::isfinite(norm);
  if (!skipped) {
    optimizer_->step();
    if (options_.loss_scaling && ++clean_steps_ >= options_.scale_growth_interval) {
      loss_scale_ *= 2.0;
      clean_steps_ = 0;
    }
  } else {
    ++skipped_steps_;
    if (options_.loss_scaling) {
      log("step " + std::to_string(step_ + 1) + ": gradients overflowed at loss scale " +
          std::to_string(loss_scale_) + "; the update was skipped and the scale halved");
      loss_scale_ *= 0.5;
      clean_steps_ = 0;
    } else {
      log("step " + std::to_string(step_ + 1) + ": gradient norm is " + std::to_string(norm) +
          "; the update was skipped");
    }
  }
  buffer.zeroGrad();
  synchronize();
  const auto t1 = Clock::now();
  ++step_;
  samples_seen_ += samples;
  const double dt = seconds(t0, t1);
  elapsed_s_ += dt;

  StepMetrics m;
  m.step = step_;
  m.total_steps = totalSteps();
  m.epoch = static_cast<double>(step_ * options_.grad_accum) /
            static_cast<double>(std::max<int64_t>(1, loader_->batchesPerEpoch()));
  m.loss = loss_sum / static_cast<double>(options_.grad_accum);
  if (data_.task != data::TaskKind::regression && predictions > 0)
    m.accuracy = static_cast<double>(correct) / static_cast<double>(predictions);
  m.lr = lr;
  m.grad_norm = norm;
  m.step_time_s = dt;
  m.samples_per_s = dt > 0 ? static_cast<double>(samples) / dt : 0;
  m.tokens_per_s = dt > 0 ? static_cast<double>(tokens) / dt : 0;
  m.elapsed_s = elapsed_s_;
  m.memory = allocatorFor(options_.device).stats();
  m.loss_scale = options_.loss_scaling ? loss_scale_ : 0.0;
  m.skipped_steps = skipped_steps_;
  m.skipped = skipped;
  if (!std::isfinite(m.loss))
    log("step " + std::to_string(step_) + ": the loss is " + std::to_string(m.loss));
  return m;
}

bool Trainer::run() {
  const int64_t total = totalSteps();
  const int64_t per_epoch = std::max<int64_t>(1, loader_->batchesPerEpoch() / options_.grad_accum);
  const int64_t eval_every = options_.eval_every > 0 ? options_.eval_every : per_epoch;
  while (step_ < total) {
    if (hooks_.should_stop && hooks_.should_stop()) {
      log("stopped at step " + std::to_string(step_) + " of " + std::to_string(total));
      return false;
    }
    StepMetrics m = step();
    if (hooks_.on_step && (step_ % std::max<int64_t>(1, options_.log_every) == 0 || step_ == total))
      hooks_.on_step(m);
    if (data_.val && (step_ % eval_every == 0 || step_ == total) && last_eval_step_ != step_) {
      EvalMetrics e = evaluate("val", options_.eval_batches);
      last_eval_step_ = step_;
      if (hooks_.on_eval) hooks_.on_eval(e);
    }
    if (options_.checkpoint_every > 0 && !options_.checkpoint_path.empty() &&
        (step_ % options_.checkpoint_every == 0 || step_ == total))
      saveCheckpoint(options_.checkpoint_path);
  }
  return true;
}

EvalMetrics Trainer::evaluate(const std::string& split, int64_t max_batches) {
  data::DatasetPtr ds = split == "test" ? data_.test : data_.val;
  LATHE_CHECK(ds != nullptr, "Trainer: there is no ", split, " split to evaluate on");
  const auto t0 = Clock::now();
  const bool was_training = model_->isTraining();
  model_->eval();
  data::LoaderOptions lo;
  lo.batch_size = options_.batch_size;
  lo.shuffle = false;
  lo.drop_last = false;
  lo.prefetch = options_.prefetch;
  data::DataLoader loader(ds, lo);
  NoGradGuard no_grad;
  double loss_sum = 0;
  int64_t correct = 0, predictions = 0, examples = 0, batches = 0;
  while (auto b = loader.next()) {
    Tensor x = b->input.to(options_.device);
    Tensor y = b->target.to(options_.device);
    PrecisionScope precision(options_.compute_dtype, fp8_.get());  // evaluated as trained
    Tensor out = model_->forward(x);
    int64_t c = 0;
    Tensor loss = lossOf(out, y, data_.task == data::TaskKind::regression ? nullptr : &c);
    // Mean losses weighted by their element counts, so the total is the dataset mean.
    const int64_t n = data_.task == data::TaskKind::regression ? y.numel() : y.numel();
    loss_sum += loss.item() * static_cast<double>(n);
    correct += c;
    predictions += n;
    examples += b->size();
    if (max_batches > 0 && ++batches >= max_batches) break;
  }
  model_->train(was_training);
  EvalMetrics e;
  e.step = step_;
  e.split = split;
  e.examples = examples;
  e.loss = predictions > 0 ? loss_sum / static_cast<double>(predictions) : 0;
  if (data_.task == data::TaskKind::classification && predictions > 0)
    e.accuracy = static_cast<double>(correct) / static_cast<double>(predictions);
  if (data_.task == data::TaskKind::language_model) {
    e.perplexity = std::exp(e.loss);
    e.accuracy =
        predictions > 0 ? static_cast<double>(correct) / static_cast<double>(predictions) : 0;
  }
  e.time_s = seconds(t0, Clock::now());
  return e;
}

void Trainer::saveCheckpoint(const std::string& path) const {
  NamedTensors tensors;
  for (const auto& [name, t] : model_->stateDict()) tensors.emplace_back("model." + name, t);
  for (const auto& [name, t] : optimizer_->stateDict()) tensors.emplace_back("optim." + name, t);
  if (fp8_)  // fp8 scaling histories, so a resumed run quantizes with the same scales
    for (const auto& [name, p] : model_->namedParameters())
      if (fp8_->has(p)) {
        auto [history, positions] = fp8_->save(p);
        tensors.emplace_back("fp8." + name + ".amax_history", history);
        tensors.emplace_back("fp8." + name + ".positions", positions);
      }
  const RandomState rs = rngState();
  const data::LoaderPosition pos = loader_->position();
  nlohmann::json meta = {{"step", step_},
                         {"samples_seen", samples_seen_},
                         {"elapsed_s", elapsed_s_},
                         {"epoch", pos.epoch},
                         {"batch", pos.batch},
                         // u64 as strings: JSON readers elsewhere may hold numbers as doubles.
                         {"rng_seed", std::to_string(rs.seed)},
                         {"rng_offset", std::to_string(rs.offset)},
                         {"optimizer", optimizer_->name()},
                         {"model_type", model_->typeName()},
                         {"loss_scale", loss_scale_},
                         {"clean_steps", clean_steps_},
                         {"skipped_steps", skipped_steps_}};
  std::map<std::string, std::string> md = {{kMetaKey, meta.dump()},
                                           {"lathe.spec", model_->spec().dump()}};
  writeSafetensors(path, tensors, md);
  if (hooks_.on_checkpoint) {
    std::error_code ec;
    hooks_.on_checkpoint(path, static_cast<int64_t>(std::filesystem::file_size(path, ec)));
  }
}

CheckpointInfo readCheckpointInfo(const std::string& path) {
  SafetensorsReader r(path);
  auto it = r.metadata().find(kMetaKey);
  LATHE_CHECK(it != r.metadata().end(), path, ": not a Lathe checkpoint (no '", kMetaKey,
              "' metadata)");
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(it->second);
    CheckpointInfo info;
    info.step = meta.at("step").get<int64_t>();
    info.samples_seen = meta.at("samples_seen").get<int64_t>();
    info.elapsed_s = meta.at("elapsed_s").get<double>();
    info.position.epoch = meta.at("epoch").get<int64_t>();
    info.position.batch = meta.at("batch").get<int64_t>();
    return info;
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": checkpoint metadata is damaged (" + e.what() + ")");
  }
}

void Trainer::loadCheckpoint(const std::string& path) {
  SafetensorsReader r(path);
  const CheckpointInfo info = readCheckpointInfo(path);
  const nlohmann::json meta = nlohmann::json::parse(r.metadata().at(kMetaKey));
  const std::string opt_name = meta.value("optimizer", "");
  LATHE_CHECK(opt_name == optimizer_->name(), path, ": checkpoint was written with optimizer '",
              opt_name, "', this run uses '", optimizer_->name(), "'");
  NamedTensors model_state, optim_state;
  std::map<std::string, Tensor> fp8_state;
  {
    MemoryTagScope tag(MemoryTag::workspace);
    for (auto& [name, t] : r.readAll()) {
      if (name.rfind("model.", 0) == 0)
        model_state.emplace_back(name.substr(6), t);
      else if (name.rfind("optim.", 0) == 0)
        optim_state.emplace_back(name.substr(6), t);
      else if (name.rfind("fp8.", 0) == 0)
        fp8_state.emplace(name.substr(4), t);
      else
        throw Error(path + ": unexpected tensor '" + name + "' in a checkpoint");
    }
  }
  LATHE_CHECK(fp8_state.empty() || fp8_ != nullptr, path,
              ": checkpoint holds fp8 scaling state, but this run does not train in fp8 (the "
              "precision method's dtype must be fp8 to resume it)");
  std::vector<std::pair<Tensor, std::string>> fp8_layers;  // (weight, parameter name)
  if (fp8_) {
    for (const auto& [name, p] : model_->namedParameters()) {
      const auto h = fp8_state.find(name + ".amax_history");
      const auto q = fp8_state.find(name + ".positions");
      if (h == fp8_state.end() && q == fp8_state.end()) continue;
      LATHE_CHECK(h != fp8_state.end() && q != fp8_state.end(), path, ": fp8 state of '", name,
                  "' is incomplete (needs amax_history and positions)");
      fp8_->checkState(h->second, q->second, path + ": " + name);
      fp8_layers.emplace_back(p, name);
    }
    LATHE_CHECK(fp8_layers.size() * 2 == fp8_state.size(), path,
                ": checkpoint holds fp8 state for parameters this model does not have");
  }
  // Validate both before changing either, so a mismatched file leaves the trainer as it was.
  std::vector<std::pair<std::string, Shape>> keys;
  for (const auto& [n, t] : model_state) keys.emplace_back(n, t.shape());
  model_->checkStateDict(keys, true);
  optimizer_->checkStateDict(optim_state);
  model_->loadStateDict(model_state, true);
  optimizer_->loadStateDict(optim_state);
  for (const auto& [p, name] : fp8_layers)
    fp8_->restore(p, fp8_state.at(name + ".amax_history"), fp8_state.at(name + ".positions"),
                  path + ": " + name);
  step_ = info.step;
  samples_seen_ = info.samples_seen;
  elapsed_s_ = info.elapsed_s;
  RandomState rs;
  rs.seed = std::stoull(meta.at("rng_seed").get<std::string>());
  rs.offset = std::stoull(meta.at("rng_offset").get<std::string>());
  setRngState(rs);
  loader_->seek(info.position);
  // Checkpoints from before mixed precision carry no scaler state: the initial one.
  loss_scale_ = meta.value("loss_scale", options_.loss_scaling ? options_.init_loss_scale : 1.0);
  clean_steps_ = meta.value("clean_steps", int64_t{0});
  skipped_steps_ = meta.value("skipped_steps", int64_t{0});
  last_eval_step_ = step_;
}

// ---- Curvature hook for second-order optimizers (Sophia) ------------------------------------
// The optimizer asks for the gradient of a loss at the current parameters (possibly several
// times, perturbing and restoring the parameters in between); this supplies it on one batch.
// Gauss-Newton-Bartlett needs the loss against labels sampled from the model's own predictive
// distribution: class / token labels by the Gumbel-max trick (argmax(logits - log(-log U)) is a
// draw from softmax(logits)), regression targets y = f + N(0, 1/2) (the Gaussian whose negative
// log-likelihood is the squared error up to a constant). The returned count is the number of
// terms the mean loss averages (examples, or tokens), Sophia-G's batch-size scale.
void Trainer::curvaturePass(const data::Batch& batch) {
  const optim::CurvatureLoss kind = optimizer_->curvatureWanted();
  const Tensor x = batch.input.to(options_.device), y = batch.target.to(options_.device);
  ParameterBuffer& buffer = optimizer_->buffer();
  optimizer_->estimateCurvature([&]() -> int64_t {
    buffer.zeroGrad();
    Tensor out = model_->forward(x);
    if (kind == optim::CurvatureLoss::taskLoss) {
      lossOf(out, y, nullptr).backward();
      return y.numel();
    }
    Tensor sampled;
    {
      NoGradGuard no_grad;
      const Tensor f = out.detach().to(DType::f32);
      if (data_.task == data::TaskKind::regression) {
        sampled =
            add(f.reshape(y.shape()), mul(randn(y.shape(), DType::f32, f.device()), std::sqrt(0.5)))
                .to(out.dtype());
      } else {
        const Tensor logits = f.reshape({-1, f.size(-1)});
        const Tensor u = rand(logits.shape(), DType::f32, f.device());
        sampled = argmax(sub(logits, lathe::log(neg(lathe::log(u)))), -1);
      }
    }
    if (data_.task == data::TaskKind::regression) {
      mseLoss(out.reshape(y.shape()), sampled).backward();
      return sampled.numel();
    }
    crossEntropy(out.reshape({-1, out.size(-1)}), sampled).backward();
    return sampled.numel();
  });
  buffer.zeroGrad();
}

}  // namespace lathe::train
