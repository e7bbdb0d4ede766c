// lathe::optim beyond SGD/AdamW: Lion, Adafactor and Sophia-G replayed against f64 reference
// implementations written in torch (scripts/make_golden_optim.py, tests/data/golden/optim_*.json);
// Sophia's curvature hook (the every-k schedule, Hutchinson's finite-difference estimate checked
// against u * (A u) on a quadratic, Sophia-G/H through the Trainer); 8-bit block-wise
// quantization (the maps, nearest-code round trips and their error bound), 8-bit AdamW's state
// bytes (<= 30% of f32 AdamW) and a training run that tracks f32 AdamW; checkpoint round trips
// that resume bit-exactly for every new optimizer; bad options naming the option; the methods.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/methods/Method.h"
#include "core/nn/Layers.h"
#include "core/nn/Presets.h"
#include "core/ops/Ops.h"
#include "core/optim/Optimizer.h"
#include "core/optim/Quantize8bit.h"
#include "core/tensor/Random.h"
#include "core/train/Trainer.h"
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
  const std::string kind = o.at("optimizer");
  if (kind == "lion") {
    LionOptions l;
    l.lr = o.at("lr");
    l.beta1 = o.at("beta1");
    l.beta2 = o.at("beta2");
    l.weight_decay = o.at("weight_decay");
    l.decay = decayRule(o);
    return makeLion(model, l);
  }
  if (kind == "adafactor") {
    AdafactorOptions a;
    a.lr = o.at("lr");
    a.relative_step = o.at("relative_step");
    a.scale_parameter = o.at("scale_parameter");
    a.warmup_init = o.at("warmup_init");
    a.beta1 = o.at("beta1");
    a.decay_rate = o.at("decay_rate");
    a.clip_threshold = o.at("clip_threshold");
    a.eps1 = o.at("eps1");
    a.eps2 = o.at("eps2");
    a.weight_decay = o.at("weight_decay");
    a.decay = decayRule(o);
    return makeAdafactor(model, a);
  }
  SophiaOptions s;
  s.lr = o.at("lr");
  s.beta1 = o.at("beta1");
  s.beta2 = o.at("beta2");
  s.gamma = o.at("gamma");
  s.eps = o.at("eps");
  s.weight_decay = o.at("weight_decay");
  s.hessian_every = o.at("hessian_every");
  s.decay = decayRule(o);
  return makeSophia(model, s);
}

// Runs the curvature estimate when the optimizer wants one: the golden files' stand-in for
// sampled labels is a second fixed target (Gauss-Newton-Bartlett's mean loss over its 12 terms).
void maybeEstimate(Module& model, Optimizer& opt, const Tensor& ids, const Tensor& target,
                   const Tensor& target2) {
  const CurvatureLoss kind = opt.curvatureWanted();
  if (kind == CurvatureLoss::none) return;
  opt.estimateCurvature([&]() -> int64_t {
    opt.buffer().zeroGrad();
    const Tensor& t = kind == CurvatureLoss::sampledLabels ? target2 : target;
    mseLoss(model(ids), t).backward();
    return t.numel();
  });
}

void replay(const std::string& name) {
  const json doc = loadJson("optim_" + name);
  TinyNet model(ModuleOptions{DType::f64});
  NamedTensors initial;
  for (auto& [k, v] : doc.at("initial").items()) initial.emplace_back(k, unpack(v));
  model.loadStateDict(initial);
  auto opt = makeFromJson(model, doc.at("options"));
  const Tensor ids = unpack(doc.at("inputs").at("ids")).to(DType::i64);
  const Tensor target = unpack(doc.at("inputs").at("target"));
  const Tensor target2 = unpack(doc.at("inputs").at("target2"));
  for (const json& st : doc.at("steps")) {
    const std::string at = name + " step " + std::to_string(opt->stepCount() + 1);
    maybeEstimate(model, *opt, ids, target, target2);
    opt->buffer().zeroGrad();
    Tensor loss = mseLoss(model(ids), target);
    loss.backward();
    EXPECT_NEAR(loss.item(), st.at("loss").get<double>(), 1e-12) << at;
    EXPECT_NEAR(gradNorm(opt->buffer()), st.at("norm").get<double>(), 1e-12) << at;
    opt->step();
    for (auto& [k, v] : st.at("params").items())
      test::expectClose(model.parameter(k), unpack(v), 1e-12, 1e-10, at + " " + k);
  }
  std::map<std::string, Tensor> state;
  for (auto& [k, v] : opt->stateDict()) state[k] = v;
  EXPECT_EQ(state.size(), doc.at("state").size() + 2) << name;
  for (auto& [k, v] : doc.at("state").items()) {
    ASSERT_TRUE(state.count(k)) << name << ": no state " << k;
    test::expectClose(state.at(k), unpack(v), 1e-12, 1e-10, name + " state " + k);
  }
}

TEST(OptimExtraGolden, LionDecayOnMatrices) {
  replay("lion");
}
TEST(OptimExtraGolden, LionDecayAll) {
  replay("lion_all");
}
TEST(OptimExtraGolden, AdafactorFactoredExplicitLr) {
  replay("adafactor");
}
TEST(OptimExtraGolden, AdafactorRelativeStepScaledWithFirstMomentAndClipping) {
  replay("adafactor_relative");
}
TEST(OptimExtraGolden, SophiaGaussNewtonBartlettEveryTwoStepsWithClipping) {
  replay("sophia_g");
}

// ---- Sophia's curvature hook ----

TEST(OptimSophia, AsksForAnEstimateOnSteps1AndEveryKAfter) {
  for (HessianEstimator est :
       {HessianEstimator::gaussNewtonBartlett, HessianEstimator::hutchinson}) {
    TinyNet model;
    SophiaOptions o;
    o.hessian_every = 3;
    o.estimator = est;
    auto opt = makeSophia(model, o);
    EXPECT_EQ(opt->name(), "sophia");
    const CurvatureLoss want = est == HessianEstimator::hutchinson ? CurvatureLoss::taskLoss
                                                                   : CurvatureLoss::sampledLabels;
    manualSeed(5);
    const Tensor ids = Tensor::fromVector(std::vector<int64_t>{0, 3, 1, 4, 2, 5}, {2, 3});
    const Tensor target = randn({2, 3, 2});
    std::vector<int> wanted;
    for (int step = 1; step <= 7; ++step) {
      const CurvatureLoss c = opt->curvatureWanted();
      EXPECT_TRUE(c == want || c == CurvatureLoss::none);
      wanted.push_back(c == want ? step : 0);
      opt->buffer().zeroGrad();
      mseLoss(model(ids), target).backward();
      opt->step();
    }
    EXPECT_EQ(wanted, (std::vector<int>{1, 0, 0, 4, 0, 0, 7}));
  }
  TinyNet other;  // other optimizers never ask
  EXPECT_EQ(makeAdamW(other, {})->curvatureWanted(), CurvatureLoss::none);
}

// A module holding one vector parameter (the variable of a quadratic).
class Vec : public Module {
 public:
  explicit Vec(int64_t n) : Module("Vec") {
    registerParameter("theta", Tensor::zeros({n}, DType::f64));
  }
  Tensor forward(const Tensor& x) override { return x; }
  Tensor theta() { return parameter("theta"); }
};

TEST(OptimSophia, HutchinsonFiniteDifferenceEqualsUTimesAU) {
  // L = 1/2 t^T A t with a dense symmetric A: grad = A t, H u = A u, exact in finite differences
  // up to rounding; the estimate u * (A u) (not just diag(A)) checks the probe vector is used.
  constexpr int64_t n = 7;
  manualSeed(11);
  Vec model(n);
  {
    NoGradGuard ng;
    Tensor(model.theta()).copy_(randn({n}, DType::f64));
  }
  const Tensor r = randn({n, n}, DType::f64);
  const Tensor A = add(r, r.transpose(0, 1));
  SophiaOptions o;
  o.estimator = HessianEstimator::hutchinson;
  o.beta2 = 0.75;
  o.fd_eps = 1e-3;
  auto opt = makeSophia(model, o);
  const std::vector<double> before = model.theta().toDoubles();
  int passes = 0;
  ASSERT_EQ(opt->curvatureWanted(), CurvatureLoss::taskLoss);
  const RandomState rs = rngState();
  opt->estimateCurvature([&]() -> int64_t {
    ++passes;
    opt->buffer().zeroGrad();
    const Tensor t = model.theta();
    mul(sum(mul(t, matmul(A, t.unsqueeze(1)).squeeze(1))), 0.5).backward();
    return 1;
  });
  EXPECT_EQ(passes, 2);
  EXPECT_EQ(model.theta().toDoubles(), before) << "parameters not restored bit-exactly";
  // The probe: one draw per trainable group, in group order, from the same random state.
  setRngState(rs);
  const auto& group = opt->buffer().groups().at(0);
  const Tensor u = rademacher(group.params.numel(), DType::f64, Device::cpu());
  const Tensor uv = u.slice(0, 0, n);
  const Tensor expected = mul(mul(uv, matmul(A, uv.unsqueeze(1)).squeeze(1)), 1.0 - o.beta2);
  Tensor h;
  for (auto& [k, t] : opt->stateDict())
    if (k == "theta.hessian") h = t;
  ASSERT_TRUE(h.defined());
  test::expectClose(h, expected, 1e-9, 1e-9, "hessian after one Hutchinson estimate");
  std::vector<double> uu = u.toDoubles();
  EXPECT_TRUE(std::all_of(uu.begin(), uu.end(), [](double x) { return x == 1.0 || x == -1.0; }));
}

TEST(OptimSophia, RademacherIsBalancedPlusMinusOne) {
  manualSeed(3);
  const std::vector<double> u = rademacher(20000, DType::f32, Device::cpu()).toDoubles();
  double s = 0;
  for (double x : u) {
    ASSERT_TRUE(x == 1.0 || x == -1.0);
    s += x;
  }
  EXPECT_LT(std::abs(s) / 20000.0, 0.03);
}

// ---- Trainer runs ----

// Gaussian blobs in `dim` dimensions, `classes` labels: learnable in a few dozen steps.
data::LoadedData blobs(int64_t n, int64_t dim, int64_t classes, uint64_t seed) {
  manualSeed(seed);
  NoGradGuard g;
  Tensor x = randn({n, dim});
  std::vector<int64_t> labels(static_cast<size_t>(n));
  Tensor shift = Tensor::zeros({n, dim});
  for (int64_t i = 0; i < n; ++i) {
    labels[static_cast<size_t>(i)] = i % classes;
    shift.slice(0, i, i + 1).slice(1, i % classes, i % classes + 1).fill_(2.0);
  }
  data::LoadedData d;
  auto all = std::make_shared<data::ArrayDataset>(add(x, shift), Tensor::fromVector(labels, {n}));
  auto split = data::trainValSplit(all, 0.25, seed);
  d.train = split.train;
  d.val = split.val;
  d.task = data::TaskKind::classification;
  d.input_shape = {dim};
  d.classes = classes;
  return d;
}

struct TrainRun {
  std::shared_ptr<Model> model;
  std::unique_ptr<train::Trainer> trainer;
  std::vector<double> losses;
};

TrainRun makeRun(const json& spec, const std::function<std::unique_ptr<Optimizer>(Model&)>& make,
                 data::LoadedData data, int64_t steps, uint64_t seed = 3) {
  TrainRun r;
  manualSeed(17);
  r.model = buildModel(spec);
  auto opt = make(*r.model);
  const double lr = opt->lr();
  train::TrainOptions t;
  t.batch_size = 16;
  t.max_steps = steps;
  t.seed = seed;
  t.prefetch = 0;
  r.trainer = std::make_unique<train::Trainer>(r.model, std::move(opt),
                                               LrSchedule(lr, LrScheduleOptions{}), data, t);
  return r;
}

void runSteps(TrainRun& r, int64_t n) {
  for (int64_t i = 0; i < n && !r.trainer->finished(); ++i)
    r.losses.push_back(r.trainer->step().loss);
}

const json kSmallMlp = {{"type", "mlp"}, {"input_dim", 8}, {"hidden", {16}}, {"classes", 3}};

double meanOf(const std::vector<double>& v, size_t b, size_t e) {
  double s = 0;
  for (size_t i = b; i < e; ++i) s += v[i];
  return s / static_cast<double>(e - b);
}

void expectSophiaLearnsThroughTheTrainer(HessianEstimator est) {
  SophiaOptions o;
  o.lr = 0.02;
  o.estimator = est;
  o.hessian_every = 2;
  TrainRun r = makeRun(
      kSmallMlp, [&](Model& m) { return makeSophia(m, o); }, blobs(256, 8, 3, 7), 40);
  runSteps(r, 40);
  EXPECT_LT(meanOf(r.losses, 30, 40), 0.6 * meanOf(r.losses, 0, 5));
  bool nonzero = false;
  for (auto& [k, t] : r.trainer->optimizer().stateDict())
    if (k.size() > 8 && k.compare(k.size() - 8, 8, ".hessian") == 0)
      for (double v : t.toDoubles()) nonzero = nonzero || v != 0.0;
  EXPECT_TRUE(nonzero) << "the trainer never ran the curvature pass";
}

TEST(OptimSophia, SophiaGLearnsThroughTheTrainerHook) {
  expectSophiaLearnsThroughTheTrainer(HessianEstimator::gaussNewtonBartlett);
}
TEST(OptimSophia, SophiaHLearnsThroughTheTrainerHook) {
  expectSophiaLearnsThroughTheTrainer(HessianEstimator::hutchinson);
}

std::string tempPath(const std::string& name) {
  return (std::filesystem::path(testing::TempDir()) / ("lathe_optim_extra_" + name)).string();
}

// Trainer checkpoints mid-run (between curvature estimates) and resumes bit-exactly.
TEST(OptimSophia, TrainerCheckpointResumesBitExactly) {
  for (HessianEstimator est :
       {HessianEstimator::gaussNewtonBartlett, HessianEstimator::hutchinson}) {
    SophiaOptions o;
    o.lr = 0.01;
    o.estimator = est;
    o.hessian_every = 3;
    auto make = [&](Model& m) { return makeSophia(m, o); };
    const std::string path = tempPath("sophia.safetensors");
    TrainRun a = makeRun(kSmallMlp, make, blobs(128, 8, 3, 9), 10);
    runSteps(a, 5);
    a.trainer->saveCheckpoint(path);
    runSteps(a, 5);
    TrainRun b = makeRun(kSmallMlp, make, blobs(128, 8, 3, 9), 10);
    b.trainer->loadCheckpoint(path);
    runSteps(b, 5);
    const auto sa = a.model->stateDict(), sb = b.model->stateDict();
    for (size_t i = 0; i < sa.size(); ++i)
      EXPECT_EQ(sa[i].second.toDoubles(), sb[i].second.toDoubles()) << sa[i].first;
    std::filesystem::remove(path);
  }
}

// ---- 8-bit quantization ----

TEST(OptimQuant, DynamicMapsMatchBitsandbytesShape) {
  const auto s = dynamicQuantizationMap(true), u = dynamicQuantizationMap(false);
  ASSERT_EQ(s.size(), 256u);
  ASSERT_EQ(u.size(), 256u);
  EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
  EXPECT_TRUE(std::adjacent_find(s.begin(), s.end()) == s.end()) << "duplicate values";
  EXPECT_TRUE(std::adjacent_find(u.begin(), u.end()) == u.end()) << "duplicate values";
  EXPECT_EQ(s.back(), 1.0);
  EXPECT_EQ(std::count(s.begin(), s.end(), 0.0), 1);
  EXPECT_EQ(std::count_if(s.begin(), s.end(), [](double v) { return v < 0; }), 127);
  EXPECT_NEAR(s.front(), -0.9929688, 1e-6);  // -(0.1 + 0.9 * 63.5 / 64)
  EXPECT_NEAR(s[128], 0.55e-6, 1e-12);       // smallest positive: 1e-6 * mean(0.1, 1)
  EXPECT_EQ(u.front(), 0.0);
  EXPECT_EQ(u.back(), 1.0);
  EXPECT_NEAR(u[1], 0.325e-6, 1e-12);  // 1e-6 * (0.1 + 0.55) / 2
}

// Brute-force nearest index (ties to the lower) of y in the sorted map.
int nearest(const std::vector<double>& map, double y) {
  int best = 0;
  for (int i = 1; i < 256; ++i)
    if (std::abs(map[static_cast<size_t>(i)] - y) < std::abs(map[static_cast<size_t>(best)] - y))
      best = i;
  return best;
}

void expectRoundTrip(bool is_signed, int64_t block, int64_t n, DType dt) {
  const auto mapv = dynamicQuantizationMap(is_signed);
  const Tensor map = Tensor::fromVector(mapv, {256}, dt);
  manualSeed(static_cast<uint64_t>(block + n));
  // Heavy-tailed values with a wide dynamic range; one all-zero block.
  Tensor x = mul(randn({n}, dt), exp(mul(randn({n}, dt), 2.0)));
  if (!is_signed) x = abs(x);
  x.slice(0, 0, std::min(n, block)).zero_();
  const int64_t blocks = (n + block - 1) / block;
  Tensor codes = Tensor::zeros({n}, DType::u8), absmax = Tensor::zeros({blocks}, dt);
  quantizeBlockwise(x, map, block, codes, absmax);
  const Tensor back = dequantizeBlockwise(codes, absmax, map, block);
  const auto xs = x.toDoubles(), bs = back.toDoubles(), am = absmax.toDoubles();
  const auto cs = codes.toDoubles();
  double max_gap = 0;
  for (size_t i = 1; i < 256; ++i) max_gap = std::max(max_gap, mapv[i] - mapv[i - 1]);
  int mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i / block);
    double amax = 0;
    for (int64_t j = static_cast<int64_t>(k) * block; j < std::min(n, (i / block + 1) * block); ++j)
      amax = std::max(amax, std::abs(xs[static_cast<size_t>(j)]));
    ASSERT_EQ(am[k], amax) << "absmax of block " << k;
    const double y = amax > 0 ? xs[static_cast<size_t>(i)] / amax : 0.0;
    if (static_cast<int>(cs[static_cast<size_t>(i)]) != nearest(mapv, y)) ++mismatches;
    // Round to nearest: at most half the widest gap of the map, times the block's scale.
    ASSERT_LE(std::abs(bs[static_cast<size_t>(i)] - xs[static_cast<size_t>(i)]),
              0.5 * max_gap * amax + amax * (dt == DType::f32 ? 1e-6 : 1e-12))
        << i;
  }
  // f32 division can move a value sitting on a midpoint across it: allow a handful.
  EXPECT_LE(mismatches, dt == DType::f64 ? 0 : 3) << "codes differ from the nearest map value";
  EXPECT_EQ(am[0], 0.0);
  for (int64_t i = 0; i < std::min(n, block); ++i) ASSERT_EQ(bs[static_cast<size_t>(i)], 0.0);
}

TEST(OptimQuant, BlockwiseRoundTripIsNearestCodeWithinHalfAGap) {
  expectRoundTrip(true, 2048, 5000, DType::f32);  // short last block
  expectRoundTrip(false, 2048, 4096, DType::f32);
  expectRoundTrip(true, 256, 1000, DType::f64);
  expectRoundTrip(false, 256, 777, DType::f64);
}

TEST(OptimQuant, RelativeErrorOfTypicalStatesIsSmall) {
  // Moments of one block share a scale within a few decades: the dynamic map keeps ~1-5%
  // relative error there (3-4 significant bits), the figure 8-bit Adam relies on.
  const auto mapv = dynamicQuantizationMap(true);
  const Tensor map = Tensor::fromVector(mapv, {256}, DType::f32);
  manualSeed(21);
  const Tensor x = mul(randn({2048}), 1e-3);
  Tensor codes = Tensor::zeros({2048}, DType::u8), absmax = Tensor::zeros({1});
  quantizeBlockwise(x, map, 2048, codes, absmax);
  const Tensor back = dequantizeBlockwise(codes, absmax, map, 2048);
  const double rel = std::sqrt(sum(square(sub(back, x))).item() / sum(square(x)).item());
  EXPECT_LT(rel, 0.05);
}

TEST(OptimQuant, BadArgumentsThrow) {
  const Tensor map = Tensor::fromVector(dynamicQuantizationMap(true), {256}, DType::f32);
  Tensor codes = Tensor::zeros({10}, DType::u8), absmax = Tensor::zeros({1});
  EXPECT_THROW(quantizeBlockwise(randn({10}), map.slice(0, 0, 100), 256, codes, absmax), Error);
  EXPECT_THROW(quantizeBlockwise(randn({10}), map, 256, Tensor::zeros({10}), absmax), Error);
  EXPECT_THROW(dequantizeBlockwise(codes, Tensor::zeros({2}), map, 256), Error);
}

// ---- state bytes ----

const json kMlpExample = {
    {"type", "mlp"}, {"input_dim", 784}, {"hidden", {256, 128}}, {"classes", 10}};

TEST(OptimState8bit, StateBytesAreAtMost30PercentOfAdamWAndPrintPerOptimizer) {
  auto model = buildModel(kMlpExample);
  const int64_t adamw = makeAdamW(*model, {})->stateBytes();
  const int64_t before =
      cpuAllocator().stats().tag_current[static_cast<int>(MemoryTag::optimizer_state)];
  for (int64_t block : {2048, 256}) {
    AdamW8bitOptions o;
    o.block_size = block;
    auto opt = makeAdamW8bit(*model, o);
    const int64_t bytes = opt->stateBytes();
    EXPECT_EQ(
        cpuAllocator().stats().tag_current[static_cast<int>(MemoryTag::optimizer_state)] - before,
        bytes)
        << "stateBytes must be what the allocator counts";
    EXPECT_LE(static_cast<double>(bytes), 0.30 * static_cast<double>(adamw)) << "block " << block;
    std::cout << "[ state    ] mlp 784-256-128-10 (" << model->numParameters()
              << " parameters): adamw8bit block " << block << ": " << bytes << " bytes ("
              << 100.0 * static_cast<double>(bytes) / static_cast<double>(adamw) << "% of adamw)\n";
  }
  // Min size 0: every parameter quantized, the ratio approaches 2 / 8 + 8 / (8 block).
  AdamW8bitOptions all;
  all.min_8bit_size = 0;
  EXPECT_LE(static_cast<double>(makeAdamW8bit(*model, all)->stateBytes()),
            0.30 * static_cast<double>(adamw));
  SgdOptions sgdm;
  sgdm.momentum = 0.9;
  const std::vector<std::pair<std::string, int64_t>> rows = {
      {"sgd (momentum)", makeSgd(*model, sgdm)->stateBytes()},
      {"adamw", adamw},
      {"lion", makeLion(*model, {})->stateBytes()},
      {"sophia", makeSophia(*model, {})->stateBytes()},
      {"adafactor", makeAdafactor(*model, {})->stateBytes()},
      {"adamw8bit", makeAdamW8bit(*model, {})->stateBytes()}};
  for (const auto& [name, bytes] : rows)
    std::cout << "[ state    ] mlp 784-256-128-10: " << name << ": " << bytes << " bytes\n";
  EXPECT_EQ(rows[2].second * 2, adamw);  // Lion: one state
  EXPECT_EQ(rows[3].second, adamw);      // Sophia: two
}

TEST(OptimStateAdafactor, FactoredStatesAreRowAndColumnVectors) {
  auto seq = std::make_shared<Module>("Seq");
  seq->registerModule("fc", std::make_shared<Linear>(16, 32, true));
  seq->registerModule("ln", std::make_shared<LayerNorm>(32, 1e-5, true));
  auto opt = makeAdafactor(*seq, {});
  std::map<std::string, Shape> shapes;
  for (auto& [k, t] : opt->stateDict()) shapes[k] = t.shape();
  EXPECT_EQ(shapes.at("fc.weight.exp_avg_sq_row"), (Shape{32}));
  EXPECT_EQ(shapes.at("fc.weight.exp_avg_sq_col"), (Shape{16}));
  EXPECT_EQ(shapes.at("fc.bias.exp_avg_sq"), (Shape{32}));
  EXPECT_EQ(shapes.at("ln.weight.exp_avg_sq"), (Shape{32}));
  EXPECT_EQ(shapes.size(), 2u + 5u);
  EXPECT_EQ(opt->stateBytes(), 4 * (32 + 16 + 32 + 32 + 32));
  AdafactorOptions m;
  m.beta1 = 0.9;
  EXPECT_EQ(makeAdafactor(*seq, m)->stateBytes(), 4 * (32 + 16 + 32 + 32 + 32) + 4 * (512 + 96));
}

// ---- 8-bit AdamW tracks f32 AdamW ----

TEST(OptimState8bit, TrainingLossTracksF32AdamW) {
  const json spec = {{"type", "mlp"}, {"input_dim", 64}, {"hidden", {128, 64}}, {"classes", 4}};
  const data::LoadedData data = blobs(512, 64, 4, 13);
  AdamWOptions f;
  f.lr = 3e-3;
  TrainRun a = makeRun(
      spec, [&](Model& m) { return makeAdamW(m, f); }, data, 60);
  AdamW8bitOptions q;
  q.lr = 3e-3;
  q.block_size = 256;
  TrainRun b = makeRun(
      spec, [&](Model& m) { return makeAdamW8bit(m, q); }, data, 60);
  runSteps(a, 60);
  runSteps(b, 60);
  double worst = 0;
  for (size_t i = 0; i < a.losses.size(); ++i)
    worst = std::max(worst, std::abs(a.losses[i] - b.losses[i]));
  std::cout << "[ 8-bit    ] loss f32 " << a.losses.front() << " -> " << a.losses.back()
            << ", 8-bit " << b.losses.front() << " -> " << b.losses.back()
            << ", largest step difference " << worst << "\n";
  EXPECT_LT(meanOf(a.losses, 50, 60), 0.5 * meanOf(a.losses, 0, 5));  // it learned
  EXPECT_NEAR(meanOf(b.losses, 50, 60), meanOf(a.losses, 50, 60),
              0.05 + 0.1 * meanOf(a.losses, 50, 60));
  EXPECT_LT(worst, 0.1);
  const double acc_a = a.trainer->evaluate().accuracy, acc_b = b.trainer->evaluate().accuracy;
  EXPECT_NEAR(acc_a, acc_b, 0.03);
}

// ---- checkpoints ----

NamedTensors cloneAll(const NamedTensors& in) {
  NamedTensors out;
  for (const auto& [k, t] : in) out.emplace_back(k, t.clone());
  return out;
}

void train(Module& model, Optimizer& opt, int steps) {
  const Tensor ids = Tensor::fromVector(std::vector<int64_t>{0, 3, 1, 4, 2, 5}, {2, 3});
  const Tensor target = Tensor::fromVector(
      std::vector<double>{0.5, -1, 0.25, 2, -0.5, 1, 1.5, -2, 0, 0.75, -1.25, 0.1}, {2, 3, 2});
  const Tensor target2 = mul(target, -0.5);
  for (int i = 0; i < steps; ++i) {
    maybeEstimate(model, opt, ids, target, target2);
    opt.buffer().zeroGrad();
    mseLoss(model(ids), target).backward();
    opt.setLr(opt.lr() * 0.9);
    opt.step();
  }
}

// 3 + 4 steps against 3 steps, a checkpoint (copies of model and optimizer state and the random
// state), and 4 steps on a fresh model: bit-identical parameters and state.
void expectResumeBitExact(const std::string& what,
                          const std::function<std::unique_ptr<Optimizer>(Module&)>& make) {
  manualSeed(1);
  TinyNet a;
  auto opt_a = make(a);
  train(a, *opt_a, 3);
  const NamedTensors model_ckpt = cloneAll(a.stateDict());
  const NamedTensors optim_ckpt = cloneAll(opt_a->stateDict());
  const RandomState rs = rngState();
  train(a, *opt_a, 4);

  manualSeed(2);
  TinyNet b;
  b.loadStateDict(model_ckpt);
  auto opt_b = make(b);
  opt_b->loadStateDict(optim_ckpt);
  EXPECT_EQ(opt_b->stepCount(), 3) << what;
  setRngState(rs);
  train(b, *opt_b, 4);
  const auto pa = a.namedParameters(), pb = b.namedParameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second.toDoubles(), pb[i].second.toDoubles()) << what << " " << pa[i].first;
  const auto sa = opt_a->stateDict(), sb = opt_b->stateDict();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].second.dtype(), sb[i].second.dtype()) << what << " " << sa[i].first;
    EXPECT_EQ(sa[i].second.toDoubles(), sb[i].second.toDoubles()) << what << " " << sa[i].first;
  }
  // The state matters: without it the continuation differs.
  TinyNet c;
  c.loadStateDict(model_ckpt);
  auto opt_c = make(c);
  opt_c->setLr(opt_b->lr());
  setRngState(rs);
  train(c, *opt_c, 4);
  EXPECT_NE(c.parameter("fc.weight").toDoubles(), a.parameter("fc.weight").toDoubles()) << what;
}

TEST(OptimExtraState, CheckpointsResumeBitExactly) {
  expectResumeBitExact("lion", [](Module& m) {
    LionOptions o;
    o.lr = 0.01;
    o.weight_decay = 0.1;
    return makeLion(m, o);
  });
  expectResumeBitExact("adafactor", [](Module& m) {
    AdafactorOptions o;
    o.lr = 0.01;
    o.beta1 = 0.9;
    o.weight_decay = 0.1;
    return makeAdafactor(m, o);
  });
  for (HessianEstimator est : {HessianEstimator::gaussNewtonBartlett, HessianEstimator::hutchinson})
    expectResumeBitExact("sophia", [est](Module& m) {
      SophiaOptions o;
      o.lr = 0.01;
      o.estimator = est;
      o.hessian_every = 2;
      return makeSophia(m, o);
    });
  expectResumeBitExact("adamw8bit", [](Module& m) {
    AdamW8bitOptions o;
    o.lr = 0.01;
    o.block_size = 256;
    o.min_8bit_size = 10;  // fc.weight and emb.weight quantized, the rest f32
    return makeAdamW8bit(m, o);
  });
}

TEST(OptimExtraState, AdamW8bitStateNamesDtypesAndStrictLoading) {
  TinyNet model;
  AdamW8bitOptions o;
  o.min_8bit_size = 12;
  o.block_size = 256;
  auto opt = makeAdamW8bit(model, o);
  std::map<std::string, Tensor> st;
  for (auto& [k, t] : opt->stateDict()) st[k] = t;
  EXPECT_EQ(st.at("fc.weight.exp_avg").dtype(), DType::u8);
  EXPECT_EQ(st.at("fc.weight.exp_avg").shape(), (Shape{3, 4}));
  EXPECT_EQ(st.at("fc.weight.exp_avg_absmax").shape(), (Shape{1}));
  EXPECT_EQ(st.at("emb.weight.exp_avg_sq").dtype(), DType::u8);
  EXPECT_EQ(st.at("fc.bias.exp_avg").dtype(), DType::f32);
  EXPECT_EQ(st.count("fc.bias.exp_avg_absmax"), 0u);
  NamedTensors bad = cloneAll(opt->stateDict());
  for (auto& [k, t] : bad)
    if (k == "fc.weight.exp_avg") t = Tensor::zeros({3, 4});
  try {
    opt->loadStateDict(bad);
    ADD_FAILURE() << "f32 values loaded into u8 codes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'fc.weight.exp_avg' has dtype f32, expected u8"),
              std::string::npos)
        << e.what();
  }
}

// ---- errors ----

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

TEST(OptimExtraErrors, BadOptionsNameTheOptionAndValue) {
  TinyNet model;
  LionOptions l;
  l.beta2 = 1.5;
  expectError([&] { makeLion(model, l); }, {"makeLion", "beta2", "1.5"});
  l = LionOptions{};
  l.lr = -1;
  expectError([&] { makeLion(model, l); }, {"makeLion", "lr", "-1"});

  SophiaOptions s;
  s.gamma = 0;
  expectError([&] { makeSophia(model, s); }, {"makeSophia", "gamma", "0"});
  s = SophiaOptions{};
  s.hessian_every = 0;
  expectError([&] { makeSophia(model, s); }, {"hessian_every", "0"});
  s = SophiaOptions{};
  s.fd_eps = -1e-3;
  expectError([&] { makeSophia(model, s); }, {"fd_eps", "-0.001"});
  s = SophiaOptions{};
  s.beta1 = 1.0;
  expectError([&] { makeSophia(model, s); }, {"beta1", "[0, 1)"});

  AdafactorOptions a;
  a.decay_rate = 0.5;
  expectError([&] { makeAdafactor(model, a); }, {"makeAdafactor", "decay_rate", "0.5"});
  a = AdafactorOptions{};
  a.clip_threshold = 0;
  expectError([&] { makeAdafactor(model, a); }, {"clip_threshold"});
  a = AdafactorOptions{};
  a.warmup_init = true;
  expectError([&] { makeAdafactor(model, a); }, {"warmup_init", "relative_step"});

  AdamW8bitOptions q;
  q.block_size = 512;
  expectError([&] { makeAdamW8bit(model, q); }, {"makeAdamW8bit", "block_size", "512"});
  q = AdamW8bitOptions{};
  q.min_8bit_size = -1;
  expectError([&] { makeAdamW8bit(model, q); }, {"min_8bit_size", "-1"});
  q = AdamW8bitOptions{};
  q.eps = -1;
  expectError([&] { makeAdamW8bit(model, q); }, {"eps", "-1"});
}

// ---- methods ----

TEST(OptimExtraMethods, RegisteredWithSchemasConflictsAndBuildOptimizers) {
  auto& reg = methods::MethodRegistry::instance();
  auto model = buildModel(kSmallMlp);
  for (const std::string name : {"lion", "sophia", "adafactor", "adamw8bit"}) {
    ASSERT_TRUE(reg.contains(name)) << name;
    EXPECT_EQ(reg.info(name).category, "optimizer");
    const json params = reg.validate({{"name", name}}, "methods[0]");
    auto m = reg.create(name);
    m->configure(params);
    ASSERT_TRUE(m->makesOptimizer());
    auto opt = m->makeOptimizer(*model);
    EXPECT_EQ(opt->name(), name);
    EXPECT_EQ(opt->lr(), m->learningRate());
    for (const std::string other : {"sgd", "adamw", "lion", "sophia", "adafactor", "adamw8bit"}) {
      if (other == name) continue;
      expectError(
          [&] {
            reg.checkConflicts({name, other}, "methods");
          },
          {"cannot be combined", "one optimizer"});
    }
  }
  expectError(
      [&] {
        reg.validate({{"name", "adamw8bit"}, {"block_size", 512}}, "methods[0]");
      },
      {"methods[0].block_size", "\"2048\", \"256\""});
  expectError(
      [&] {
        reg.validate({{"name", "sophia"}, {"estimator", "exact"}}, "methods[1]");
      },
      {"methods[1].estimator", "\"gnb\", \"hutchinson\""});
  expectError(
      [&] {
        reg.validate({{"name", "sophia"}, {"hessian_every", 0}}, "methods[1]");
      },
      {"methods[1].hessian_every"});
  expectError(
      [&] {
        reg.validate({{"name", "lion"}, {"beta3", 0.5}}, "methods[0]");
      },
      {"methods[0].beta3", "no parameter"});
  // The schema reaches `lathe-cli methods --json`.
  const json all = reg.toJson();
  bool found = false;
  for (const json& m : all.at("methods"))
    if (m.at("name") == "sophia")
      for (const json& p : m.at("params"))
        if (p.at("name") == "fd_eps")
          found = p.at("help").get<std::string>().find("double backward") != std::string::npos;
  EXPECT_TRUE(found) << "sophia's fd_eps help should say why finite differences are used";
}

}  // namespace
}  // namespace lathe::optim
