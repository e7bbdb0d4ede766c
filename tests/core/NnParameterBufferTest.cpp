// ParameterBuffer: parameters become aligned views of one flat storage, gradients land in the
// flat gradient after backward, one in-place update of the flat tensor changes every
// parameter, zeroGrad keeps the views, and model surgery / to() detach the buffer.
#include <gtest/gtest.h>

#include "core/nn/Layers.h"
#include "core/nn/ParameterBuffer.h"
#include "core/nn/Presets.h"
#include "core/ops/Ops.h"
#include "core/tensor/Random.h"

namespace lathe {
namespace {

std::shared_ptr<Model> smallMlp() {
  return buildModel({{"type", "mlp"}, {"input_dim", 5}, {"hidden", {7, 3}}, {"classes", 2}});
}

TEST(NnParameterBuffer, ParametersBecomeAlignedViewsWithValuesKept) {
  manualSeed(5);
  auto model = smallMlp();
  NamedTensors before;
  for (auto& [n, p] : model->namedParameters()) before.emplace_back(n, p.clone());
  std::vector<Tensor> handles = model->parameters();

  ParameterBuffer buf(*model);
  ASSERT_EQ(buf.groups().size(), 1u);
  const auto& g = buf.group(Device::cpu(), DType::f32);
  EXPECT_EQ(g.params.dim(), 1);
  EXPECT_EQ(g.params.storage()->tag(), MemoryTag::parameters);
  EXPECT_EQ(g.grads.storage()->tag(), MemoryTag::gradients);
  EXPECT_EQ(g.slots.size(), handles.size());
  EXPECT_TRUE(buf.attached());
  size_t i = 0;
  for (auto& [n, p] : model->namedParameters()) {
    EXPECT_EQ(p.implPtr(), handles[i].implPtr()) << n << ": handle identity changed";
    EXPECT_TRUE(p.sameStorage(g.params)) << n;
    EXPECT_TRUE(p.isLeaf() && p.requiresGrad()) << n;
    EXPECT_EQ((p.offset() * 4) % 64, 0) << n << " is not 64-byte aligned";
    EXPECT_EQ(p.toDoubles(), before[i].second.toDoubles()) << n;
    ASSERT_TRUE(p.grad().defined()) << n;
    EXPECT_TRUE(p.grad().sameStorage(g.grads)) << n;
    ++i;
  }
  // Padding holds zeros; the flat tensor is at least the parameter count.
  EXPECT_GE(g.params.numel(), model->numParameters());
  double flat_sum = 0, param_sum = 0;
  for (double v : g.params.toDoubles()) flat_sum += v;
  for (auto& p : model->parameters())
    for (double v : p.toDoubles()) param_sum += v;
  EXPECT_NEAR(flat_sum, param_sum, 1e-4);
}

TEST(NnParameterBuffer, GradientsLandInTheFlatBufferAndOneUpdateMovesEverything) {
  manualSeed(6);
  auto model = smallMlp();
  ParameterBuffer buf(*model);
  const auto& g = buf.group(Device::cpu(), DType::f32);
  Tensor x = randn({4, 5});
  Tensor target = Tensor::fromVector(std::vector<int64_t>{0, 1, 1, 0}, {4});
  crossEntropy(model->forward(x), target).backward();

  // Reference gradients from an unflattened copy.
  auto ref = smallMlp();
  ref->loadStateDict(model->stateDict());
  crossEntropy(ref->forward(x), target).backward();
  auto refp = ref->namedParameters();
  size_t i = 0;
  for (auto& [n, p] : model->namedParameters()) {
    Tensor grad = p.grad();
    EXPECT_TRUE(grad.sameStorage(g.grads)) << n << ": gradient left the flat buffer";
    const std::vector<double> a = grad.toDoubles(), b = refp[i].second.grad().toDoubles();
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-6) << n;
    ++i;
  }
  // The flat gradient is the concatenation (norm over it = norm over the parameters' grads).
  double flat_sq = 0, ref_sq = 0;
  for (double v : g.grads.toDoubles()) flat_sq += v * v;
  for (auto& [n, p] : refp)
    for (double v : p.grad().toDoubles()) ref_sq += v * v;
  EXPECT_NEAR(flat_sq, ref_sq, 1e-6 * std::max(1.0, ref_sq));

  // One SGD-like in-place step on the flat tensor changes every parameter by -lr * grad.
  NamedTensors before;
  for (auto& [n, p] : model->namedParameters()) before.emplace_back(n, p.clone());
  {
    NoGradGuard ng;
    Tensor(g.params).copy_(sub(g.params, mul(g.grads, 0.5)));
  }
  i = 0;
  for (auto& [n, p] : model->namedParameters()) {
    const auto now = p.toDoubles(), old = before[i].second.toDoubles();
    const auto gr = p.grad().toDoubles();
    for (size_t k = 0; k < now.size(); ++k) EXPECT_NEAR(now[k], old[k] - 0.5 * gr[k], 1e-6) << n;
    ++i;
  }

  // zeroGrad zeroes the flat gradient in place; a dropped .grad is re-attached.
  model->zeroGrad(true);
  EXPECT_FALSE(model->parameters()[0].grad().defined());
  buf.zeroGrad();
  for (auto& p : model->parameters()) EXPECT_TRUE(p.grad().sameStorage(g.grads));
  for (double v : g.grads.toDoubles()) ASSERT_EQ(v, 0.0);
  crossEntropy(model->forward(x), target).backward();
  double after = 0;
  for (double v : g.grads.toDoubles()) after += v * v;
  EXPECT_GT(after, 0.0);
}

int64_t tagBytes(MemoryTag tag) {
  return cpuAllocator().stats().tag_current[static_cast<int>(tag)];
}

TEST(NnParameterBuffer, MemoryIsCountedOnceUnderParametersAndGradients) {
  const int64_t p0 = tagBytes(MemoryTag::parameters), g0 = tagBytes(MemoryTag::gradients);
  auto model = smallMlp();
  EXPECT_EQ(tagBytes(MemoryTag::parameters) - p0, model->numParameters() * 4);
  {
    ParameterBuffer buf(*model);
    // The per-parameter storages were released; only the flat ones remain.
    EXPECT_EQ(tagBytes(MemoryTag::parameters) - p0, buf.numel() * 4);
    EXPECT_EQ(tagBytes(MemoryTag::gradients) - g0, buf.numel() * 4);
  }
  model.reset();
  EXPECT_EQ(tagBytes(MemoryTag::parameters), p0);
  EXPECT_EQ(tagBytes(MemoryTag::gradients), g0);
}

TEST(NnParameterBuffer, FrozenParametersGetTheirOwnGroupWithoutGradients) {
  auto model = smallMlp();
  model->find("layers.0")->setRequiresGrad(false);
  ParameterBuffer buf(*model);
  ASSERT_EQ(buf.groups().size(), 2u);
  int frozen = 0;
  for (const auto& g : buf.groups()) {
    if (g.trainable) continue;
    ++frozen;
    EXPECT_FALSE(g.grads.defined());
    EXPECT_EQ(g.slots.size(), 2u);  // weight and bias of the first Linear
  }
  EXPECT_EQ(frozen, 1);
  EXPECT_EQ(buf.group(Device::cpu(), DType::f32).slots.size(), 4u);
}

TEST(NnParameterBuffer, SurgeryOrToDetachesAndFlatteningAgainRecovers) {
  auto model = smallMlp();
  {
    ParameterBuffer buf(*model);
    model->replaceChild("layers.4", std::make_shared<Linear>(3, 2));
    EXPECT_FALSE(buf.attached());
    EXPECT_THROW(buf.zeroGrad(), Error);
    ParameterBuffer again(*model);
    EXPECT_TRUE(again.attached());
  }
  ParameterBuffer buf(*model);
  model->to(DType::f64);
  EXPECT_FALSE(buf.attached());
  for (auto& p : model->parameters()) EXPECT_EQ(p.dtype(), DType::f64);
  ParameterBuffer f64buf(*model);
  EXPECT_EQ(f64buf.groups()[0].dtype, DType::f64);
  EXPECT_TRUE(f64buf.attached());
}

TEST(NnParameterBuffer, TiedWeightsShareOneSlot) {
  auto model = buildModel({{"type", "gpt"},
                           {"vocab_size", 11},
                           {"block_size", 8},
                           {"n_layer", 1},
                           {"n_head", 2},
                           {"d_model", 8}});
  ParameterBuffer buf(*model);
  size_t slots = 0;
  for (const auto& g : buf.groups()) slots += g.slots.size();
  EXPECT_EQ(slots, model->parameters().size());
  Tensor ids = Tensor::fromVector(std::vector<int64_t>{1, 2, 3}, {1, 3});
  sum(model->forward(ids)).backward();
  // The tied embedding receives both the lookup's and the head's gradient, in the buffer.
  EXPECT_TRUE(model->parameter("wte.weight").grad().sameStorage(buf.groups()[0].grads));
}

TEST(NnParameterBuffer, PartitionSplitsGroupsAndNamesThem) {
  manualSeed(7);
  auto model = smallMlp();
  // Weights (dim 2) in partition 1, biases in 2, in registration order of their first member.
  ParameterBuffer buf(*model,
                      [](const std::string&, const Tensor& p) { return p.dim() >= 2 ? 1 : 2; });
  ASSERT_EQ(buf.groups().size(), 2u);
  EXPECT_EQ(buf.groups()[0].partition, 1);
  EXPECT_EQ(buf.groups()[1].partition, 2);
  for (const auto& g : buf.groups()) {
    EXPECT_TRUE(g.trainable);
    EXPECT_EQ(g.slots.size(), 3u);
    for (const auto& s : g.slots) {
      EXPECT_EQ(s.param.dim() >= 2, g.partition == 1) << s.name;
      EXPECT_TRUE(s.param.sameStorage(g.params)) << s.name;
      EXPECT_TRUE(s.param.grad().sameStorage(g.grads)) << s.name;
    }
  }
  EXPECT_EQ(&buf.group(Device::cpu(), DType::f32, 2), &buf.groups()[1]);
  EXPECT_THROW(buf.group(Device::cpu(), DType::f32), Error);  // split: ambiguous
  EXPECT_THROW(buf.group(Device::cpu(), DType::f32, 0), Error);
  EXPECT_TRUE(buf.attached());

  // Without a partition function every group is partition 0.
  ParameterBuffer plain(*model);
  ASSERT_EQ(plain.groups().size(), 1u);
  EXPECT_EQ(plain.groups()[0].partition, 0);
  EXPECT_EQ(&plain.group(Device::cpu(), DType::f32, 0), &plain.groups()[0]);
}

TEST(NnParameterBuffer, DetachedGradientNamesTheFirstParameterOutsideTheBuffer) {
  auto model = smallMlp();
  ParameterBuffer buf(*model);
  EXPECT_EQ(buf.detachedGradient(), "");
  Tensor b = model->parameter("layers.2.bias");
  b.zeroGrad();
  EXPECT_EQ(buf.detachedGradient(), "layers.2.bias");
  b.setGrad(Tensor::zeros(b.shape()));  // a gradient of its own, not the flat view
  EXPECT_EQ(buf.detachedGradient(), "layers.2.bias");
  buf.zeroGrad();
  EXPECT_EQ(buf.detachedGradient(), "");
}

}  // namespace
}  // namespace lathe
