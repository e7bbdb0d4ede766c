// The basic layers: Linear, Conv2d, BatchNorm2d, LayerNorm, RMSNorm, Embedding, Dropout,
// Activation, Flatten, pooling and Sequential, plus the initialisers they use. Default
// initialisations follow PyTorch (kaiming-uniform with a = sqrt(5) for Linear/Conv2d weights,
// so U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the same bound for biases; N(0, 1) for Embedding;
// ones/zeros for norms), drawn from the seeded stream (lathe::manualSeed) in f32 and converted
// to the parameter dtype, so a seed gives the same model in any dtype up to rounding.
// Shapes: Linear x [.., in] -> [.., out]; Conv2d/pooling NCHW; norms over the last dim.
#pragma once

#include <memory>
#include <string>

#include "core/nn/Module.h"
#include "core/ops/Ops.h"

namespace lathe {

// ---- initialisers (in place, no autograd; each draws once from the random stream) ----
// An uninitialised parameter tensor allocated as MemoryTag::parameters.
Tensor newParameter(const Shape& shape, const ModuleOptions& opt);
void initUniform(const Tensor& t, double lo, double hi);
void initNormal(const Tensor& t, double mean, double stddev);
void initConstant(const Tensor& t, double value);

// ---- activations ----
enum class ActivationKind { identity, relu, gelu, gelu_tanh, silu, tanh, sigmoid };
// "relu", "gelu", "gelu_tanh" (also "gelu_new"), "silu" (also "swish"), "tanh", "sigmoid",
// "identity"; throws naming `field` and the accepted names.
ActivationKind parseActivation(const std::string& name, const std::string& field);
const char* activationName(ActivationKind kind);
Tensor activate(const Tensor& x, ActivationKind kind);

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true,
         const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override;
  std::string configString() const override;
  const Tensor& weight() const { return weight_; }  // [out, in]
  const Tensor& bias() const { return bias_; }      // [out] or undefined
  int64_t inFeatures() const { return in_; }
  int64_t outFeatures() const { return out_; }

 private:
  int64_t in_, out_;
  Tensor weight_, bias_;
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int kernel, int stride = 1, int padding = 0,
         bool bias = true, int groups = 1, const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override;
  std::string configString() const override;
  const Tensor& weight() const { return weight_; }  // [out, in/groups, k, k]
  const Tensor& bias() const { return bias_; }

 private:
  int64_t in_, out_;
  int kernel_;
  Conv2dParams params_;
  Tensor weight_, bias_;
};

// Batch normalisation over N, H, W per channel; running_mean/running_var are buffers updated
// with `momentum` in training mode (unbiased variance, as PyTorch).
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1,
                       const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override;
  std::string configString() const override;

 private:
  int64_t channels_;
  double eps_, momentum_;
  Tensor weight_, bias_, running_mean_, running_var_;
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool bias = true,
                     const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override;
  std::string configString() const override;

 private:
  int64_t dim_;
  double eps_;
  Tensor weight_, bias_;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-5, const ModuleOptions& opt = {});
  Tensor forward(const Tensor& x) override;
  std::string configString() const override;

 private:
  int64_t dim_;
  double eps_;
  Tensor weight_;
};

// ids (i64 or i32) [*] -> [*, dim].
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, const ModuleOptions& opt = {});
  Tensor forward(const Tensor& ids) override;
  std::string configString() const override;
  const Tensor& weight() const { return weight_; }  // [num, dim]

 private:
  int64_t num_, dim_;
  Tensor weight_;
};

// Zeroes elements with probability p and scales the rest by 1/(1-p), in training mode only.
class Dropout : public Module {
 public:
  explicit Dropout(double p);
  Tensor forward(const Tensor& x) override;
  std::string configString() const override;

 private:
  double p_;
};

class Activation : public Module {
 public:
  explicit Activation(ActivationKind kind);
  Tensor forward(const Tensor& x) override { return activate(x, kind_); }
  std::string configString() const override { return activationName(kind_); }
  ActivationKind kind() const { return kind_; }

 private:
  ActivationKind kind_;
};

// Flattens dims [start, end] into one (default: all but the batch dim).
class Flatten : public Module {
 public:
  explicit Flatten(int start_dim = 1, int end_dim = -1);
  Tensor forward(const Tensor& x) override { return x.flatten(start_, end_); }

 private:
  int start_, end_;
};

// Max or average pooling with a square window (stride defaults to the window).
class Pool2d : public Module {
 public:
  Pool2d(bool max, int kernel, int stride = -1, int padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string configString() const override;

 private:
  bool max_;
  int kernel_, stride_, padding_;
};
inline std::shared_ptr<Pool2d> maxPool(int kernel, int stride = -1, int padding = 0) {
  return std::make_shared<Pool2d>(true, kernel, stride, padding);
}
inline std::shared_ptr<Pool2d> avgPool(int kernel, int stride = -1, int padding = 0) {
  return std::make_shared<Pool2d>(false, kernel, stride, padding);
}

// Children named "0", "1", ... (or as given), applied in order.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  Sequential& add(std::shared_ptr<Module> m);
  Sequential& add(const std::string& name, std::shared_ptr<Module> m);
  Tensor forward(const Tensor& x) override;
  size_t size() const { return children().size(); }
  Module& at(size_t i) const { return child(i); }
};

}  // namespace lathe
