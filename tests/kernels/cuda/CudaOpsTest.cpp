// Every op the CUDA backend implements, against the CPU on fresh random inputs, with new GPU
// allocations poisoned (NaN bytes) so unwritten outputs fail. Skipped without a GPU; run for
// real by `scripts/lathe gpu-check` on the GPU machine.
#include <gtest/gtest.h>

#include <deque>
#include <string>

#include "kernels/cuda/CudaBackend.h"
#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

const Device kGpu = Device::cuda(0);

#define LATHE_REQUIRE_GPU()                                                          \
  do {                                                                               \
    if (!hasBackend(DeviceType::cuda)) GTEST_SKIP() << "no GPU: CUDA tests skipped"; \
    cuda::setPoisonAllocations(true);                                                \
  } while (false)

double tolFor(DType t) {
  return t == DType::f32 ? 1e-4 : (t == DType::f64 ? 1e-10 : 2e-2);
}

struct GpuCase {
  const char* name;
  std::vector<Shape> shapes;
  test::TensorFn fn;
  double lo = -1, hi = 1;
};

void PrintTo(const GpuCase& c, std::ostream* os) {
  *os << c.name;
}

// Runs fn with its backward on the CPU (f64 reference) and on the GPU in `dtype`.
void compareOnGpu(const GpuCase& c, DType dtype) {
  manualSeed(42);
  std::vector<Tensor> cpu_in, gpu_in;
  for (const Shape& s : c.shapes) {
    Tensor base =
        test::uniform(s, c.lo, c.hi, dtype).to(DType::f64);  // values representable in dtype
    cpu_in.push_back(base.clone().setRequiresGrad(true));
    gpu_in.push_back(base.to(dtype).to(kGpu).detach().setRequiresGrad(true));
  }
  Tensor cpu_out = c.fn(cpu_in), gpu_out = c.fn(gpu_in);
  ASSERT_EQ(gpu_out.device(), kGpu) << c.name;
  const double tol = tolFor(dtype);
  test::expectClose(gpu_out.to(Device::cpu()).to(DType::f64), cpu_out, tol, tol,
                    std::string(c.name) + " output");
  if (!cpu_out.requiresGrad()) return;
  Tensor w = test::uniform(cpu_out.shape(), 0.5, 1.5, dtype).to(DType::f64);
  std::vector<Tensor> gc = grad({cpu_out}, {w}, cpu_in);
  std::vector<Tensor> gg = grad({gpu_out}, {w.to(dtype).to(kGpu)}, gpu_in);
  for (size_t i = 0; i < gc.size(); ++i)
    test::expectClose(gg[i].to(Device::cpu()).to(DType::f64), gc[i], 4 * tol, 4 * tol,
                      std::string(c.name) + " grad " + std::to_string(i));
}

std::vector<GpuCase> cases() {
  return {
      {"add_broadcast", {{33, 17}, {17}}, [](auto& x) { return add(x[0], x[1]); }},
      {"mul_div",
       {{5, 1, 9}, {4, 9}},
       [](auto& x) { return div(mul(x[0], x[1]), add(square(x[1]), 1.0)); }},
      {"activations",
       {{1000}},
       [](auto& x) {
         return add(add(gelu(x[0]), gelu(x[0], true)),
                    add(silu(x[0]), add(sigmoid(x[0]), tanh(x[0]))));
       }},
      {"relu_exp_log",
       {{777}},
       [](auto& x) { return add(relu(x[0]), log(add(exp(x[0]), 1.0))); },
       -2,
       2},
      {"where_max",
       {{64, 3}, {64, 3}},
       [](auto& x) { return where(gt(x[0], 0.0), maximum(x[0], x[1]), minimum(x[0], x[1])); }},
      {"sum_mean_dims",
       {{6, 7, 300}},
       [](auto& x) {
         return add(sum(x[0], {0, 2}), mean(x[0].transpose(0, 1), {1, 2}));
       }},
      {"max_min", {{20, 513}}, [](auto& x) { return add(max(x[0], {1}), min(x[0], {1})); }},
      {"views_transpose",
       {{8, 16, 4}},
       [](auto& x) { return mul(x[0].transpose(0, 2).contiguous(), 2.0).slice(1, 1, 15, 3); }},
      {"concat_tril",
       {{4, 6}, {4, 6}},
       [](auto& x) {
         return tril(concat({x[0], x[1]}, 0), 1);
       }},
      {"matmul", {{65, 129}, {129, 31}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul_batched", {{3, 16, 40}, {3, 40, 24}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"linear_bias", {{10, 48}, {20, 48}, {20}}, [](auto& x) { return linear(x[0], x[1], x[2]); }},
      {"softmax_last", {{37, 1000}}, [](auto& x) { return mul(softmax(x[0], -1), 10.0); }, -4, 4},
      {"log_softmax_dim0", {{33, 7}}, [](auto& x) { return logSoftmax(x[0], 0); }, -4, 4},
      {"layer_norm",
       {{50, 300}, {300}, {300}},
       [](auto& x) { return layerNorm(x[0], x[1], x[2]); }},
      {"rms_norm", {{50, 300}, {300}}, [](auto& x) { return rmsNorm(x[0], x[1]); }},
      {"conv2d_groups",
       {{2, 4, 9, 9}, {6, 2, 3, 3}, {6}},
       [](auto& x) {
         Conv2dParams p;
         p.pad_h = p.pad_w = 1;
         p.stride_h = 2;
         p.groups = 2;
         return conv2d(x[0], x[1], x[2], p);
       }},
      {"max_avg_pool",
       {{2, 3, 9, 8}},
       [](auto& x) { return add(maxPool2d(x[0], 3, 2, 1), avgPool2d(x[0], 3, 2, 1)); }},
      {"batch_norm_train",
       {{8, 5, 4, 4}, {5}, {5}},
       [](auto& x) {
         Tensor rm = Tensor::zeros({5}, x[0].dtype(), x[0].device()),
                rv = Tensor::ones({5}, x[0].dtype(), x[0].device());
         return batchNorm(x[0], x[1], x[2], rm, rv, true);
       }},
      {"attention_causal",
       {{2, 4, 37, 64}, {2, 4, 37, 64}, {2, 4, 37, 64}},
       [](auto& x) { return scaledDotProductAttention(x[0], x[1], x[2], true); }},
      {"attention_gqa_t_ne_s",
       {{1, 4, 5, 32}, {1, 2, 70, 32}, {1, 2, 70, 32}},
       [](auto& x) { return scaledDotProductAttention(x[0], x[1], x[2], true); }},
      {"attention_padding_d128",
       {{2, 2, 40, 128}, {2, 2, 40, 128}, {2, 2, 40, 128}},
       [](auto& x) {
         std::vector<double> keep(80, 1.0);
         for (int j = 30; j < 40; ++j)
           keep[static_cast<size_t>(40 + j)] = 0.0;  // batch 1 pads 10 keys
         Tensor pad = Tensor::fromVector(keep, {2, 40}, DType::b8, x[0].device());
         return scaledDotProductAttention(x[0], x[1], x[2], false, pad);
       }},
      {"gather_dim1",
       {{6, 9}},
       [](auto& x) {
         Tensor idx = Tensor::fromVector(std::vector<int64_t>{0, 8, 3, 3, 1, 2, 7, 7, 0, 5, 4, 6},
                                         {6, 2}, DType::i64, x[0].device());
         return gather(x[0], 1, idx);
       }},
      {"embedding_repeats",
       {{11, 16}},
       [](auto& x) {
         Tensor ids = Tensor::fromVector(std::vector<int64_t>{3, 3, 0, 10, 3, 5}, {2, 3},
                                         DType::i64, x[0].device());
         return embedding(x[0], ids);
       }},
  };
}

class CudaOps : public ::testing::TestWithParam<GpuCase> {};

TEST_P(CudaOps, MatchesCpuInF32) {
  LATHE_REQUIRE_GPU();
  compareOnGpu(GetParam(), DType::f32);
}

TEST_P(CudaOps, MatchesCpuInBf16) {
  LATHE_REQUIRE_GPU();
  compareOnGpu(GetParam(), DType::bf16);
}

INSTANTIATE_TEST_SUITE_P(Gpu, CudaOps, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

// The fast paths of the elementwise and norm kernels at their edges: sizes not a multiple of the
// 16-byte pack, inputs at element offsets (misaligned), bias / column / scalar broadcasts, rows
// of 1..5000 elements (every threads-per-row choice, packed and element-wise), and one row too
// long for registers (the one-block-per-row kernels).
Tensor offsetRows(const Tensor& x, int64_t rows, int64_t cols, int64_t offset) {
  return x.slice(0, offset, offset + rows * cols).view({rows, cols});
}

// A case name that lives as long as the test registry (GpuCase holds a C string).
const char* caseName(std::string s) {
  static std::deque<std::string> names;
  return names.emplace_back(std::move(s)).c_str();
}

std::vector<GpuCase> fastPathCases() {
  std::vector<GpuCase> c = {
      {"add_odd_1003", {{1003}, {1003}}, [](auto& x) { return add(x[0], x[1]); }},
      {"mul_grid_stride", {{3, 70001}, {3, 70001}}, [](auto& x) { return mul(x[0], x[1]); }},
      {"sub_both_offset",
       {{1001}, {1001}},
       [](auto& x) { return sub(x[0].slice(0, 1, 1001), x[1].slice(0, 1, 1001)); }},
      {"add_offsets_differ",
       {{1001}, {1001}},
       [](auto& x) { return add(x[0].slice(0, 3, 1001), x[1].slice(0, 0, 998)); }},
      {"bias_add_768", {{64, 768}, {768}}, [](auto& x) { return add(x[0], x[1]); }},
      {"bias_add_first", {{768}, {24, 768}}, [](auto& x) { return add(x[0], x[1]); }},
      {"bias_add_odd_77", {{33, 77}, {77}}, [](auto& x) { return add(x[0], x[1]); }},
      {"bias_mul_offset",
       {{16, 128}, {129}},
       [](auto& x) { return mul(x[0], x[1].slice(0, 1, 129)); }},
      {"position_add_3d", {{4, 9, 40}, {9, 40}}, [](auto& x) { return add(x[0], x[1]); }},
      {"column_broadcast", {{40, 96}, {40, 1}}, [](auto& x) { return sub(x[0], x[1]); }},
      {"column_broadcast_odd", {{7, 13}, {7, 1}}, [](auto& x) { return mul(x[1], x[0]); }},
      {"scalar_broadcast", {{999}, {1}}, [](auto& x) { return mul(x[0], x[1]); }},
      {"div_square_odd", {{517}, {517}}, [](auto& x) { return div(x[0], add(square(x[1]), 1.0)); }},
      {"unary_offset", {{2005}}, [](auto& x) { return gelu(x[0].slice(0, 5, 2005)); }},
      {"unary_odd_chain", {{4099}}, [](auto& x) { return add(silu(x[0]), mul(tanh(x[0]), 3.0)); }},
      {"compare_where_odd",
       {{1003}, {1003}},
       [](auto& x) { return where(gt(x[0], x[1]), x[0], mul(x[1], 2.0)); }},
      {"layer_norm_no_affine_768",
       {{33, 768}},
       [](auto& x) { return layerNorm(x[0], Tensor(), Tensor()); }},
      {"layer_norm_offset_rows",
       {{1 + 6 * 256}, {256}, {256}},
       [](auto& x) { return layerNorm(offsetRows(x[0], 6, 256, 1), x[1], x[2]); }},
      {"rms_norm_offset_rows",
       {{3 + 5 * 520}, {520}},
       [](auto& x) { return rmsNorm(offsetRows(x[0], 5, 520, 3), x[1]); }},
      {"layer_norm_weight_only_1500",
       {{7, 1500}, {1500}},
       [](auto& x) { return layerNorm(x[0], x[1], Tensor()); }},
      {"layer_norm_many_rows",
       {{3000, 64}, {64}, {64}},
       [](auto& x) { return layerNorm(x[0], x[1], x[2]); }},
      {"rms_norm_many_rows_odd", {{2001, 100}, {100}}, [](auto& x) { return rmsNorm(x[0], x[1]); }},
      {"layer_norm_too_long_for_registers",
       {{3, 20000}, {20000}, {20000}},
       [](auto& x) { return layerNorm(x[0], x[1], x[2]); }},
  };
  for (int64_t C : {1, 2, 3, 5, 8, 31, 64, 300, 767, 768, 1024, 1025, 2051, 4096, 5000}) {
    c.push_back({caseName("layer_norm_c" + std::to_string(C)), {{9, C}, {C}, {C}}, [](auto& x) {
                   return layerNorm(x[0], x[1], x[2]);
                 }});
    c.push_back({caseName("rms_norm_c" + std::to_string(C)), {{9, C}, {C}}, [](auto& x) {
                   return rmsNorm(x[0], x[1]);
                 }});
  }
  return c;
}

class CudaFastPaths : public ::testing::TestWithParam<GpuCase> {};

TEST_P(CudaFastPaths, MatchesCpuInF32) {
  LATHE_REQUIRE_GPU();
  compareOnGpu(GetParam(), DType::f32);
}

TEST_P(CudaFastPaths, MatchesCpuInBf16) {
  LATHE_REQUIRE_GPU();
  compareOnGpu(GetParam(), DType::bf16);
}

TEST_P(CudaFastPaths, MatchesCpuInF16) {
  LATHE_REQUIRE_GPU();
  compareOnGpu(GetParam(), DType::f16);
}

INSTANTIATE_TEST_SUITE_P(Gpu, CudaFastPaths, ::testing::ValuesIn(fastPathCases()),
                         [](const auto& info) { return std::string(info.param.name); });

// The output at an element offset too (the op layer always allocates it aligned): every
// combination of output / input misalignment takes the packed head-body-tail path or the scalar
// one, writes exactly the n elements of its view, and matches the CPU backend.
TEST(CudaBackend, FlatElementwiseAtEveryAlignment) {
  LATHE_REQUIRE_GPU();
  manualSeed(21);
  Backend& cpu = backendFor(DeviceType::cpu);
  Backend& gpu = backendFor(DeviceType::cuda);
  const int64_t offsets[][3] = {{0, 0, 0}, {1, 1, 1}, {3, 3, 3}, {7, 7, 7}, {1, 0, 1}, {0, 2, 5}};
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    // The last size makes every block of the one-wave grid loop several times.
    for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{8}, int64_t{13}, int64_t{64}, int64_t{1000},
                      int64_t{4101}, (int64_t{1} << 23) + 3}) {
      Tensor xc = test::uniform({n + 8}, -2, 2, dtype), yc = test::uniform({n + 8}, -2, 2, dtype);
      Tensor xg = xc.to(kGpu), yg = yc.to(kGpu);
      for (const auto& o : offsets) {
        if (n > 5000 && o[0] != o[1]) continue;  // the large size: packed paths only (time)
        const std::string what = std::string(dtypeName(dtype)) + " n=" + std::to_string(n) +
                                 " offsets " + std::to_string(o[0]) + "," + std::to_string(o[1]) +
                                 "," + std::to_string(o[2]);
        auto view = [&](const Tensor& t, int64_t off) { return t.slice(0, off, off + n); };
        for (DType out_dtype : {dtype, DType::b8}) {
          const bool compare = out_dtype == DType::b8;
          Tensor oc = Tensor::zeros({n + 8}, out_dtype);
          Tensor og = Tensor::empty({n + 8}, out_dtype, kGpu);
          const BinaryOp op = compare ? BinaryOp::lt : BinaryOp::mul;
          cpu.binary(op, view(xc, o[1]), view(yc, o[2]), view(oc, o[0]));
          gpu.binary(op, view(xg, o[1]), view(yg, o[2]), view(og, o[0]));
          Tensor got = og.to(Device::cpu());
          test::expectClose(view(got, o[0]).to(DType::f64), view(oc, o[0]).to(DType::f64),
                            tolFor(dtype), tolFor(dtype), what + (compare ? " lt" : " mul"));
          if (!compare) {  // the poisoned (NaN) elements around the view are untouched
            const std::vector<double> all = got.toDoubles();
            int64_t outside = 0;
            for (int64_t i = 0; i < n + 8; ++i)
              if ((i < o[0] || i >= o[0] + n) && !std::isnan(all[static_cast<size_t>(i)]))
                ++outside;
            EXPECT_EQ(outside, 0) << what << ": wrote outside its output view";
          }
        }
        Tensor uc = Tensor::zeros({n + 8}, dtype), ug = Tensor::empty({n + 8}, dtype, kGpu);
        cpu.unary(UnaryOp::affine, view(xc, o[1]), view(uc, o[0]), 1.5, -0.25);
        gpu.unary(UnaryOp::affine, view(xg, o[1]), view(ug, o[0]), 1.5, -0.25);
        test::expectClose(view(ug.to(Device::cpu()), o[0]).to(DType::f64),
                          view(uc, o[0]).to(DType::f64), tolFor(dtype), tolFor(dtype),
                          what + " affine");
      }
    }
  }
}

TEST(CudaBackend, CrossEntropyMatchesCpu) {
  LATHE_REQUIRE_GPU();
  manualSeed(11);
  Tensor logits = test::uniform({64, 1000}, -5, 5, DType::f32);
  Tensor target = randint(0, 1000, {64});
  NoGradGuard off;
  target.slice(0, 0, 3).fill_(-100);  // ignored rows
  EnableGradGuard on;
  for (double smoothing : {0.0, 0.1}) {
    Tensor lc = logits.detach().setRequiresGrad(true);
    Tensor lg = logits.to(kGpu).detach().setRequiresGrad(true);
    Tensor a = crossEntropy(lc, target, -100, smoothing);
    Tensor b = crossEntropy(lg, target.to(kGpu), -100, smoothing);
    test::expectClose(b.to(Device::cpu()), a, 1e-5, 1e-5, "loss");
    a.backward();
    b.backward();
    test::expectClose(lg.grad().to(Device::cpu()), lc.grad(), 1e-6, 1e-4, "grad");
  }
}

TEST(CudaBackend, FusedOptimizerStepsMatchCpu) {
  LATHE_REQUIRE_GPU();
  manualSeed(8);
  const int64_t n = 100003;
  Tensor p = test::uniform({n}, -1, 1, DType::f32), g = test::uniform({n}, -1, 1, DType::f32);
  Tensor m = test::uniform({n}, -0.1, 0.1, DType::f32), v = test::uniform({n}, 0, 0.1, DType::f32);
  Tensor pg = p.to(kGpu), gg = g.to(kGpu), mg = m.to(kGpu), vg = v.to(kGpu);
  AdamWStep s;
  s.step = 3;
  backendFor(DeviceType::cpu).adamwStep(p, g, m, v, s);
  backendFor(DeviceType::cuda).adamwStep(pg, gg, mg, vg, s);
  test::expectClose(pg.to(Device::cpu()), p, 1e-6, 1e-5, "adamw param");
  test::expectClose(vg.to(Device::cpu()), v, 1e-7, 1e-5, "adamw v");
  SgdStep sg;
  sg.momentum = 0.9;
  sg.nesterov = true;
  Tensor buf = Tensor::zeros({n}), bufg = buf.to(kGpu);
  backendFor(DeviceType::cpu).sgdStep(p, g, buf, sg);
  backendFor(DeviceType::cuda).sgdStep(pg, gg, bufg, sg);
  test::expectClose(pg.to(Device::cpu()), p, 1e-6, 1e-5, "sgd param");
}

TEST(CudaBackend, CopiesRoundTripStridedAndConverted) {
  LATHE_REQUIRE_GPU();
  Tensor h = test::uniform({7, 9, 5}, -3, 3, DType::f32);
  Tensor g = h.to(kGpu);
  EXPECT_EQ(g.to(Device::cpu()).toFloats(), h.toFloats());
  Tensor gt = g.permute({2, 0, 1});
  test::expectClose(gt.contiguous().to(Device::cpu()), h.permute({2, 0, 1}).contiguous(), 0, 0,
                    "permute");
  test::expectClose(g.to(DType::bf16).to(Device::cpu()), h.to(DType::bf16), 0, 0, "bf16 on device");
  Tensor dst = Tensor::zeros({9, 7}, DType::f64, kGpu);
  dst.copy_(h.select(2, 1).transpose(0, 1));
  test::expectClose(dst.to(Device::cpu()), h.select(2, 1).transpose(0, 1).to(DType::f64), 0, 0,
                    "h2d strided");
}

TEST(CudaBackend, RandomStreamMatchesCpu) {
  LATHE_REQUIRE_GPU();
  manualSeed(5);
  Tensor a = randn({1000});
  Tensor d0 = dropout(Tensor::ones({999}), 0.3, true);
  manualSeed(5);
  Tensor b = randn({1000}, DType::f32, kGpu);
  Tensor d1 = dropout(Tensor::ones({999}, DType::f32, kGpu), 0.3, true);
  test::expectClose(b.to(Device::cpu()), a, 1e-6, 1e-6, "randn");
  EXPECT_EQ(d1.to(Device::cpu()).toFloats(), d0.toFloats());
}

TEST(CudaBackend, SteadyStateStepsMakeNoCudaMalloc) {
  LATHE_REQUIRE_GPU();
  manualSeed(3);
  Tensor w1 = mul(randn({256, 128}, DType::f32, kGpu), 0.05).detach().setRequiresGrad(true);
  Tensor w2 = mul(randn({10, 256}, DType::f32, kGpu), 0.05).detach().setRequiresGrad(true);
  Tensor x = randn({64, 128}, DType::f32, kGpu), y = randn({64, 10}, DType::f32, kGpu);
  auto step = [&] {
    Tensor loss = mean(square(sub(linear(relu(linear(x, w1)), w2), y)));
    loss.backward();
    NoGradGuard g;
    for (Tensor* w : {&w1, &w2}) {
      Tensor upd = sub(*w, mul(w->grad(), 0.1));
      w->copy_(upd);
      w->zeroGrad();
    }
  };
  step();
  step();
  const int64_t before = allocatorFor(kGpu).stats().system_allocations;
  for (int i = 0; i < 5; ++i) step();
  EXPECT_EQ(allocatorFor(kGpu).stats().system_allocations, before);
}

TEST(CudaBackend, OutOfMemoryIsAClearErrorAndTheProcessGoesOn) {
  LATHE_REQUIRE_GPU();
  try {
    Tensor::empty({int64_t{1} << 48}, DType::f32, kGpu);  // 1 PiB
    FAIL() << "expected out of memory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
  Tensor ok = Tensor::ones({16}, DType::f32, kGpu);
  EXPECT_EQ(sum(ok).item(), 16.0);
}

}  // namespace
}  // namespace lathe
