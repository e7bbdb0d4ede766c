// LeNet-style and ResNet presets: spec parsing with spatial-size validation, analytic counts
// (walking the same layer sequence the constructors build) and the modules.
#include "core/nn/Cnn.h"

#include "core/autograd/Autograd.h"
#include "core/nn/Layers.h"
#include "core/nn/SpecReader.h"

namespace lathe {
namespace {

// Output extent of a k x k conv with padding p and stride s (floor mode).
int64_t convOut(int64_t in, int64_t k, int64_t stride, int64_t pad) {
  return (in + 2 * pad - k) / stride + 1;
}

// Accumulates analytic parameter and multiply-add counts.
struct Tally {
  int64_t params = 0, macs = 0;
  void conv(int64_t cin, int64_t cout, int64_t k, int64_t out_hw, bool bias) {
    params += cin * cout * k * k + (bias ? cout : 0);
    macs += cin * cout * k * k * out_hw * out_hw;
  }
  void linear(int64_t in, int64_t out) {
    params += in * out + out;
    macs += in * out;
  }
  void batchNorm(int64_t c) { params += 2 * c; }
};

}  // namespace

CnnConfig CnnConfig::parse(const nlohmann::json& spec, const std::string& path) {
  SpecReader r(spec, path);
  r.string("type", std::nullopt, {"cnn"});
  CnnConfig c;
  c.variant = r.string("variant", "lenet", {"lenet", "resnet"});
  c.in_channels = r.integer("in_channels", std::nullopt, 1, 4096);
  c.image_size = r.integer("image_size", std::nullopt, 1, 65536);
  c.classes = r.integer("classes", std::nullopt, 1);
  if (c.variant == "lenet") {
    c.channels = r.integers("channels", c.channels, 1);
    c.kernel = r.integer("kernel", 3, 1, 31);
    if (c.kernel % 2 == 0)
      r.fail("kernel",
             "expected an odd kernel size (same padding), got " + std::to_string(c.kernel));
    c.pool = r.string("pool", "max", {"max", "avg"});
    c.batch_norm = r.boolean("batch_norm", false);
    c.hidden = r.integers("hidden", c.hidden, 1);
    c.activation = r.string("activation", "relu");
    parseActivation(c.activation, r.field("activation"));
    c.dropout = r.number("dropout", 0.0, 0.0, 0.999);
    int64_t s = c.image_size;
    for (size_t i = 0; i < c.channels.size(); ++i) {
      if (s / 2 < 1)
        r.fail("channels", std::to_string(c.channels.size()) + " conv stages each halve the " +
                               "image; image_size " + std::to_string(c.image_size) +
                               " is below 1 pixel after stage " + std::to_string(i + 1));
      s /= 2;
    }
  } else {
    c.widths = r.integers("widths", c.widths, 1);
    c.blocks = r.integers("blocks", c.blocks, 1);
    if (c.widths.empty()) r.fail("widths", "expected at least one stage");
    if (c.blocks.size() != c.widths.size())
      r.fail("blocks", "expected one block count per width (" + std::to_string(c.widths.size()) +
                           "), got " + std::to_string(c.blocks.size()));
  }
  r.finish();
  return c;
}

nlohmann::json CnnConfig::toJson() const {
  nlohmann::json j = {{"type", "cnn"},
                      {"variant", variant},
                      {"in_channels", in_channels},
                      {"image_size", image_size},
                      {"classes", classes}};
  if (variant == "lenet") {
    j["channels"] = channels;
    j["kernel"] = kernel;
    j["pool"] = pool;
    j["batch_norm"] = batch_norm;
    j["hidden"] = hidden;
    j["activation"] = activation;
    j["dropout"] = dropout;
  } else {
    j["widths"] = widths;
    j["blocks"] = blocks;
  }
  return j;
}

ModelInfo CnnConfig::analyze() const {
  Tally t;
  if (variant == "lenet") {
    int64_t s = image_size, cin = in_channels;
    for (int64_t c : channels) {
      t.conv(cin, c, kernel, s, !batch_norm);
      if (batch_norm) t.batchNorm(c);
      s /= 2;
      cin = c;
    }
    int64_t in = cin * s * s;
    for (int64_t h : hidden) {
      t.linear(in, h);
      in = h;
    }
    t.linear(in, classes);
  } else {
    int64_t s = image_size, cin = widths[0];
    t.conv(in_channels, cin, 3, s, false);
    t.batchNorm(cin);
    for (size_t i = 0; i < widths.size(); ++i) {
      for (int64_t b = 0; b < blocks[i]; ++b) {
        const int64_t stride = i > 0 && b == 0 ? 2 : 1, cout = widths[i];
        const int64_t so = convOut(s, 3, stride, 1);
        t.conv(cin, cout, 3, so, false);
        t.batchNorm(cout);
        t.conv(cout, cout, 3, so, false);
        t.batchNorm(cout);
        if (stride != 1 || cin != cout) {
          t.conv(cin, cout, 1, so, false);
          t.batchNorm(cout);
        }
        s = so;
        cin = cout;
      }
    }
    t.linear(cin, classes);
  }
  ModelInfo info;
  info.type = "cnn";
  info.params = info.trainable_params = info.flop_params = t.params;
  info.forward_flops = 2.0 * static_cast<double>(t.macs);
  info.train_flops = 3.0 * info.forward_flops;
  info.flops_per = "sample";
  info.flops_formula =
      "forward = 2 * (sum over Conv2d of Cin*Cout*k*k*Hout*Wout + sum over Linear of in*out); "
      "train = 3 * forward";
  return info;
}

std::shared_ptr<Model> buildCnn(const CnnConfig& cfg, const ModuleOptions& opt) {
  if (cfg.variant == "resnet") return std::make_shared<ResNetModel>(cfg, opt);
  return std::make_shared<LeNetModel>(cfg, opt);
}

// ---- LeNet ----
LeNetModel::LeNetModel(const CnnConfig& cfg, const ModuleOptions& opt)
    : Model("LeNetModel", cfg.toJson()), cfg_(cfg) {
  const ActivationKind act = parseActivation(cfg.activation, "model.activation");
  auto features = std::make_shared<Sequential>();
  int64_t s = cfg.image_size, cin = cfg.in_channels;
  const int k = static_cast<int>(cfg.kernel);
  for (int64_t c : cfg.channels) {
    features->add(std::make_shared<Conv2d>(cin, c, k, 1, k / 2, !cfg.batch_norm, 1, opt));
    if (cfg.batch_norm) features->add(std::make_shared<BatchNorm2d>(c, 1e-5, 0.1, opt));
    features->add(std::make_shared<Activation>(act));
    features->add(cfg.pool == "max" ? std::shared_ptr<Module>(maxPool(2)) : avgPool(2));
    stage_sizes_.push_back(cfg.batch_norm ? 4 : 3);
    s /= 2;
    cin = c;
  }
  stage_modes_.assign(stage_sizes_.size(), CheckpointMode::none);
  auto classifier = std::make_shared<Sequential>();
  classifier->add(std::make_shared<Flatten>(1, -1));
  int64_t in = cin * s * s;
  for (int64_t h : cfg.hidden) {
    classifier->add(std::make_shared<Linear>(in, h, true, opt));
    classifier->add(std::make_shared<Activation>(act));
    if (cfg.dropout > 0) classifier->add(std::make_shared<Dropout>(cfg.dropout));
    in = h;
  }
  classifier->add(std::make_shared<Linear>(in, cfg.classes, true, opt));
  features_ = registerModule("features", features);
  classifier_ = registerModule("classifier", classifier);
}

Tensor LeNetModel::forward(const Tensor& x) {
  LATHE_CHECK(x.dim() == 4 && x.size(1) == cfg_.in_channels && x.size(2) == cfg_.image_size &&
                  x.size(3) == cfg_.image_size,
              "LeNetModel: input ", describe(x), " must be [N, ", cfg_.in_channels, ", ",
              cfg_.image_size, ", ", cfg_.image_size, "]");
  Tensor h = x;
  size_t at = 0;
  for (size_t s = 0; s < stage_sizes_.size(); ++s) {
    const size_t from = at, to = at + stage_sizes_[s];
    at = to;
    switch (stage_modes_[s]) {
      case CheckpointMode::none: h = runFeatures(h, from, to); break;
      case CheckpointMode::full:
        h = checkpoint(
            [this, from, to](const std::vector<Tensor>& in) {
              return std::vector<Tensor>{runFeatures(in[0], from, to)};
            },
            {h})[0];
        break;
      case CheckpointMode::selective:  // conv, then [BN ->] act recomputed, then pool
        h = runFeatures(h, from, from + 1);
        h = recomputable(
            [this, from, to](const Tensor& t) { return runFeatures(t, from + 1, to - 1); }, h);
        h = runFeatures(h, to - 1, to);
        break;
    }
  }
  h = runFeatures(h, at, child(features_).children().size());
  return child(classifier_).forward(h);
}

Tensor LeNetModel::runFeatures(const Tensor& x, size_t from, size_t to) const {
  Module& f = child(features_);
  Tensor h = x;
  for (size_t i = from; i < to; ++i) h = f.child(i).forward(h);
  return h;
}

int64_t LeNetModel::setCheckpointing(CheckpointMode mode, int64_t every_k) {
  LATHE_CHECK(every_k >= 1, "LeNetModel::setCheckpointing: every_k must be >= 1, got ", every_k);
  int64_t count = 0;
  for (size_t s = 0; s < stage_modes_.size(); ++s) {
    const bool on = static_cast<int64_t>(s) % every_k == 0;
    stage_modes_[s] = on ? mode : CheckpointMode::none;
    if (on && mode != CheckpointMode::none) ++count;
  }
  return count;
}

// ---- ResNet ----
BasicBlock::BasicBlock(int64_t in_channels, int64_t out_channels, int stride,
                       const ModuleOptions& opt)
    : Module("BasicBlock") {
  conv1_ = registerModule(
      "conv1", std::make_shared<Conv2d>(in_channels, out_channels, 3, stride, 1, false, 1, opt));
  bn1_ = registerModule("bn1", std::make_shared<BatchNorm2d>(out_channels, 1e-5, 0.1, opt));
  conv2_ = registerModule(
      "conv2", std::make_shared<Conv2d>(out_channels, out_channels, 3, 1, 1, false, 1, opt));
  bn2_ = registerModule("bn2", std::make_shared<BatchNorm2d>(out_channels, 1e-5, 0.1, opt));
  if (stride != 1 || in_channels != out_channels) {
    auto sc = std::make_shared<Sequential>();
    sc->add(std::make_shared<Conv2d>(in_channels, out_channels, 1, stride, 0, false, 1, opt));
    sc->add(std::make_shared<BatchNorm2d>(out_channels, 1e-5, 0.1, opt));
    shortcut_ = registerModule("shortcut", sc);
    has_shortcut_ = true;
  }
}

Tensor BasicBlock::forward(const Tensor& x) {
  if (checkpoint_ == CheckpointMode::full)
    return checkpoint(
        [this](const std::vector<Tensor>& in) { return std::vector<Tensor>{run(in[0])}; }, {x})[0];
  return run(x);
}

Tensor BasicBlock::run(const Tensor& x) {
  Module* bn1 = &child(bn1_);
  Module* bn2 = &child(bn2_);
  auto first = [bn1](const Tensor& c1) { return relu(bn1->forward(c1)); };
  auto second = [bn2](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{relu(add(bn2->forward(in[0]), in[1]))};
  };
  const bool selective = checkpoint_ == CheckpointMode::selective;
  const Tensor c1 = child(conv1_).forward(x);
  const Tensor h = selective ? recomputable(first, c1) : first(c1);
  const Tensor c2 = child(conv2_).forward(h);
  const Tensor identity = has_shortcut_ ? child(shortcut_).forward(x) : x;
  return selective ? checkpoint(second, {c2, identity}, CheckpointOptions{true})[0]
                   : second({c2, identity})[0];
}

ResNetModel::ResNetModel(const CnnConfig& cfg, const ModuleOptions& opt)
    : Model("ResNetModel", cfg.toJson()), cfg_(cfg) {
  auto stem = std::make_shared<Sequential>();
  stem->add(std::make_shared<Conv2d>(cfg.in_channels, cfg.widths[0], 3, 1, 1, false, 1, opt));
  stem->add(std::make_shared<BatchNorm2d>(cfg.widths[0], 1e-5, 0.1, opt));
  stem->add(std::make_shared<Activation>(ActivationKind::relu));
  auto stages = std::make_shared<Sequential>();
  int64_t cin = cfg.widths[0];
  for (size_t i = 0; i < cfg.widths.size(); ++i) {
    auto stage = std::make_shared<Sequential>();
    for (int64_t b = 0; b < cfg.blocks[i]; ++b) {
      const int stride = i > 0 && b == 0 ? 2 : 1;
      stage->add(std::make_shared<BasicBlock>(cin, cfg.widths[i], stride, opt));
      cin = cfg.widths[i];
    }
    stages->add(stage);
  }
  stem_ = registerModule("stem", stem);
  stages_ = registerModule("stages", stages);
  fc_ = registerModule("fc", std::make_shared<Linear>(cin, cfg.classes, true, opt));
}

Tensor ResNetModel::forward(const Tensor& x) {
  LATHE_CHECK(x.dim() == 4 && x.size(1) == cfg_.in_channels && x.size(2) == cfg_.image_size &&
                  x.size(3) == cfg_.image_size,
              "ResNetModel: input ", describe(x), " must be [N, ", cfg_.in_channels, ", ",
              cfg_.image_size, ", ", cfg_.image_size, "]");
  const Tensor h = child(stages_).forward(child(stem_).forward(x));
  return child(fc_).forward(mean(h, {2, 3}));
}

int64_t ResNetModel::setCheckpointing(CheckpointMode mode, int64_t every_k) {
  LATHE_CHECK(every_k >= 1, "ResNetModel::setCheckpointing: every_k must be >= 1, got ", every_k);
  int64_t index = 0, count = 0;
  for (const auto& [stage_name, stage] : child(stages_).children()) {
    for (const auto& [name, m] : stage->children()) {
      auto* block = dynamic_cast<BasicBlock*>(m.get());
      if (block == nullptr) continue;
      const bool on = index++ % every_k == 0;
      block->setCheckpoint(on ? mode : CheckpointMode::none);
      if (on && mode != CheckpointMode::none) ++count;
    }
  }
  return count;
}

}  // namespace lathe
