// The fused attention paths against the CPU reference attention in f32 on the same
// (f16/bf16-rounded) inputs: output, lse, dQ, dK, dV, for bf16 and f16, head dims 64 and 128,
// causal or not, T == S and T != S (both ways, so causal rows with no visible key occur), GQA,
// key padding with fully masked rows, odd lengths and multi-block sizes. Every case runs twice:
// _own calls our tensor-core kernel (kernels/cuda/FlashAttention.cu) directly (it must accept
// these cases); _cudnn goes through cuDNN's SDPA (kernels/cuda/CudnnAttention.cpp) where it takes
// the case and checks that it declines the ones it must (key padding, causal with T > S), which
// then run on our kernel as CudaBackend does; a cuDNN forward also feeds our backward (the lse
// conventions agree). The op-level path through CudaBackend::attention / attentionBackward is
// checked end to end under LATHE_ATTENTION=own and =cudnn. GPU allocations are poisoned, so
// anything the kernels leave unwritten fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda/CudaBackend.h"
#include "kernels/cuda/CudnnAttention.h"
#include "kernels/cuda/FlashAttention.h"
#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

const Device kGpu = Device::cuda(0);

#define LATHE_REQUIRE_GPU()                                                          \
  do {                                                                               \
    if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no GPU: CUDA tests skipped"; \
    cuda::setPoisonAllocations(true);                                                \
  } while (false)

enum class Pad { none, some, rows };  // rows: padding that leaves whole rows with no key

struct FlashCase {
  std::string name;
  DType dtype;
  int64_t B, H, Hkv, T, S, D;
  bool causal;
  Pad pad = Pad::none;
  double scale = 0.0;
};

void PrintTo(const FlashCase& c, std::ostream* os) {
  *os << c.name;
}

// Key padding [B, S] (true = attend). some: batch 0 drops every 7th key, the last batch keeps
// only its first third. rows: batch 0 drops keys 0..2 (with causal T == S rows 0..2 see
// nothing), the last batch drops every key.
Tensor makePadding(const FlashCase& c) {
  std::vector<double> keep(static_cast<size_t>(c.B * c.S), 1.0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j < c.S; ++j) {
      double& v = keep[static_cast<size_t>(b * c.S + j)];
      const bool last = b == c.B - 1 && c.B > 1;
      if (c.pad == Pad::some) v = (b == 0 ? j % 7 != 3 : (!last || j < c.S / 3)) ? 1.0 : 0.0;
      if (c.pad == Pad::rows) v = (b == 0 ? j > 2 : !last) ? 1.0 : 0.0;
    }
  return Tensor::fromVector(keep, {c.B, c.S}, DType::b8);
}

// |got - want| <= tol * (max |want| + |want|) element-wise; -inf must match exactly.
void expectNear(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<double> a = got.to(Device::cpu()).toDoubles(), e = want.toDoubles();
  double emax = 0;
  for (double x : e)
    if (std::isfinite(x)) emax = std::max(emax, std::abs(x));
  int reported = 0;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isinf(e[i]) || std::isinf(a[i])) {
      if (a[i] != e[i] && reported++ < 5)
        ADD_FAILURE() << what << ": element " << i << " is " << a[i] << ", expected " << e[i];
      continue;
    }
    const double err = std::abs(a[i] - e[i]);
    worst = std::max(worst, err / (emax > 0 ? emax : 1));
    if (!(err <= tol * (emax + std::abs(e[i]))) && reported++ < 5)
      ADD_FAILURE() << what << ": element " << i << " is " << a[i] << ", expected " << e[i]
                    << " (max |expected| " << emax << ", tol " << tol << ")";
  }
  ::testing::Test::RecordProperty(what + " worst", std::to_string(worst));
}

// Rows whose reference lse is -inf must have exactly zero output and zero dQ.
void expectZeroRows(const Tensor& lse_ref, const Tensor& rows_gpu, int64_t D,
                    const std::string& what) {
  const std::vector<double> l = lse_ref.toDoubles();
  const std::vector<double> r = rows_gpu.to(Device::cpu()).toDoubles();
  int reported = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    if (!(std::isinf(l[i]) && l[i] < 0)) continue;
    for (int64_t d = 0; d < D; ++d)
      if (r[i * static_cast<size_t>(D) + static_cast<size_t>(d)] != 0.0 && reported++ < 5)
        ADD_FAILURE() << what << ": row " << i << " has no visible key but element " << d << " is "
                      << r[i * static_cast<size_t>(D) + static_cast<size_t>(d)];
  }
}

enum class Path { own, cudnn };

// Sets LATHE_ATTENTION for a scope (the backend reads it on every call).
class AttentionPathScope {
 public:
  explicit AttentionPathScope(Path p) {
    const char* old = std::getenv("LATHE_ATTENTION");
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv("LATHE_ATTENTION", p == Path::own ? "own" : "cudnn", 1);
  }
  ~AttentionPathScope() {
    if (had_)
      setenv("LATHE_ATTENTION", old_.c_str(), 1);
    else
      unsetenv("LATHE_ATTENTION");
  }
  AttentionPathScope(const AttentionPathScope&) = delete;
  AttentionPathScope& operator=(const AttentionPathScope&) = delete;

 private:
  bool had_ = false;
  std::string old_;
};

const char* pathName(Path p) {
  return p == Path::own ? "own" : "cudnn";
}

class FlashAttention : public ::testing::TestWithParam<std::tuple<FlashCase, Path>> {};

TEST_P(FlashAttention, MatchesCpuReference) {
  LATHE_REQUIRE_GPU();
  const FlashCase& c = std::get<0>(GetParam());
  const Path path = std::get<1>(GetParam());
  if (path == Path::cudnn && !cuda::cudnnAttentionCompiled())
    GTEST_SKIP() << "built without the cuDNN frontend (LATHE_CUDNN_FRONTEND_DIR)";
  manualSeed(17);
  const Shape qs{c.B, c.H, c.T, c.D}, ks{c.B, c.Hkv, c.S, c.D};
  // Inputs rounded to the dtype once; the CPU sees them in f32. q and k in [-2, 2) give peaked
  // softmax rows (scores of a few units after scaling), so masking mistakes show.
  auto input = [&](const Shape& s, double a) {
    return test::uniform(s, -a, a, DType::f32).to(c.dtype).to(DType::f32);
  };
  const Tensor q = input(qs, 2.0), k = input(ks, 2.0), v = input(ks, 1.0), go = input(qs, 1.0);
  const Tensor pad = c.pad == Pad::none ? Tensor() : makePadding(c);
  const AttentionParams params{c.causal, c.scale};

  // CPU reference (f32).
  Backend& ref = cpu::referenceBackend();
  Tensor out_r = Tensor::empty(qs, DType::f32), lse_r = Tensor::empty({c.B, c.H, c.T}, DType::f32);
  ref.attention(q, k, v, pad.defined() ? &pad : nullptr, params, out_r, lse_r);
  Tensor gq_r = Tensor::empty(qs, DType::f32), gk_r = Tensor::empty(ks, DType::f32),
         gv_r = Tensor::empty(ks, DType::f32);
  ref.attentionBackward(q, k, v, pad.defined() ? &pad : nullptr, params, out_r, lse_r, go, gq_r,
                        gk_r, gv_r);

  // GPU: our tensor-core kernel called directly, or cuDNN where it takes the case.
  const Tensor qd = q.to(c.dtype).to(kGpu), kd = k.to(c.dtype).to(kGpu),
               vd = v.to(c.dtype).to(kGpu), god = go.to(c.dtype).to(kGpu);
  const Tensor padd = pad.defined() ? pad.to(kGpu) : Tensor();
  const Tensor* padp = padd.defined() ? &padd : nullptr;
  ASSERT_TRUE(cuda::flashAttentionSupports(qd, kd, params)) << c.name;
  bool use_cudnn = false;
  if (path == Path::cudnn) {
    use_cudnn = cuda::cudnnAttentionSupports(qd, kd, padp, params);
    const bool declines = c.pad != Pad::none || (c.causal && c.T > c.S) || (c.T < 64 && c.T != c.S);
    if (declines)
      EXPECT_FALSE(use_cudnn) << c.name
                              << ": cuDNN must decline key padding, causal T > S, decode shapes";
    else if (!use_cudnn)
      std::cout << "[  NOTE    ] " << c.name << ": cuDNN declined (run with "
                << "LATHE_ATTENTION_VERBOSE=1 for why); checked on our kernel\n";
    ::testing::Test::RecordProperty("cudnn", use_cudnn ? "yes" : "no");
  }
  Tensor out = Tensor::empty(qs, c.dtype, kGpu),
         lse = Tensor::empty({c.B, c.H, c.T}, DType::f32, kGpu);
  if (use_cudnn)
    ASSERT_TRUE(cuda::cudnnAttentionForward(qd, kd, vd, padp, params, out, lse));
  else
    ASSERT_TRUE(cuda::flashAttentionForward(qd, kd, vd, padp, params, out, lse));
  Tensor gq = Tensor::empty(qs, c.dtype, kGpu), gk = Tensor::empty(ks, c.dtype, kGpu),
         gv = Tensor::empty(ks, c.dtype, kGpu);
  if (use_cudnn)
    ASSERT_TRUE(cuda::cudnnAttentionBackward(qd, kd, vd, padp, params, out, lse, god, gq, gk, gv));
  else
    ASSERT_TRUE(cuda::flashAttentionBackward(qd, kd, vd, padp, params, out, lse, god, gq, gk, gv));
  backendFor(DeviceType::cuda).synchronize(0);

  if (use_cudnn) {  // cuDNN's out and Stats through our backward: the same lse convention
    Tensor gq2 = Tensor::empty(qs, c.dtype, kGpu), gk2 = Tensor::empty(ks, c.dtype, kGpu),
           gv2 = Tensor::empty(ks, c.dtype, kGpu);
    ASSERT_TRUE(
        cuda::flashAttentionBackward(qd, kd, vd, padp, params, out, lse, god, gq2, gk2, gv2));
    expectNear(gq2, gq_r, 3e-2, c.name + " dq (cuDNN forward, own backward)");
    expectNear(gk2, gk_r, 3e-2, c.name + " dk (cuDNN forward, own backward)");
    expectNear(gv2, gv_r, 3e-2, c.name + " dv (cuDNN forward, own backward)");
  }

  expectNear(out, out_r, 1e-2, c.name + " out");
  expectNear(lse, lse_r, 1e-3, c.name + " lse");
  expectNear(gq, gq_r, 3e-2, c.name + " dq");
  expectNear(gk, gk_r, 3e-2, c.name + " dk");
  expectNear(gv, gv_r, 3e-2, c.name + " dv");
  expectZeroRows(lse_r, out, c.D, c.name + " out");
  expectZeroRows(lse_r, gq, c.D, c.name + " dq");
}

std::vector<FlashCase> flashCases() {
  std::vector<FlashCase> cs;
  struct Len {
    const char* tag;
    int64_t T, S;
  };
  // Equal, odd T < S (bottom-right causal), odd T > S (leading causal rows see no key), and
  // several 128-row blocks with partial tiles.
  const Len lens[] = {{"t256_s256", 256, 256},
                      {"t77_s130", 77, 130},
                      {"t130_s77", 130, 77},
                      {"t333_s333", 333, 333}};
  for (DType dt : {DType::bf16, DType::f16})
    for (int64_t D : {64, 128})
      for (bool causal : {false, true})
        for (const Len& l : lens) {
          const std::string name = std::string(dt == DType::bf16 ? "bf16" : "f16") + "_d" +
                                   std::to_string(D) + (causal ? "_causal_" : "_full_") + l.tag;
          cs.push_back({name, dt, 2, 3, 3, l.T, l.S, D, causal});
        }
  // GQA (H = 8 over Hkv = 2), with and without causal, T != S.
  cs.push_back({"bf16_d64_gqa_causal_t200_s200", DType::bf16, 1, 8, 2, 200, 200, 64, true});
  cs.push_back({"bf16_d128_gqa_full_t100_s300", DType::bf16, 2, 8, 2, 100, 300, 128, false});
  cs.push_back({"f16_d128_gqa_causal_t300_s100", DType::f16, 1, 8, 2, 300, 100, 128, true});
  // Key padding, including rows and a whole batch with no visible key.
  cs.push_back({"bf16_d64_pad_full", DType::bf16, 2, 2, 2, 150, 190, 64, false, Pad::some});
  cs.push_back({"bf16_d128_pad_causal", DType::bf16, 2, 2, 2, 150, 150, 128, true, Pad::some});
  cs.push_back({"bf16_d64_padrows_causal", DType::bf16, 2, 4, 2, 150, 150, 64, true, Pad::rows});
  cs.push_back({"f16_d128_padrows_full", DType::f16, 3, 2, 1, 70, 129, 128, false, Pad::rows});
  // A longer causal sequence (many tiles, heaviest-first block order) and a custom scale.
  cs.push_back({"bf16_d64_causal_t1024", DType::bf16, 1, 2, 2, 1024, 1024, 64, true});
  cs.push_back({"bf16_d128_causal_t1000_scale", DType::bf16, 1, 2, 1, 1000, 1000, 128, true,
                Pad::none, 0.3});
  // Long sequences over one or two heads (B * H small): many K/V tiles per forward block and
  // many query steps per backward block, so the forward's K/V ring (3 stages at D 64, 2 at
  // D 128) and the backward's double-buffered dS^T with its deferred dQ wrap around many times,
  // across query heads of a GQA group too.
  cs.push_back({"bf16_d128_causal_t2048_bh1", DType::bf16, 1, 1, 1, 2048, 2048, 128, true});
  cs.push_back({"bf16_d64_causal_t2048_bh1", DType::bf16, 1, 1, 1, 2048, 2048, 64, true});
  cs.push_back({"bf16_d64_gqa_full_t1536", DType::bf16, 1, 2, 1, 1536, 1536, 64, false});
  cs.push_back({"f16_d64_gqa_causal_t1100_s1300", DType::f16, 1, 4, 1, 1100, 1300, 64, true});
  cs.push_back({"f16_d128_gqa_causal_t1300_s1100", DType::f16, 1, 2, 1, 1300, 1100, 128, true});
  // Large scales: scores of many units (peaked rows, running maxima that jump between K/V
  // tiles), with padding and GQA at D 128 (the backward's split warp pairs).
  cs.push_back(
      {"bf16_d64_causal_t700_scale", DType::bf16, 1, 2, 2, 700, 700, 64, true, Pad::none, 0.5});
  cs.push_back({"f16_d128_pad_full_t300_s600_scale", DType::f16, 2, 2, 1, 300, 600, 128, false,
                Pad::some, 0.4});
  return cs;
}

INSTANTIATE_TEST_SUITE_P(Gpu, FlashAttention,
                         ::testing::Combine(::testing::ValuesIn(flashCases()),
                                            ::testing::Values(Path::own, Path::cudnn)),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" +
                                  pathName(std::get<1>(info.param));
                         });

TEST(FlashAttentionDispatch, DeclinesUnsupportedCases) {
  LATHE_REQUIRE_GPU();
  const AttentionParams p{true, 0.0};
  auto t = [](int64_t D, DType dt) { return Tensor::zeros({1, 2, 16, D}, dt, kGpu); };
  EXPECT_TRUE(cuda::flashAttentionSupports(t(64, DType::bf16), t(64, DType::bf16), p));
  EXPECT_TRUE(cuda::flashAttentionSupports(t(128, DType::f16), t(128, DType::f16), p));
  EXPECT_FALSE(cuda::flashAttentionSupports(t(32, DType::bf16), t(32, DType::bf16), p));
  EXPECT_FALSE(cuda::flashAttentionSupports(t(96, DType::bf16), t(96, DType::bf16), p));
  EXPECT_FALSE(cuda::flashAttentionSupports(t(64, DType::f32), t(64, DType::f32), p));
  EXPECT_FALSE(cuda::flashAttentionSupports(t(64, DType::bf16), t(64, DType::bf16),
                                            AttentionParams{false, -0.5}));
  Tensor q = t(32, DType::bf16), out = Tensor::empty({1, 2, 16, 32}, DType::bf16, kGpu),
         lse = Tensor::empty({1, 2, 16}, DType::f32, kGpu);
  EXPECT_FALSE(cuda::flashAttentionForward(q, q, q, nullptr, p, out, lse));
}

// cuDNN declines what it cannot express as we define it (and decode shapes), and (when compiled
// in) takes the plain causal self-attention shapes the bench and the GPT models use.
TEST(CudnnAttentionDispatch, DeclinesAndTakes) {
  LATHE_REQUIRE_GPU();
  if (!cuda::cudnnAttentionCompiled()) {
    const Tensor q = Tensor::zeros({1, 2, 64, 64}, DType::bf16, kGpu);
    EXPECT_FALSE(cuda::cudnnAttentionSupports(q, q, nullptr, AttentionParams{true, 0.0}));
    GTEST_SKIP() << "built without the cuDNN frontend (LATHE_CUDNN_FRONTEND_DIR)";
  }
  auto t = [](int64_t T, int64_t D, DType dt) { return Tensor::zeros({1, 2, T, D}, dt, kGpu); };
  const AttentionParams causal{true, 0.0}, full{false, 0.0};
  const Tensor pad = Tensor::ones({1, 64}, DType::b8, kGpu);
  EXPECT_FALSE(
      cuda::cudnnAttentionSupports(t(64, 64, DType::bf16), t(64, 64, DType::bf16), &pad, causal));
  EXPECT_FALSE(cuda::cudnnAttentionSupports(t(128, 64, DType::bf16), t(64, 64, DType::bf16),
                                            nullptr, causal));
  EXPECT_FALSE(
      cuda::cudnnAttentionSupports(t(64, 64, DType::f32), t(64, 64, DType::f32), nullptr, causal));
  EXPECT_FALSE(cuda::cudnnAttentionSupports(t(1, 64, DType::bf16), t(300, 64, DType::bf16), nullptr,
                                            causal));  // decoding with a KV cache
  for (DType dt : {DType::bf16, DType::f16})
    for (int64_t D : {64, 128})
      for (int64_t T : {256, 1024}) {
        EXPECT_TRUE(cuda::cudnnAttentionSupports(t(T, D, dt), t(T, D, dt), nullptr, causal))
            << dtypeName(dt) << " D" << D << " T" << T << " causal";
        EXPECT_TRUE(cuda::cudnnAttentionSupports(t(T, D, dt), t(T, D, dt), nullptr, full))
            << dtypeName(dt) << " D" << D << " T" << T;
      }
}

// End to end through scaledDotProductAttention and autograd on cuda (the hooks in
// CudaBackend::attention / attentionBackward), against the same op on the CPU in f32.
TEST(FlashAttentionOp, AutogradMatchesCpu) {
  LATHE_REQUIRE_GPU();
  for (Path path : {Path::own, Path::cudnn}) {
    AttentionPathScope scope(path);
    // D 64 and 128 (our tensor-core kernel or cuDNN), 96 (cuDNN or the generic kernel).
    for (DType dt : {DType::bf16, DType::f16})
      for (int64_t D : {64, 96, 128}) {
        manualSeed(23);
        const std::string name = std::string(pathName(path)) + "_" +
                                 (dt == DType::bf16 ? "bf16" : "f16") + "_d" + std::to_string(D);
        auto input = [&](const Shape& s, double a) {
          return test::uniform(s, -a, a, DType::f32).to(dt).to(DType::f32);
        };
        const Shape qs{2, 4, 95, D}, ks{2, 2, 95, D};
        const Tensor q = input(qs, 2.0), k = input(ks, 2.0), v = input(ks, 1.0), w = input(qs, 1.0);
        std::vector<Tensor> cpu_in{q.clone().setRequiresGrad(true), k.clone().setRequiresGrad(true),
                                   v.clone().setRequiresGrad(true)};
        std::vector<Tensor> gpu_in{q.to(dt).to(kGpu).detach().setRequiresGrad(true),
                                   k.to(dt).to(kGpu).detach().setRequiresGrad(true),
                                   v.to(dt).to(kGpu).detach().setRequiresGrad(true)};
        Tensor oc = scaledDotProductAttention(cpu_in[0], cpu_in[1], cpu_in[2], true);
        Tensor og = scaledDotProductAttention(gpu_in[0], gpu_in[1], gpu_in[2], true);
        ASSERT_EQ(og.device(), kGpu);
        expectNear(og, oc, 1e-2, name + " out");
        std::vector<Tensor> gc = grad({oc}, {w}, cpu_in);
        std::vector<Tensor> gg = grad({og}, {w.to(dt).to(kGpu)}, gpu_in);
        ASSERT_EQ(gc.size(), 3u);
        ASSERT_EQ(gg.size(), 3u);
        for (size_t i = 0; i < 3; ++i)
          expectNear(gg[i], gc[i], 3e-2, name + " grad " + std::to_string(i));
      }
  }
}

}  // namespace
}  // namespace lathe
