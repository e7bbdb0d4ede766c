// Tensor basics: factories, views, conversions, printing, memory accounting, error messages.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/Ops.h"

namespace lathe {
namespace {

TEST(Tensor, FactoriesAndViews) {
  Tensor t = Tensor::fromVector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_TRUE(t.isContiguous());
  Tensor tt = t.transpose(0, 1);
  EXPECT_EQ(tt.shape(), (Shape{3, 2}));
  EXPECT_FALSE(tt.isContiguous());
  EXPECT_EQ(tt.contiguous().toDoubles(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(t.slice(1, 1, 3).toDoubles(), (std::vector<double>{2, 3, 5, 6}));
  EXPECT_EQ(t.select(0, 1).toDoubles(), (std::vector<double>{4, 5, 6}));
  EXPECT_EQ(t.reshape({3, -1}).shape(), (Shape{3, 2}));
  EXPECT_EQ(tt.reshape({6}).toDoubles(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  Tensor row = Tensor::fromVector(std::vector<double>{7, 8, 9}, {1, 3});
  EXPECT_EQ(row.expand({2, 3}).toDoubles(), (std::vector<double>{7, 8, 9, 7, 8, 9}));
  EXPECT_EQ(t.unsqueeze(0).shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(t.flatten().shape(), (Shape{6}));
}

TEST(Tensor, DTypeConversionsRoundTrip) {
  Tensor t = Tensor::fromVector(std::vector<double>{1.5, -2.25, 1000.0, 0.1}, {4});
  EXPECT_EQ(t.to(DType::bf16).to(DType::f32).toDoubles()[0], 1.5);
  EXPECT_EQ(t.to(DType::f16).toDoubles()[1], -2.25);
  EXPECT_EQ(t.to(DType::i32).toInts(), (std::vector<int64_t>{1, -2, 1000, 0}));
  EXPECT_NEAR(t.to(DType::f16).toDoubles()[3], 0.1, 1e-4);
  EXPECT_EQ(
      Tensor::fromVector(std::vector<double>{448, 1000, -0.5}, {3}, DType::f8e4m3).toDoubles(),
      (std::vector<double>{448, 448, -0.5}));
  EXPECT_EQ(Tensor::fromVector(std::vector<double>{57344, 3.0}, {2}, DType::f8e5m2).toDoubles(),
            (std::vector<double>{57344, 3.0}));
}

TEST(Tensor, HalfAndBFloatRoundToNearestEven) {
  EXPECT_EQ(static_cast<float>(Half(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(static_cast<float>(Half(65520.0f))));
  EXPECT_EQ(static_cast<float>(Half(5.960464477539063e-08f)),
            5.960464477539063e-08f);                                 // min subnormal
  EXPECT_EQ(static_cast<float>(Half(1.0f + 1.0f / 2048)), 1.0f);     // tie -> even
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f + 1.0f / 256)), 1.0f);  // tie -> even
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
}

TEST(Tensor, MemoryAccountingByTag) {
  Allocator& a = cpuAllocator();
  const MemoryStats before = a.stats();
  {
    MemoryTagScope scope(MemoryTag::parameters);
    Tensor p = Tensor::zeros({256}, DType::f32);
    const MemoryStats during = a.stats();
    EXPECT_EQ(during.tag_current[static_cast<int>(MemoryTag::parameters)] -
                  before.tag_current[static_cast<int>(MemoryTag::parameters)],
              1024);
    p.storage()->setTag(MemoryTag::optimizer_state);
    EXPECT_EQ(a.stats().tag_current[static_cast<int>(MemoryTag::optimizer_state)] -
                  before.tag_current[static_cast<int>(MemoryTag::optimizer_state)],
              1024);
  }
  EXPECT_EQ(a.stats().current, before.current);
  EXPECT_GE(a.stats().peak, before.current + 1024);
}

TEST(Tensor, ErrorsNameShapes) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 3});
  try {
    add(a, b);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[4, 3]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(add(a, Tensor::zeros({2, 3}, DType::f64)), Error);
  EXPECT_THROW(a.view({4, 2}), Error);
  EXPECT_THROW(a.transpose(0, 1).view({6}), Error);
  EXPECT_THROW(Device::parse("gpu0"), Error);
}

TEST(Tensor, PrintsValues) {
  Tensor t = Tensor::fromVector(std::vector<double>{1, 2, 3, 4}, {2, 2});
  const std::string s = t.toString();
  EXPECT_NE(s.find("f32[2, 2] on cpu"), std::string::npos) << s;
  EXPECT_NE(s.find("[[1.0000, 2.0000],"), std::string::npos) << s;
}

TEST(Autograd, ChainRuleThroughBroadcastAndViews) {
  Tensor x = Tensor::fromVector(std::vector<double>{1, 2, 3}, {3}, DType::f64).setRequiresGrad();
  Tensor w = Tensor::fromVector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64)
                 .setRequiresGrad();
  Tensor y = sum(mul(w, x).transpose(0, 1).reshape({6}));  // sum_ij w_ij x_j
  y.backward();
  EXPECT_EQ(x.grad().toDoubles(), (std::vector<double>{5, 7, 9}));
  EXPECT_EQ(w.grad().toDoubles(), (std::vector<double>{1, 2, 3, 1, 2, 3}));
  // Accumulation over a second backward.
  sum(x).backward();
  EXPECT_EQ(x.grad().toDoubles(), (std::vector<double>{6, 8, 10}));
}

TEST(Autograd, InPlaceChangeOfSavedTensorIsAnError) {
  Tensor x = Tensor::fromVector(std::vector<double>{1, 2, 3}, {3}, DType::f64).setRequiresGrad();
  Tensor e = exp(x);  // saves its output
  Tensor y = sum(e);
  {
    NoGradGuard g;
    e.fill_(0.0);
  }
  EXPECT_THROW(y.backward(), Error);
}

TEST(Autograd, HooksAndNoGrad) {
  Tensor x = Tensor::fromVector(std::vector<double>{1, 2}, {2}, DType::f64).setRequiresGrad();
  x.registerHook([](const Tensor& g) { return mul(g, 10.0); });
  int calls = 0;
  x.registerPostAccumulateHook([&](Tensor&) { ++calls; });
  sum(square(x)).backward();
  EXPECT_EQ(x.grad().toDoubles(), (std::vector<double>{20, 40}));
  EXPECT_EQ(calls, 1);
  NoGradGuard g;
  EXPECT_FALSE(square(x).requiresGrad());
}

TEST(Autograd, CheckpointMatchesPlainBackward) {
  auto f = [](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{tanh(mul(exp(in[0]), in[1]))};
  };
  Tensor a =
      Tensor::fromVector(std::vector<double>{0.1, -0.3, 0.7}, {3}, DType::f64).setRequiresGrad();
  Tensor b =
      Tensor::fromVector(std::vector<double>{1.5, 0.2, -0.4}, {3}, DType::f64).setRequiresGrad();
  sum(f({a, b})[0]).backward();
  std::vector<double> ga = a.grad().toDoubles(), gb = b.grad().toDoubles();
  a.zeroGrad();
  b.zeroGrad();
  sum(checkpoint(f, {a, b})[0]).backward();
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(a.grad().toDoubles()[static_cast<size_t>(i)], ga[static_cast<size_t>(i)], 1e-12);
    EXPECT_NEAR(b.grad().toDoubles()[static_cast<size_t>(i)], gb[static_cast<size_t>(i)], 1e-12);
  }
}

}  // namespace
}  // namespace lathe

namespace lathe {
namespace {

// A device backend with memory but no kernels: every op must fail naming the kernel and the
// device, never fall back to the CPU.
class EmptyCudaBackend final : public Backend {
 public:
  DeviceType deviceType() const override { return DeviceType::cuda; }
  std::string name() const override { return "empty-test"; }
  Allocator& allocator(int) override { return cpuAllocator(); }
};

TEST(Dispatch, MissingKernelIsAnErrorNamingOpAndDevice) {
  EmptyCudaBackend empty;
  ScopedBackend scoped(&empty);
  Tensor a = Tensor::empty({2, 2}, DType::f32, Device::cuda(0));
  try {
    add(a, a);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'binary'"), std::string::npos) << m;
    EXPECT_NE(m.find("cuda"), std::string::npos) << m;
  }
  EXPECT_THROW(Tensor::zeros({2}, DType::f32, Device::cuda(0)), Error);  // fill is missing too
}

}  // namespace
}  // namespace lathe
