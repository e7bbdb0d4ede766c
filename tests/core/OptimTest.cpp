// lathe::optim: SGD and AdamW replayed against torch.optim over five steps in float64
// (scripts/make_golden_optim.py writes tests/data/golden/optim_*.json: parameter groups by
// decay rule, Nesterov, dampening, a cosine schedule and gradient clipping), the decay rule's
// grouping, state memory, checkpoint round trips that continue bit-exactly, gradient norms and
// clipping, learning-rate schedules, and the errors for bad options and mismatched state.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numbers>
#include <optional>
#include <string>

#include "core/nn/Layers.h"
#include "core/nn/Presets.h"
#include "core/optim/LrSchedule.h"
#include "core/optim/Optimizer.h"
#include "core/tensor/Random.h"
#include "tests/OpTestUtil.h"
#include "tests/core/OptimGoldenUtil.h"

namespace lathe::optim {
namespace {

using nlohmann::json;

using golden::decayRule;
using golden::loadJson;
using golden::TinyNet;
using golden::unpack;

std::unique_ptr<Optimizer> makeFromJson(Module& model, const json& o) {
  if (o.at("optimizer") == "sgd") {
    SgdOptions s;
    s.lr = o.at("lr");
    s.momentum = o.at("momentum");
    s.dampening = o.at("dampening");
    s.weight_decay = o.at("weight_decay");
    s.nesterov = o.at("nesterov");
    s.decay = decayRule(o);
    return makeSgd(model, s);
  }
  AdamWOptions a;
  a.lr = o.at("lr");
  a.beta1 = o.at("beta1");
  a.beta2 = o.at("beta2");
  a.eps = o.at("eps");
  a.weight_decay = o.at("weight_decay");
  a.decay = decayRule(o);
  return makeAdamW(model, a);
}

// Replays a golden file: same initial parameters, same batch, five steps, every parameter, the
// loss, the gradient norm and the lr compared after each step, then the final optimizer state.
void replay(const std::string& name) {
  const json doc = loadJson("optim_" + name);
  const json& o = doc.at("options");
  TinyNet model(ModuleOptions{DType::f64});
  NamedTensors initial;
  for (auto& [k, v] : doc.at("initial").items()) initial.emplace_back(k, unpack(v));
  model.loadStateDict(initial);
  auto opt = makeFromJson(model, o);
  std::optional<LrSchedule> schedule;
  if (o.contains("schedule")) {
    const json& s = o.at("schedule");
    LrScheduleOptions so;
    so.kind = parseScheduleKind(s.at("kind").get<std::string>());
    so.warmup_steps = s.at("warmup_steps");
    so.total_steps = s.at("total_steps");
    so.min_lr_ratio = s.at("min_lr_ratio");
    schedule.emplace(o.at("lr").get<double>(), so);
  }
  const Tensor ids = unpack(doc.at("inputs").at("ids")).to(DType::i64);
  const Tensor target = unpack(doc.at("inputs").at("target"));
  int clipped = 0;
  for (const json& st : doc.at("steps")) {
    const std::string at = name + " step " + std::to_string(opt->stepCount() + 1);
    opt->buffer().zeroGrad();
    Tensor loss = mseLoss(model(ids), target);
    loss.backward();
    EXPECT_NEAR(loss.item(), st.at("loss").get<double>(), 1e-12) << at;
    const double want_norm = st.at("norm");
    double norm = 0;
    if (o.contains("max_norm")) {
      norm = clipGradNorm(opt->buffer(), o.at("max_norm"));
      clipped += want_norm > o.at("max_norm").get<double>() ? 1 : 0;
    } else {
      norm = gradNorm(opt->buffer());
    }
    EXPECT_NEAR(norm, want_norm, 1e-12 * want_norm) << at;
    if (schedule) opt->setLr(schedule->at(opt->stepCount()));
    EXPECT_NEAR(opt->lr(), st.at("lr").get<double>(), 1e-15) << at;
    opt->step();
    for (auto& [k, v] : st.at("params").items())
      test::expectClose(model.parameter(k), unpack(v), 1e-12, 1e-10, at + " " + k);
  }
  EXPECT_EQ(opt->stepCount(), 5);
  if (o.contains("max_norm")) EXPECT_GT(clipped, 0) << "no step of " << name << " clipped";

  // Final state under PyTorch's names, shaped like the parameters.
  std::map<std::string, Tensor> state;
  for (auto& [k, v] : opt->stateDict()) state[k] = v;
  EXPECT_EQ(state.size(), doc.at("state").size() + 2);
  EXPECT_EQ(state.at("step").item(), 5.0);
  for (auto& [k, v] : doc.at("state").items()) {
    ASSERT_TRUE(state.count(k)) << name << ": no state " << k;
    test::expectClose(state.at(k), unpack(v), 1e-12, 1e-10, name + " state " + k);
  }
}

TEST(OptimGolden, SgdPlain) {
  replay("sgd_plain");
}
TEST(OptimGolden, SgdMomentumNesterovWeightDecayOnMatrices) {
  replay("sgd_nesterov");
}
TEST(OptimGolden, SgdMomentumDampeningDecayAll) {
  replay("sgd_dampening_all");
}
TEST(OptimGolden, AdamWDecayAndNoDecayGroups) {
  replay("adamw");
}
TEST(OptimGolden, AdamWCosineWarmupWithGradClipping) {
  replay("adamw_cosine_clip");
}

std::vector<std::string> slotNames(const ParameterBuffer& buf, int partition) {
  std::vector<std::string> names;
  for (const auto& g : buf.groups())
    if (g.trainable && g.partition == partition)
      for (const auto& s : g.slots) names.push_back(s.name);
  return names;
}

TEST(OptimDecay, MatricesOnlyLeavesBiasesNormsAndEmbeddingsUndecayed) {
  TinyNet model;
  auto opt = makeAdamW(model, {});
  EXPECT_EQ(opt->name(), "adamw");
  EXPECT_EQ(opt->buffer().groups().size(), 2u);
  EXPECT_EQ(slotNames(opt->buffer(), Optimizer::kDecayed),
            (std::vector<std::string>{"fc.weight", "head.weight"}));
  EXPECT_EQ(slotNames(opt->buffer(), Optimizer::kNotDecayed),
            (std::vector<std::string>{"emb.weight", "fc.bias", "ln.weight", "ln.bias"}));

  TinyNet all;
  AdamWOptions o;
  o.decay = DecayRule::all;
  auto opt_all = makeAdamW(all, o);
  ASSERT_EQ(opt_all->buffer().groups().size(), 1u);
  EXPECT_EQ(opt_all->buffer().groups()[0].partition, Optimizer::kDecayed);
}

TEST(OptimDecay, TiedGptEmbeddingIsNotDecayed) {
  auto model = buildModel({{"type", "gpt"},
                           {"vocab_size", 11},
                           {"block_size", 8},
                           {"n_layer", 1},
                           {"n_head", 2},
                           {"d_model", 8}});
  auto opt = makeSgd(*model, {});
  const auto decayed = slotNames(opt->buffer(), Optimizer::kDecayed);
  const auto plain = slotNames(opt->buffer(), Optimizer::kNotDecayed);
  auto has = [](const std::vector<std::string>& v, const std::string& n) {
    return std::find(v.begin(), v.end(), n) != v.end();
  };
  EXPECT_TRUE(has(plain, "wte.weight"));
  EXPECT_TRUE(has(plain, "wpe.weight"));
  EXPECT_TRUE(has(plain, "blocks.0.ln1.weight"));
  EXPECT_TRUE(has(plain, "blocks.0.attn.qkv.bias"));
  EXPECT_TRUE(has(decayed, "blocks.0.attn.qkv.weight"));
  EXPECT_TRUE(has(decayed, "blocks.0.mlp.fc2.weight"));
  for (const auto& n : decayed) EXPECT_EQ(model->parameter(n).dim(), 2) << n;
  EXPECT_EQ(decayed.size() + plain.size(), model->parameters().size());
}

int64_t tagBytes(MemoryTag tag) {
  return cpuAllocator().stats().tag_current[static_cast<int>(tag)];
}

// Linear(16, 16) + LayerNorm(16): every parameter a multiple of 64 bytes in f32, so the flat
// groups have no padding and the state is exactly proportional to the parameters.
std::shared_ptr<Module> alignedModel(const ModuleOptions& opt = {}) {
  auto seq = std::make_shared<Module>("Seq");
  seq->registerModule("fc", std::make_shared<Linear>(16, 16, true, opt));
  seq->registerModule("ln", std::make_shared<LayerNorm>(16, 1e-5, true, opt));
  return seq;
}

TEST(OptimState, AdamWStateIsTwiceTheTrainableParameterBytesTaggedAsOptimizerState) {
  auto model = alignedModel();
  model->find("ln")->setRequiresGrad(false);  // frozen parameters get no state
  const int64_t before = tagBytes(MemoryTag::optimizer_state);
  auto opt = makeAdamW(*model, {});
  const int64_t trainable = model->numParameters(/*trainable_only=*/true);
  EXPECT_EQ(trainable, 16 * 16 + 16);
  EXPECT_EQ(opt->stateBytes(), 2 * 4 * trainable);
  EXPECT_EQ(tagBytes(MemoryTag::optimizer_state) - before, opt->stateBytes());
  int64_t flat_bytes = 0;
  for (const auto& g : opt->buffer().groups())
    if (g.trainable) flat_bytes += static_cast<int64_t>(g.params.nbytes());
  EXPECT_EQ(opt->stateBytes(), 2 * flat_bytes);
  for (const auto& [k, t] : opt->stateDict()) {
    if (k == "step" || k == "lr") continue;
    EXPECT_EQ(t.dtype(), DType::f32) << k;
    EXPECT_EQ(t.storage()->tag(), MemoryTag::optimizer_state) << k;
    EXPECT_EQ(t.device(), Device::cpu()) << k;
    for (double v : t.toDoubles()) ASSERT_EQ(v, 0.0) << k;
  }
  opt.reset();
  EXPECT_EQ(tagBytes(MemoryTag::optimizer_state), before);

  SgdOptions plain;
  EXPECT_EQ(makeSgd(*model, plain)->stateBytes(), 0);
  plain.momentum = 0.9;
  EXPECT_EQ(makeSgd(*model, plain)->stateBytes(), 4 * trainable);

  auto f64 = alignedModel(ModuleOptions{DType::f64});
  auto opt64 = makeAdamW(*f64, {});
  EXPECT_EQ(opt64->stateBytes(), 2 * 8 * f64->numParameters(true));
  EXPECT_EQ(opt64->stateDict().back().second.dtype(), DType::f64);
}

TEST(OptimState, StateDictNamesFollowRegistrationOrder) {
  TinyNet model;
  SgdOptions o;
  o.momentum = 0.5;
  o.lr = 0.25;
  auto opt = makeSgd(model, o);
  const NamedTensors st = opt->stateDict();
  std::vector<std::string> keys;
  for (const auto& [k, t] : st) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"step", "lr", "emb.weight.momentum_buffer",
                                            "fc.weight.momentum_buffer", "fc.bias.momentum_buffer",
                                            "ln.weight.momentum_buffer", "ln.bias.momentum_buffer",
                                            "head.weight.momentum_buffer"}));
  EXPECT_EQ(st[0].second.dim(), 0);
  EXPECT_EQ(st[0].second.dtype(), DType::f64);
  EXPECT_EQ(st[1].second.item(), 0.25);
  EXPECT_EQ(st[3].second.shape(), (Shape{3, 4}));
}

// Trains `steps` steps on a fixed batch, with the lr from `schedule` at each step.
void train(Module& model, Optimizer& opt, const LrSchedule& schedule, int steps) {
  manualSeed(99);
  const Tensor ids = Tensor::fromVector(std::vector<int64_t>{0, 3, 1, 4, 2, 5}, {2, 3});
  const Tensor target = randn({2, 3, 2});
  for (int i = 0; i < steps; ++i) {
    opt.buffer().zeroGrad();
    mseLoss(model(ids), target).backward();
    clipGradNorm(opt.buffer(), 0.3);
    opt.setLr(schedule.at(opt.stepCount()));
    opt.step();
  }
}

NamedTensors cloneAll(const NamedTensors& in) {
  NamedTensors out;
  for (const auto& [k, t] : in) out.emplace_back(k, t.clone());
  return out;
}

// One optimizer trains 3 + 4 steps; a second one, built over a fresh model that loads the
// first model's parameters and optimizer state after 3 steps (copies, as a checkpoint file
// holds them), trains the last 4: the parameters must agree bit for bit.
void expectResumeBitExact(const std::function<std::unique_ptr<Optimizer>(Module&)>& make) {
  LrScheduleOptions so;
  so.kind = ScheduleKind::cosine;
  so.warmup_steps = 2;
  so.total_steps = 8;
  const LrSchedule schedule(0.05, so);
  manualSeed(1);
  TinyNet a;
  auto opt_a = make(a);
  train(a, *opt_a, schedule, 3);
  const NamedTensors model_ckpt = cloneAll(a.stateDict());
  const NamedTensors optim_ckpt = cloneAll(opt_a->stateDict());
  train(a, *opt_a, schedule, 4);

  manualSeed(2);
  TinyNet b;
  b.loadStateDict(model_ckpt);
  auto opt_b = make(b);
  opt_b->loadStateDict(optim_ckpt);
  EXPECT_EQ(opt_b->stepCount(), 3);
  EXPECT_EQ(opt_b->lr(), schedule.at(2));  // set before the third step
  train(b, *opt_b, schedule, 4);
  EXPECT_EQ(opt_b->stepCount(), 7);
  const auto pa = a.namedParameters(), pb = b.namedParameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second.toDoubles(), pb[i].second.toDoubles()) << pa[i].first;
  const auto sa = opt_a->stateDict(), sb = opt_b->stateDict();
  for (size_t i = 0; i < sa.size(); ++i)
    EXPECT_EQ(sa[i].second.toDoubles(), sb[i].second.toDoubles()) << sa[i].first;

  // Without the optimizer state the continuation differs (the state carries information).
  TinyNet c;
  c.loadStateDict(model_ckpt);
  auto opt_c = make(c);
  train(c, *opt_c, schedule, 4);
  EXPECT_NE(c.parameter("fc.weight").toDoubles(), a.parameter("fc.weight").toDoubles());
}

TEST(OptimState, AdamWCheckpointResumesBitExactly) {
  expectResumeBitExact([](Module& m) {
    AdamWOptions o;
    o.weight_decay = 0.1;
    return makeAdamW(m, o);
  });
}

TEST(OptimState, SgdMomentumCheckpointResumesBitExactly) {
  expectResumeBitExact([](Module& m) {
    SgdOptions o;
    o.momentum = 0.9;
    o.nesterov = true;
    o.weight_decay = 0.01;
    return makeSgd(m, o);
  });
}

std::string errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void expectError(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  const std::string msg = errorOf(fn);
  for (const auto& p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

TEST(OptimState, LoadStateDictIsStrictAndNamesTheKey) {
  TinyNet model;
  auto opt = makeAdamW(model, {});
  const NamedTensors good = cloneAll(opt->stateDict());

  NamedTensors missing = good;
  missing.erase(missing.begin() + 4);
  expectError([&] { opt->loadStateDict(missing); }, {"missing key 'fc.weight.exp_avg'"});

  NamedTensors extra = good;
  extra.emplace_back("fc.weight.momentum", Tensor::zeros({3, 4}));
  expectError([&] { opt->loadStateDict(extra); }, {"unexpected key 'fc.weight.momentum'"});

  NamedTensors shape = good;
  shape[5].second = Tensor::zeros({4, 3});
  expectError([&] { opt->loadStateDict(shape); },
              {"'fc.weight.exp_avg_sq' has shape [4, 3], expected [3, 4]"});

  NamedTensors bad_step = good;
  bad_step[0].second = Tensor::scalar(2.5, DType::f64);
  expectError([&] { opt->loadStateDict(bad_step); }, {"'step'", "2.5"});

  // SGD state into AdamW: every AdamW key missing, every SGD key unexpected.
  TinyNet other;
  SgdOptions so;
  so.momentum = 0.9;
  auto sgd = makeSgd(other, so);
  expectError([&] { opt->loadStateDict(sgd->stateDict()); },
              {"adamw.loadStateDict", "unexpected key 'emb.weight.momentum_buffer'",
               "missing key 'emb.weight.exp_avg'"});

  // A failed load changes nothing; a good one takes the values, dtype converted.
  NamedTensors changed = good;
  changed[0].second = Tensor::scalar(7, DType::f64);
  changed[1].second = Tensor::scalar(0.5, DType::f64);
  changed[2].second = Tensor::full({6, 4}, 0.25, DType::f64);
  NamedTensors broken = changed;
  broken.emplace_back("nope", Tensor::zeros({1}));
  EXPECT_THROW(opt->checkStateDict(broken), Error);
  EXPECT_THROW(opt->loadStateDict(broken), Error);
  opt->checkStateDict(changed);  // validation only
  EXPECT_EQ(opt->stepCount(), 0);
  EXPECT_EQ(opt->lr(), 1e-3);
  EXPECT_EQ(opt->stateDict()[2].second.toDoubles()[0], 0.0);
  opt->loadStateDict(changed);
  EXPECT_EQ(opt->stepCount(), 7);
  EXPECT_EQ(opt->lr(), 0.5);
  EXPECT_EQ(opt->stateDict()[2].second.toDoubles()[5], 0.25);
}

// Linear(2, 2) in f64 with hand-set gradients: weight [[3, 0], [0, 4]], bias [12, 0] -> 13.
void setGrads(Module& m, const std::vector<double>& w, const std::vector<double>& b) {
  NoGradGuard ng;
  Tensor(m.parameter("weight").grad()).copy_(Tensor::fromVector(w, {2, 2}, DType::f64));
  Tensor(m.parameter("bias").grad()).copy_(Tensor::fromVector(b, {2}, DType::f64));
}

TEST(OptimClip, GradNormAndClippingMatchHandComputationAndTorchSemantics) {
  Linear lin(2, 2, true, ModuleOptions{DType::f64});
  auto opt = makeSgd(lin, {});
  ParameterBuffer& buf = opt->buffer();
  setGrads(lin, {3, 0, 0, 4}, {12, 0});
  EXPECT_DOUBLE_EQ(gradNorm(buf), 13.0);

  // Below the threshold (torch: coefficient clamped to 1): returned, gradients untouched.
  EXPECT_DOUBLE_EQ(clipGradNorm(buf, 20.0), 13.0);
  EXPECT_EQ(lin.parameter("bias").grad().toDoubles(), (std::vector<double>{12, 0}));

  // Above: scaled by max_norm / (norm + 1e-6), norm before clipping returned.
  EXPECT_DOUBLE_EQ(clipGradNorm(buf, 6.5), 13.0);
  const double coef = 6.5 / (13.0 + 1e-6);
  EXPECT_DOUBLE_EQ(lin.parameter("weight").grad().toDoubles()[3], 4.0 * coef);
  EXPECT_DOUBLE_EQ(lin.parameter("bias").grad().toDoubles()[0], 12.0 * coef);
  EXPECT_NEAR(gradNorm(buf), 6.5, 1e-6);

  // Non-finite norms are returned as is and nothing is scaled.
  setGrads(lin, {3, 0, 0, std::numeric_limits<double>::infinity()}, {12, 0});
  EXPECT_EQ(clipGradNorm(buf, 1.0), std::numeric_limits<double>::infinity());
  EXPECT_EQ(lin.parameter("weight").grad().toDoubles()[0], 3.0);
  setGrads(lin, {3, 0, 0, std::nan("")}, {12, 0});
  EXPECT_TRUE(std::isnan(clipGradNorm(buf, 1.0)));
  EXPECT_EQ(lin.parameter("bias").grad().toDoubles()[0], 12.0);

  expectError([&] { clipGradNorm(buf, 0.0); }, {"max_norm", "0"});
  expectError([&] { clipGradNorm(buf, -1.0); }, {"max_norm", "-1"});
}

TEST(OptimClip, NormSpansGroupsAndSkipsFrozenParameters) {
  manualSeed(3);
  TinyNet model;
  model.find("ln")->setRequiresGrad(false);
  auto opt = makeAdamW(model, {});
  const Tensor ids = Tensor::fromVector(std::vector<int64_t>{0, 1, 2}, {1, 3});
  mseLoss(model(ids), randn({1, 3, 2})).backward();
  double sq = 0;
  for (const auto& p : model.parameters())
    if (p.requiresGrad())
      for (double v : p.grad().toDoubles()) sq += v * v;
  EXPECT_NEAR(gradNorm(opt->buffer()), std::sqrt(sq), 1e-6 * std::sqrt(sq));
  EXPECT_GT(sq, 0.0);
}

TEST(OptimStep, UpdatesInPlaceAndRefusesDetachedGradientsOrChangedModels) {
  manualSeed(4);
  TinyNet model;
  auto opt = makeSgd(model, {});
  const Tensor w = model.parameter("fc.weight");
  const Tensor ids = Tensor::fromVector(std::vector<int64_t>{0, 1, 2}, {1, 3});
  const Tensor target = randn({1, 3, 2});
  mseLoss(model(ids), target).backward();
  const auto before = w.toDoubles(), grad = w.grad().toDoubles();
  opt->step();
  EXPECT_EQ(opt->stepCount(), 1);
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_NEAR(w.toDoubles()[i], before[i] - 0.01 * grad[i], 1e-7);

  // Module::zeroGrad(true) drops the views: backward would accumulate outside the buffer.
  model.zeroGrad(/*set_to_none=*/true);
  mseLoss(model(ids), target).backward();
  expectError([&] { opt->step(); }, {"emb.weight", "buffer().zeroGrad()"});
  opt->buffer().zeroGrad();
  mseLoss(model(ids), target).backward();
  opt->step();
  EXPECT_EQ(opt->stepCount(), 2);

  model.replaceChild("head", std::make_shared<Linear>(3, 2, false));
  expectError([&] { opt->step(); }, {"sgd.step", "changed"});
}

TEST(OptimErrors, BadOptionsNameTheOptionAndValue) {
  TinyNet model;
  expectError([&] { makeSgd(model, SgdOptions{-0.5}); }, {"makeSgd", "lr", "-0.5"});
  SgdOptions s;
  s.nesterov = true;
  expectError([&] { makeSgd(model, s); }, {"nesterov", "momentum"});
  s.momentum = 0.9;
  s.dampening = 0.1;
  expectError([&] { makeSgd(model, s); }, {"nesterov", "dampening = 0.1"});
  s = SgdOptions{};
  s.momentum = -0.1;
  expectError([&] { makeSgd(model, s); }, {"momentum", "-0.1"});
  s = SgdOptions{};
  s.weight_decay = std::nan("");
  expectError([&] { makeSgd(model, s); }, {"weight_decay", "nan"});

  AdamWOptions a;
  a.beta1 = 1.0;
  expectError([&] { makeAdamW(model, a); }, {"makeAdamW", "beta1", "1", "[0, 1)"});
  a = AdamWOptions{};
  a.beta2 = -0.1;
  expectError([&] { makeAdamW(model, a); }, {"beta2", "-0.1"});
  a = AdamWOptions{};
  a.eps = -1e-8;
  expectError([&] { makeAdamW(model, a); }, {"eps"});
  a = AdamWOptions{};
  a.weight_decay = -0.01;
  expectError([&] { makeAdamW(model, a); }, {"weight_decay", "-0.01"});

  auto opt = makeAdamW(model, {});
  expectError([&] { opt->setLr(-1.0); }, {"adamw", "-1"});
  EXPECT_EQ(opt->lr(), 1e-3);

  TinyNet frozen;
  frozen.setRequiresGrad(false);
  expectError([&] { makeAdamW(frozen, {}); }, {"makeAdamW", "no trainable parameters"});
}

TEST(OptimSchedule, ConstantWithAndWithoutWarmup) {
  LrSchedule plain(0.1, {});
  EXPECT_EQ(plain.at(0), 0.1);
  EXPECT_EQ(plain.at(1000000), 0.1);
  LrScheduleOptions o;
  o.warmup_steps = 4;
  LrSchedule warm(0.1, o);
  EXPECT_DOUBLE_EQ(warm.at(0), 0.025);  // base * (step + 1) / warmup
  EXPECT_DOUBLE_EQ(warm.at(1), 0.05);
  EXPECT_DOUBLE_EQ(warm.at(3), 0.1);
  EXPECT_EQ(warm.at(4), 0.1);
  EXPECT_EQ(warm.at(99), 0.1);
}

TEST(OptimSchedule, CosineFromBaseToMinOverTheDecayWindow) {
  LrScheduleOptions o;
  o.kind = ScheduleKind::cosine;
  o.warmup_steps = 10;
  o.total_steps = 110;
  o.min_lr_ratio = 0.1;
  LrSchedule s(1.0, o);
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_DOUBLE_EQ(s.at(60), 0.55);  // halfway: (base + min) / 2
  EXPECT_NEAR(s.at(35), 0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25)), 1e-15);
  EXPECT_DOUBLE_EQ(s.at(110), 0.1);
  EXPECT_DOUBLE_EQ(s.at(5000), 0.1);
  for (int64_t i = 11; i <= 110; ++i) EXPECT_LT(s.at(i), s.at(i - 1)) << i;
  o.warmup_steps = 0;
  o.min_lr_ratio = 0.0;
  EXPECT_EQ(LrSchedule(2.0, o).at(0), 2.0);
  EXPECT_EQ(LrSchedule(2.0, o).at(110), 0.0);
}

TEST(OptimSchedule, LinearAndStepDecay) {
  LrScheduleOptions o;
  o.kind = ScheduleKind::linear;
  o.warmup_steps = 2;
  o.total_steps = 12;
  o.min_lr_ratio = 0.5;
  LrSchedule lin(0.2, o);
  EXPECT_DOUBLE_EQ(lin.at(0), 0.1);
  EXPECT_DOUBLE_EQ(lin.at(2), 0.2);
  EXPECT_DOUBLE_EQ(lin.at(7), 0.15);
  EXPECT_DOUBLE_EQ(lin.at(12), 0.1);
  EXPECT_DOUBLE_EQ(lin.at(20), 0.1);

  LrScheduleOptions st;
  st.kind = ScheduleKind::step;
  st.warmup_steps = 1;
  st.step_size = 3;
  st.gamma = 0.5;
  LrSchedule step(0.8, st);
  EXPECT_DOUBLE_EQ(step.at(0), 0.8);
  EXPECT_DOUBLE_EQ(step.at(1), 0.8);
  EXPECT_DOUBLE_EQ(step.at(3), 0.8);
  EXPECT_DOUBLE_EQ(step.at(4), 0.4);
  EXPECT_DOUBLE_EQ(step.at(7), 0.2);
  EXPECT_DOUBLE_EQ(step.at(10), 0.1);
}

TEST(OptimSchedule, ParsingAndErrors) {
  EXPECT_EQ(parseScheduleKind("cosine"), ScheduleKind::cosine);
  EXPECT_EQ(parseScheduleKind("step"), ScheduleKind::step);
  for (auto k :
       {ScheduleKind::constant, ScheduleKind::cosine, ScheduleKind::linear, ScheduleKind::step})
    EXPECT_EQ(parseScheduleKind(scheduleKindName(k)), k);
  expectError([] { parseScheduleKind("cosin"); },
              {"'cosin'", "constant", "cosine", "linear", "step"});

  LrScheduleOptions o;
  o.kind = ScheduleKind::cosine;
  o.warmup_steps = 5;
  o.total_steps = 5;
  expectError([&] { LrSchedule(0.1, o); }, {"total_steps = 5", "warmup_steps = 5"});
  o.total_steps = 10;
  o.min_lr_ratio = 1.5;
  expectError([&] { LrSchedule(0.1, o); }, {"min_lr_ratio", "1.5"});
  o.min_lr_ratio = 0;
  o.warmup_steps = -1;
  expectError([&] { LrSchedule(0.1, o); }, {"warmup_steps", "-1"});
  expectError([&] { LrSchedule(-0.1, {}); }, {"lr", "-0.1"});
  LrScheduleOptions st;
  st.kind = ScheduleKind::step;
  expectError([&] { LrSchedule(0.1, st); }, {"step_size", "0"});
  st.step_size = 2;
  st.gamma = 0;
  expectError([&] { LrSchedule(0.1, st); }, {"gamma", "0"});
  expectError([] { LrSchedule(0.1, {}).at(-1); }, {"step -1"});
}

}  // namespace
}  // namespace lathe::optim
