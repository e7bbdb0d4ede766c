// Basic layers: parameter creation and PyTorch-default initialisation in the constructors,
// forward as one op call each (the ops record their own gradients).
#include "core/nn/Layers.h"

#include <cmath>
#include <sstream>

#include "core/autograd/Autograd.h"

namespace lathe {

Tensor newParameter(const Shape& shape, const ModuleOptions& opt) {
  MemoryTagScope tag(MemoryTag::parameters);
  return Tensor::empty(shape, opt.dtype, opt.device);
}

void initUniform(const Tensor& t, double lo, double hi) {
  NoGradGuard no_grad;
  Tensor u = rand(t.shape(), DType::f32, t.device());
  Tensor(t).copy_(add(mul(u, hi - lo), lo));
}

void initNormal(const Tensor& t, double mean, double stddev) {
  NoGradGuard no_grad;
  Tensor n = randn(t.shape(), DType::f32, t.device());
  Tensor(t).copy_(add(mul(n, stddev), mean));
}

void initConstant(const Tensor& t, double value) {
  NoGradGuard no_grad;
  Tensor(t).fill_(value);
}

// ---- activations ----
ActivationKind parseActivation(const std::string& name, const std::string& field) {
  if (name == "relu") return ActivationKind::relu;
  if (name == "gelu") return ActivationKind::gelu;
  if (name == "gelu_tanh" || name == "gelu_new") return ActivationKind::gelu_tanh;
  if (name == "silu" || name == "swish") return ActivationKind::silu;
  if (name == "tanh") return ActivationKind::tanh;
  if (name == "sigmoid") return ActivationKind::sigmoid;
  if (name == "identity") return ActivationKind::identity;
  fail(field, ": expected one of relu, gelu, gelu_tanh, silu, tanh, sigmoid, identity; got \"",
       name, "\"");
}

const char* activationName(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::identity: return "identity";
    case ActivationKind::relu: return "relu";
    case ActivationKind::gelu: return "gelu";
    case ActivationKind::gelu_tanh: return "gelu_tanh";
    case ActivationKind::silu: return "silu";
    case ActivationKind::tanh: return "tanh";
    case ActivationKind::sigmoid: return "sigmoid";
  }
  return "?";
}

Tensor activate(const Tensor& x, ActivationKind kind) {
  switch (kind) {
    case ActivationKind::identity: return x;
    case ActivationKind::relu: return relu(x);
    case ActivationKind::gelu: return gelu(x, false);
    case ActivationKind::gelu_tanh: return gelu(x, true);
    case ActivationKind::silu: return silu(x);
    case ActivationKind::tanh: return tanh(x);
    case ActivationKind::sigmoid: return sigmoid(x);
  }
  return x;
}

Activation::Activation(ActivationKind kind) : Module("Activation"), kind_(kind) {}

// ---- Linear ----
Linear::Linear(int64_t in_features, int64_t out_features, bool bias, const ModuleOptions& opt)
    : Module("Linear"), in_(in_features), out_(out_features) {
  LATHE_CHECK(in_features > 0 && out_features > 0,
              "Linear: features must be positive, got in = ", in_features,
              ", out = ", out_features);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight_ = newParameter({out_features, in_features}, opt);
  if (opt.initialize) initUniform(weight_, -bound, bound);
  weight_ = registerParameter("weight", weight_);
  if (bias) {
    bias_ = newParameter({out_features}, opt);
    if (opt.initialize) initUniform(bias_, -bound, bound);
    bias_ = registerParameter("bias", bias_);
  }
}

Tensor Linear::forward(const Tensor& x) {
  return linear(x, weight_, bias_);
}

std::string Linear::configString() const {
  return "in=" + std::to_string(in_) + ", out=" + std::to_string(out_) +
         (bias_.defined() ? ", bias" : "");
}

// ---- Conv2d ----
Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int kernel, int stride, int padding,
               bool bias, int groups, const ModuleOptions& opt)
    : Module("Conv2d"), in_(in_channels), out_(out_channels), kernel_(kernel) {
  LATHE_CHECK(
      in_channels > 0 && out_channels > 0 && kernel > 0 && stride > 0 && padding >= 0 && groups > 0,
      "Conv2d: invalid configuration in = ", in_channels, ", out = ", out_channels,
      ", kernel = ", kernel, ", stride = ", stride, ", padding = ", padding, ", groups = ", groups);
  LATHE_CHECK(in_channels % groups == 0 && out_channels % groups == 0, "Conv2d: groups = ", groups,
              " must divide in = ", in_channels, " and out = ", out_channels);
  params_.stride_h = params_.stride_w = stride;
  params_.pad_h = params_.pad_w = padding;
  params_.groups = groups;
  const int64_t fan_in = in_channels / groups * kernel * kernel;
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  weight_ = newParameter({out_channels, in_channels / groups, kernel, kernel}, opt);
  if (opt.initialize) initUniform(weight_, -bound, bound);
  weight_ = registerParameter("weight", weight_);
  if (bias) {
    bias_ = newParameter({out_channels}, opt);
    if (opt.initialize) initUniform(bias_, -bound, bound);
    bias_ = registerParameter("bias", bias_);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  return conv2d(x, weight_, bias_, params_);
}

std::string Conv2d::configString() const {
  std::ostringstream os;
  os << in_ << ", " << out_ << ", kernel=" << kernel_ << ", stride=" << params_.stride_h
     << ", padding=" << params_.pad_h;
  if (params_.groups != 1) os << ", groups=" << params_.groups;
  if (bias_.defined()) os << ", bias";
  return os.str();
}

// ---- norms ----
BatchNorm2d::BatchNorm2d(int64_t channels, double eps, double momentum, const ModuleOptions& opt)
    : Module("BatchNorm2d"), channels_(channels), eps_(eps), momentum_(momentum) {
  LATHE_CHECK(channels > 0, "BatchNorm2d: channels must be positive, got ", channels);
  weight_ = newParameter({channels}, opt);
  bias_ = newParameter({channels}, opt);
  initConstant(weight_, 1.0);
  initConstant(bias_, 0.0);
  weight_ = registerParameter("weight", weight_);
  bias_ = registerParameter("bias", bias_);
  Tensor rm = newParameter({channels}, opt), rv = newParameter({channels}, opt);
  initConstant(rm, 0.0);
  initConstant(rv, 1.0);
  running_mean_ = registerBuffer("running_mean", rm);
  running_var_ = registerBuffer("running_var", rv);
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  // A checkpointed forward re-run in backward must not move the running statistics again.
  if (training_ && isRecomputing())
    return batchNorm(x, weight_, bias_, Tensor(), Tensor(), true, momentum_, eps_);
  return batchNorm(x, weight_, bias_, running_mean_, running_var_, training_, momentum_, eps_);
}

std::string BatchNorm2d::configString() const {
  return std::to_string(channels_);
}

LayerNorm::LayerNorm(int64_t dim, double eps, bool bias, const ModuleOptions& opt)
    : Module("LayerNorm"), dim_(dim), eps_(eps) {
  LATHE_CHECK(dim > 0, "LayerNorm: dim must be positive, got ", dim);
  weight_ = newParameter({dim}, opt);
  initConstant(weight_, 1.0);
  weight_ = registerParameter("weight", weight_);
  if (bias) {
    bias_ = newParameter({dim}, opt);
    initConstant(bias_, 0.0);
    bias_ = registerParameter("bias", bias_);
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  return layerNorm(x, weight_, bias_, eps_);
}

std::string LayerNorm::configString() const {
  return std::to_string(dim_) + (bias_.defined() ? ", bias" : "");
}

RMSNorm::RMSNorm(int64_t dim, double eps, const ModuleOptions& opt)
    : Module("RMSNorm"), dim_(dim), eps_(eps) {
  LATHE_CHECK(dim > 0, "RMSNorm: dim must be positive, got ", dim);
  weight_ = newParameter({dim}, opt);
  initConstant(weight_, 1.0);
  weight_ = registerParameter("weight", weight_);
}

Tensor RMSNorm::forward(const Tensor& x) {
  return rmsNorm(x, weight_, eps_);
}

std::string RMSNorm::configString() const {
  return std::to_string(dim_);
}

// ---- Embedding ----
Embedding::Embedding(int64_t num_embeddings, int64_t dim, const ModuleOptions& opt)
    : Module("Embedding"), num_(num_embeddings), dim_(dim) {
  LATHE_CHECK(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got ",
              num_embeddings, " x ", dim);
  weight_ = newParameter({num_embeddings, dim}, opt);
  if (opt.initialize) initNormal(weight_, 0.0, 1.0);
  weight_ = registerParameter("weight", weight_);
}

Tensor Embedding::forward(const Tensor& ids) {
  return embedding(weight_, ids);
}

std::string Embedding::configString() const {
  return std::to_string(num_) + ", " + std::to_string(dim_);
}

// ---- Dropout, Flatten, pooling ----
Dropout::Dropout(double p) : Module("Dropout"), p_(p) {
  LATHE_CHECK(p >= 0.0 && p < 1.0, "Dropout: p must be in [0, 1), got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
  return dropout(x, p_, training_);
}

std::string Dropout::configString() const {
  std::ostringstream os;
  os << "p=" << p_;
  return os.str();
}

Flatten::Flatten(int start_dim, int end_dim)
    : Module("Flatten"), start_(start_dim), end_(end_dim) {}

Pool2d::Pool2d(bool max, int kernel, int stride, int padding)
    : Module(max ? "MaxPool2d" : "AvgPool2d"),
      max_(max),
      kernel_(kernel),
      stride_(stride),
      padding_(padding) {
  LATHE_CHECK(kernel > 0 && padding >= 0 && (stride > 0 || stride == -1), typeName(),
              ": invalid kernel = ", kernel, ", stride = ", stride, ", padding = ", padding);
}

Tensor Pool2d::forward(const Tensor& x) {
  return max_ ? maxPool2d(x, kernel_, stride_, padding_) : avgPool2d(x, kernel_, stride_, padding_);
}

std::string Pool2d::configString() const {
  return "kernel=" + std::to_string(kernel_) +
         ", stride=" + std::to_string(stride_ < 0 ? kernel_ : stride_);
}

// ---- Sequential ----
Sequential& Sequential::add(std::shared_ptr<Module> m) {
  return add(std::to_string(children().size()), std::move(m));
}

Sequential& Sequential::add(const std::string& name, std::shared_ptr<Module> m) {
  registerModule(name, std::move(m));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (size_t i = 0; i < children().size(); ++i) h = child(i).forward(h);
  return h;
}

}  // namespace lathe
