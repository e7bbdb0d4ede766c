// Small CNN presets for 28x28 / 32x32 images (NCHW input [N, in_channels, S, S]):
//   lenet  - per entry of `channels`: Conv(k, same padding) [-> BatchNorm] -> act -> 2x2 pool;
//            then Flatten -> [Linear -> act -> Dropout] per `hidden` -> Linear(classes).
//            The default channels [32, 64] with hidden [128] is the classic two-conv MNIST CNN.
//   resnet - CIFAR-style ResNet (He et al. 2016): 3x3 stem conv -> BN -> ReLU, stages of
//            BasicBlocks (widths[i] channels, blocks[i] blocks, stride 2 at the start of every
//            stage but the first, 1x1 conv + BN projection shortcut where the shape changes),
//            global average pooling, Linear(classes). Convs have no bias (BN follows).
// Fields (both): in_channels, image_size, classes (required); lenet: channels [32, 64],
// kernel 3 (odd), pool "max"|"avg", batch_norm false, hidden [128], activation "relu",
// dropout 0; resnet: widths [16, 32, 64], blocks [2, 2, 2].
// Activation checkpointing (setCheckpointing): the checkpointed units are LeNet's conv stages
// (conv [-> BN] -> act -> pool) and ResNet's BasicBlocks, counted from the input. Full keeps a
// unit's input only; selective keeps conv and pooling outputs and re-runs BN + activation.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/nn/Presets.h"

namespace lathe {

struct CnnConfig {
  std::string variant = "lenet";
  int64_t in_channels = 0, image_size = 0, classes = 0;
  // lenet
  std::vector<int64_t> channels{32, 64};
  int64_t kernel = 3;
  std::string pool = "max";
  bool batch_norm = false;
  std::vector<int64_t> hidden{128};
  std::string activation = "relu";
  double dropout = 0.0;
  // resnet
  std::vector<int64_t> widths{16, 32, 64};
  std::vector<int64_t> blocks{2, 2, 2};

  static CnnConfig parse(const nlohmann::json& spec, const std::string& path);
  nlohmann::json toJson() const;
  ModelInfo analyze() const;
};

std::shared_ptr<Model> buildCnn(const CnnConfig& cfg, const ModuleOptions& opt = {});

class LeNetModel : public Model {
 public:
  LeNetModel(const CnnConfig& cfg, const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override;
  int64_t setCheckpointing(CheckpointMode mode, int64_t every_k) override;

 private:
  // Runs features children [from, to) on x.
  Tensor runFeatures(const Tensor& x, size_t from, size_t to) const;
  CnnConfig cfg_;
  size_t features_, classifier_;
  std::vector<size_t> stage_sizes_;  // modules per conv stage in `features`
  std::vector<CheckpointMode> stage_modes_;
};

// conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the (projected) input, then ReLU. Children:
// conv1, bn1, conv2, bn2 and, when the shape changes, shortcut (Sequential of conv 1x1, BN).
class BasicBlock : public Module {
 public:
  BasicBlock(int64_t in_channels, int64_t out_channels, int stride, const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override;
  // full: keeps x only; selective: keeps the conv outputs, re-runs BN + ReLU (and the residual
  // add) in backward.
  void setCheckpoint(CheckpointMode mode) { checkpoint_ = mode; }
  CheckpointMode checkpointMode() const { return checkpoint_; }

 private:
  Tensor run(const Tensor& x);
  size_t conv1_, bn1_, conv2_, bn2_, shortcut_ = 0;
  bool has_shortcut_ = false;
  CheckpointMode checkpoint_ = CheckpointMode::none;
};

class ResNetModel : public Model {
 public:
  ResNetModel(const CnnConfig& cfg, const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override;
  int64_t setCheckpointing(CheckpointMode mode, int64_t every_k) override;

 private:
  CnnConfig cfg_;
  size_t stem_, stages_, fc_;
};

}  // namespace lathe
