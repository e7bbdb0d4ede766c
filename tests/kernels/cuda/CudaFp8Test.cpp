// fp8 and 8-bit optimizer kernels on CUDA against the CPU reference: quantization must be
// bit-exact (same scale, same rounding), the cuBLASLt fp8 GEMM equal to the reference up to
// f32 summation order, the fp8 linear's forward and backward equal to the CPU emulation, and the
// fused 8-bit AdamW equal to the reference loop. Skipped without a GPU; the fp8 GEMM tests also
// skip on GPUs older than sm_89 (no fp8 tensor cores).
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/Fp8.h"
#include "core/optim/Quantize8bit.h"
#include "kernels/cuda/CudaBackend.h"
#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

const Device kGpu = Device::cuda(0);

bool hasFp8TensorCores() {
  return cuda::computeCapability(0) >= 89;
}

#define LATHE_REQUIRE_FP8_GPU()                                                      \
  do {                                                                               \
    if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no GPU: CUDA tests skipped"; \
    if (!hasFp8TensorCores()) GTEST_SKIP() << "no fp8 tensor cores (needs sm_89+)";  \
  } while (false)

Backend& cpu() {
  return backendFor(DeviceType::cpu);
}
Backend& gpu() {
  return backendFor(DeviceType::cuda);
}

using test::relError;

TEST(CudaFp8, ScaleAndQuantizationAreBitExactWithTheReference) {
  if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no GPU: CUDA tests skipped";
  manualSeed(7);
  const Tensor hist = Tensor::fromVector(std::vector<double>{0.0, 3.5, INFINITY, 1.0}, {4});
  Tensor s_cpu = Tensor::empty({1}), si_cpu = Tensor::empty({1});
  Tensor s_gpu = Tensor::empty({1}, DType::f32, kGpu),
         si_gpu = Tensor::empty({1}, DType::f32, kGpu);
  cpu().fp8Scale(hist, 448.0, 1, s_cpu, si_cpu);
  gpu().fp8Scale(hist.to(kGpu), 448.0, 1, s_gpu, si_gpu);
  EXPECT_EQ(s_gpu.to(Device::cpu()).toDoubles(), s_cpu.toDoubles());
  EXPECT_EQ(si_gpu.to(Device::cpu()).toDoubles(), si_cpu.toDoubles());
  for (DType in : {DType::f32, DType::bf16})
    for (DType fmt : {DType::f8e4m3, DType::f8e5m2}) {
      const Tensor x = mul(test::uniform({37, 70}, -1, 1, DType::f32), 5.0).to(in);
      Tensor q = Tensor::empty({37, 70}, fmt), qt = Tensor::empty({70, 37}, fmt);
      Tensor qg = Tensor::empty({37, 70}, fmt, kGpu), qtg = Tensor::empty({70, 37}, fmt, kGpu);
      Tensor a = Tensor::empty({1}), ag = Tensor::empty({1}, DType::f32, kGpu);
      cpu().quantizeFp8(x, s_cpu, q, qt, a);
      gpu().quantizeFp8(x.to(kGpu), s_gpu, qg, qtg, ag);
      const std::string what = std::string(dtypeName(in)) + " -> " + dtypeName(fmt);
      EXPECT_EQ(qg.to(Device::cpu()).to(DType::f32).toDoubles(), q.to(DType::f32).toDoubles())
          << what;
      EXPECT_EQ(qtg.to(Device::cpu()).to(DType::f32).toDoubles(), qt.to(DType::f32).toDoubles())
          << what;
      EXPECT_EQ(ag.to(Device::cpu()).toDoubles(), a.toDoubles()) << what;
    }
}

TEST(CudaFp8, CublasLtGemmMatchesTheReference) {
  LATHE_REQUIRE_FP8_GPU();
  manualSeed(8);
  const int64_t M = 64, N = 128, K = 256;
  const Tensor sa = Tensor::fromVector(std::vector<double>{0.5}, {1});
  const Tensor sb = Tensor::fromVector(std::vector<double>{0.125}, {1});
  for (DType fa : {DType::f8e4m3, DType::f8e5m2})
    for (DType out_dtype : {DType::f32, DType::bf16}) {
      const Tensor a = mul(test::uniform({M, K}, -1, 1, DType::f32), 8.0).to(fa);
      const Tensor b = mul(test::uniform({N, K}, -1, 1, DType::f32), 8.0).to(DType::f8e4m3);
      const Tensor bias = test::uniform({N}, -1, 1, out_dtype);
      const Tensor* bp = out_dtype == DType::bf16 ? &bias : nullptr;
      Tensor out = Tensor::empty({M, N}, out_dtype);
      Tensor out_g = Tensor::empty({M, N}, out_dtype, kGpu);
      const Tensor bias_g = bias.to(kGpu);
      cpu().matmulFp8(a, b, sa, sb, bp, out);
      gpu().matmulFp8(a.to(kGpu), b.to(kGpu), sa.to(kGpu), sb.to(kGpu), bp ? &bias_g : nullptr,
                      out_g);
      // Hopper's fp8 tensor cores add products in a narrower accumulator than f32 (about 14
      // mantissa bits, as DeepSeek-V3's report measured; cuBLASLt promotes to f32 between
      // k-blocks), so the error scales with the partial sums, not with the (cancelling) outputs:
      // compare in norm.
      const double err = relError(out_g.to(Device::cpu()).to(DType::f32), out.to(DType::f32));
      EXPECT_LT(err, out_dtype == DType::bf16 ? 1e-2 : 2e-3)
          << "fp8 gemm " << dtypeName(fa) << " -> " << dtypeName(out_dtype);
    }
}

TEST(CudaFp8, LinearForwardAndBackwardMatchTheCpuEmulation) {
  LATHE_REQUIRE_FP8_GPU();
  manualSeed(9);
  const Tensor x = mul(randn({128, 64}), 2.0), w = mul(randn({96, 64}), 0.05);
  const Tensor b = mul(randn({96}), 0.1), gy = randn({128, 96}).to(DType::bf16);
  auto run = [&](Device d) {
    Tensor xd = x.to(d).detach().setRequiresGrad(true), wd = w.to(d).detach().setRequiresGrad(true);
    Tensor bd = b.to(d).detach().setRequiresGrad(true);
    Fp8State state;
    std::vector<Tensor> out;
    for (int step = 0; step < 2; ++step) {
      Fp8AutocastGuard guard(state);
      Tensor y = linear(xd, wd, bd);
      out = grad({y}, {gy.to(d)}, {xd, wd, bd});
      out.insert(out.begin(), y);
    }
    for (Tensor& t : out) t = t.to(Device::cpu()).to(DType::f32);
    return out;
  };
  const auto c = run(Device::cpu()), g = run(kGpu);
  const char* names[] = {"y", "dx", "dw", "db"};
  for (size_t i = 0; i < c.size(); ++i) EXPECT_LT(relError(g[i], c[i]), 1e-2) << names[i];
}

TEST(CudaFp8, AdamW8bitStepMatchesTheReference) {
  if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no GPU: CUDA tests skipped";
  manualSeed(10);
  for (int64_t block : {256, 2048}) {
    const int64_t n = 3 * block + 101, blocks = (n + block - 1) / block;
    const Tensor smap = Tensor::fromVector(optim::dynamicQuantizationMap(true), {256});
    const Tensor umap = Tensor::fromVector(optim::dynamicQuantizationMap(false), {256});
    Tensor p = test::uniform({n}, -1, 1, DType::f32);
    Tensor qm = Tensor::zeros({n}, DType::u8), qv = Tensor::zeros({n}, DType::u8);
    Tensor am = Tensor::zeros({blocks}), av = Tensor::zeros({blocks});
    Tensor pg = p.to(kGpu), qmg = qm.to(kGpu), qvg = qv.to(kGpu), amg = am.to(kGpu),
           avg = av.to(kGpu);
    const Tensor smapg = smap.to(kGpu), umapg = umap.to(kGpu);
    AdamWStep s;
    s.lr = 0.01;
    for (int step = 1; step <= 4; ++step) {
      s.step = step;
      const Tensor g = test::uniform({n}, -1, 1, DType::f32);
      cpu().adamw8bitStep(p, g, qm, am, qv, av, smap, umap, block, s);
      gpu().adamw8bitStep(pg, g.to(kGpu), qmg, amg, qvg, avg, smapg, umapg, block, s);
    }
    test::expectClose(pg.to(Device::cpu()), p, 1e-6, 1e-5, "adamw8bit param");
    test::expectClose(amg.to(Device::cpu()), am, 1e-7, 1e-5, "m absmax");
    test::expectClose(avg.to(Device::cpu()), av, 1e-9, 1e-5, "v absmax");
    // f32 rounding may move a value across a code boundary: allow a few codes off by one.
    const auto c1 = qmg.to(Device::cpu()).toDoubles(), c2 = qm.toDoubles();
    int64_t off = 0;
    for (size_t i = 0; i < c1.size(); ++i) {
      EXPECT_LE(std::abs(c1[i] - c2[i]), 1.0) << "code " << i;
      off += c1[i] != c2[i];
    }
    EXPECT_LE(off, n / 1000 + 1) << "m codes differing, block " << block;
  }
}

}  // namespace
}  // namespace lathe
