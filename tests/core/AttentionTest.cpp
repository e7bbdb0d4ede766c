// Fused scaled dot-product attention: f64 gradcheck over the masking variants, outputs and
// gradients against a naive attention written here with plain loops (no other ops involved),
// the fast f32 path against the reference, argument errors, and the memory bound (no [T, S]
// matrix is ever allocated).
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

enum class Pad { none, some, batch0_all };  // batch0_all: every key of batch 0 masked out

struct Case {
  const char* name;
  int64_t B, H, Hkv, T, S, D;
  bool causal = false;
  Pad pad = Pad::none;
  double scale = 0.0;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

Tensor req(Tensor t) {
  return t.setRequiresGrad(true);
}

// Key padding (true = attend) for a case, or an undefined tensor.
Tensor makePad(const Case& c) {
  if (c.pad == Pad::none) return Tensor();
  std::vector<double> m(static_cast<size_t>(c.B * c.S));
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j < c.S; ++j)
      m[static_cast<size_t>(b * c.S + j)] =
          (c.pad == Pad::batch0_all && b == 0) ? 0.0 : ((b + 2 * j) % 3 != 0 ? 1.0 : 0.0);
  return Tensor::fromVector(m, {c.B, c.S}, DType::b8);
}

struct Inputs {
  Tensor q, k, v, pad;
};

Inputs makeInputs(const Case& c, DType dtype = DType::f64) {
  Inputs in;
  in.q = test::uniform({c.B, c.H, c.T, c.D}, -1.5, 1.5, dtype);
  in.k = test::uniform({c.B, c.Hkv, c.S, c.D}, -1.5, 1.5, dtype);
  in.v = test::uniform({c.B, c.Hkv, c.S, c.D}, -1.0, 1.0, dtype);
  in.pad = makePad(c);
  return in;
}

Tensor attend(const Case& c, const std::vector<Tensor>& x, const Tensor& pad) {
  return scaledDotProductAttention(x[0], x[1], x[2], c.causal, pad, c.scale);
}

// ---- naive attention on std::vector<double>: full score rows, plain softmax ----

struct Naive {
  std::vector<double> out, gq, gk, gv;
};

Naive naiveAttention(const Case& c, const std::vector<double>& q, const std::vector<double>& k,
                     const std::vector<double>& v, const std::vector<double>& pad,
                     const std::vector<double>& gout) {
  const int64_t G = c.H / c.Hkv, D = c.D;
  const double scale = c.scale != 0.0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(D));
  Naive r;
  r.out.assign(q.size(), 0.0);
  r.gq.assign(q.size(), 0.0);
  r.gk.assign(k.size(), 0.0);
  r.gv.assign(v.size(), 0.0);
  auto at = [D](int64_t row) { return static_cast<size_t>(row * D); };
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t h = 0; h < c.H; ++h) {
      const int64_t qrow0 = (b * c.H + h) * c.T, krow0 = (b * c.Hkv + h / G) * c.S;
      for (int64_t i = 0; i < c.T; ++i) {
        std::vector<double> s(static_cast<size_t>(c.S), 0.0), p(s.size(), 0.0);
        std::vector<bool> seen(s.size(), false);
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < c.S; ++j) {
          const bool visible = (pad.empty() || pad[static_cast<size_t>(b * c.S + j)] != 0.0) &&
                               (!c.causal || j <= i + (c.S - c.T));
          if (!visible) continue;
          double dot = 0.0;
          for (int64_t e = 0; e < D; ++e)
            dot += q[at(qrow0 + i) + static_cast<size_t>(e)] *
                   k[at(krow0 + j) + static_cast<size_t>(e)];
          s[static_cast<size_t>(j)] = dot * scale;
          seen[static_cast<size_t>(j)] = true;
          mx = std::max(mx, s[static_cast<size_t>(j)]);
        }
        if (std::isinf(mx)) continue;  // no visible key: zero output and gradient
        double sum = 0.0;
        for (int64_t j = 0; j < c.S; ++j)
          if (seen[static_cast<size_t>(j)]) sum += std::exp(s[static_cast<size_t>(j)] - mx);
        for (int64_t j = 0; j < c.S; ++j)
          if (seen[static_cast<size_t>(j)])
            p[static_cast<size_t>(j)] = std::exp(s[static_cast<size_t>(j)] - mx) / sum;
        const size_t qi = at(qrow0 + i);
        std::vector<double> dp(static_cast<size_t>(c.S), 0.0);
        double pdp = 0.0;
        for (int64_t j = 0; j < c.S; ++j) {
          const size_t kj = at(krow0 + j), jj = static_cast<size_t>(j);
          for (int64_t e = 0; e < D; ++e) {
            const size_t ee = static_cast<size_t>(e);
            r.out[qi + ee] += p[jj] * v[kj + ee];
            dp[jj] += gout[qi + ee] * v[kj + ee];
          }
          pdp += p[jj] * dp[jj];
        }
        for (int64_t j = 0; j < c.S; ++j) {
          const size_t kj = at(krow0 + j), jj = static_cast<size_t>(j);
          const double ds = p[jj] * (dp[jj] - pdp) * scale;
          for (int64_t e = 0; e < D; ++e) {
            const size_t ee = static_cast<size_t>(e);
            r.gq[qi + ee] += ds * k[kj + ee];
            r.gk[kj + ee] += ds * q[qi + ee];
            r.gv[kj + ee] += p[jj] * gout[qi + ee];
          }
        }
      }
    }
  }
  return r;
}

// Runs the op (forward and backward with a random output gradient) in `dtype` on the current
// backend and compares with the naive attention computed in f64 on the same (rounded) values.
void checkAgainstNaive(const Case& c, DType dtype, double atol, double rtol,
                       const std::string& what) {
  manualSeed(11);
  Inputs in = makeInputs(c, dtype);
  Tensor gout = test::uniform({c.B, c.H, c.T, c.D}, -1.0, 1.0, dtype);
  const std::vector<Tensor> x{req(in.q.clone()), req(in.k.clone()), req(in.v.clone())};
  Tensor out = attend(c, x, in.pad);
  std::vector<Tensor> g = grad({out}, {gout}, x);
  const Naive n = naiveAttention(c, in.q.toDoubles(), in.k.toDoubles(), in.v.toDoubles(),
                                 in.pad.defined() ? in.pad.toDoubles() : std::vector<double>{},
                                 gout.toDoubles());
  const std::string name = std::string(c.name) + " " + what;
  auto f64 = [](const std::vector<double>& vals, const Tensor& like) {
    return Tensor::fromVector(vals, like.shape(), DType::f64);
  };
  test::expectClose(out, f64(n.out, out), atol, rtol, name + " out");
  test::expectClose(g[0], f64(n.gq, in.q), atol, rtol, name + " dq");
  test::expectClose(g[1], f64(n.gk, in.k), atol, rtol, name + " dk");
  test::expectClose(g[2], f64(n.gv, in.v), atol, rtol, name + " dv");
}

// ---- f64 gradcheck over the masking variants ----

std::vector<Case> smallCases() {
  return {
      {"plain", 2, 2, 2, 5, 5, 4},
      {"causal", 1, 2, 2, 6, 6, 3, true},
      {"padding", 2, 2, 2, 4, 6, 4, false, Pad::some},
      {"gqa", 1, 4, 2, 4, 5, 3},
      {"gqa_causal_padding", 2, 4, 2, 5, 5, 2, true, Pad::some},
      {"t_less_than_s_causal", 1, 2, 1, 3, 7, 4, true},
      {"t_more_than_s_causal", 1, 1, 1, 7, 3, 4, true},  // rows 0..3 see no key
      {"odd_d_scale", 1, 2, 2, 4, 4, 5, false, Pad::none, 0.7},
      {"rows_fully_masked", 2, 2, 2, 3, 4, 3, false, Pad::batch0_all},
  };
}

class AttentionGradcheck : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionGradcheck, MatchesCentralDifferences) {
  const Case& c = GetParam();
  manualSeed(7);
  const Inputs in = makeInputs(c);
  const Tensor pad = in.pad;
  test::gradcheck([c, pad](const std::vector<Tensor>& x) { return attend(c, x, pad); },
                  {req(in.q), req(in.k), req(in.v)}, c.name);
}

TEST_P(AttentionGradcheck, MatchesNaiveAttention) {
  checkAgainstNaive(GetParam(), DType::f64, 1e-12, 1e-10, "f64");
}

INSTANTIATE_TEST_SUITE_P(Attention, AttentionGradcheck, ::testing::ValuesIn(smallCases()),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- several tiles: tile remainders, GQA, T != S, odd D, in f64 and f32 on both backends ----

std::vector<Case> tiledCases() {
  return {
      {"gqa_causal_padding_odd_d", 2, 4, 2, 130, 150, 5, true, Pad::some},
      {"t_more_than_s_causal", 1, 2, 2, 200, 90, 16, true},
      {"plain_d64", 1, 3, 1, 70, 70, 64},
      {"masked_batch_d33", 2, 2, 1, 65, 129, 33, false, Pad::batch0_all, 0.3},
  };
}

class AttentionTiled : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionTiled, F64MatchesNaive) {
  checkAgainstNaive(GetParam(), DType::f64, 1e-11, 1e-9, "f64");
}

TEST_P(AttentionTiled, F32MatchesNaiveOnFastBackend) {
  checkAgainstNaive(GetParam(), DType::f32, 2e-5, 1e-4, "f32 fast");
}

TEST_P(AttentionTiled, F32MatchesNaiveOnReferenceBackend) {
  ScopedBackend use_reference(&cpu::referenceBackend());
  checkAgainstNaive(GetParam(), DType::f32, 2e-5, 1e-4, "f32 reference");
}

INSTANTIATE_TEST_SUITE_P(Attention, AttentionTiled, ::testing::ValuesIn(tiledCases()),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- fast f32 path against the reference kernels ----

TEST(Attention, FastMatchesReferenceF32) {
  manualSeed(3);
  const Case plain{"plain", 2, 4, 4, 300, 300, 64};
  Inputs a = makeInputs(plain, DType::f32);
  test::compareWithReference(
      [&](const std::vector<Tensor>& x) { return attend(plain, x, Tensor()); },
      {req(a.q), req(a.k), req(a.v)}, "attention f32 plain", 2e-5, 1e-4);

  const Case masked{"masked", 2, 4, 2, 200, 300, 40, true, Pad::some};
  Inputs b = makeInputs(masked, DType::f32);
  const Tensor pad = b.pad;
  test::compareWithReference([&](const std::vector<Tensor>& x) { return attend(masked, x, pad); },
                             {req(b.q), req(b.k), req(b.v)}, "attention f32 causal, padding, GQA",
                             2e-5, 1e-4);
}

// ---- semantics spot checks ----

TEST(Attention, FullyMaskedRowsGiveZerosAndNoNaN) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Case c{"masked", 2, 2, 2, 70, 80, 8, false, Pad::batch0_all};
    manualSeed(5);
    Inputs in = makeInputs(c, dt);
    const std::vector<Tensor> x{req(in.q), req(in.k), req(in.v)};
    Tensor out = attend(c, x, in.pad);
    std::vector<Tensor> g = grad({out}, {Tensor::ones(out.shape(), dt)}, x);
    const std::vector<double> o = out.toDoubles(), gq = g[0].toDoubles(), gk = g[1].toDoubles();
    const size_t half = o.size() / 2;  // batch 0 is the first half of every tensor
    for (size_t i = 0; i < o.size(); ++i) {
      ASSERT_FALSE(std::isnan(o[i]) || std::isnan(gq[i])) << "element " << i;
      if (i < half) {
        ASSERT_EQ(o[i], 0.0) << "out element " << i;
        ASSERT_EQ(gq[i], 0.0) << "dq element " << i;
      }
    }
    for (size_t i = 0; i < gk.size() / 2; ++i) ASSERT_EQ(gk[i], 0.0) << "dk element " << i;
  }
}

TEST(Attention, CausalFirstRowCopiesFirstValue) {
  // With T == S the first query sees only the first key, so its output is v[0].
  manualSeed(8);
  const Case c{"causal", 1, 2, 2, 9, 9, 6, true};
  Inputs in = makeInputs(c, DType::f32);
  Tensor out = attend(c, {in.q, in.k, in.v}, Tensor());
  const std::vector<double> o = out.toDoubles(), v = in.v.toDoubles();
  for (int64_t h = 0; h < c.H; ++h)
    for (int64_t e = 0; e < c.D; ++e)
      EXPECT_EQ(o[static_cast<size_t>(h * c.T * c.D + e)],
                v[static_cast<size_t>(h * c.S * c.D + e)]);
}

TEST(Attention, NonContiguousInputsMatchContiguous) {
  manualSeed(9);
  const Case c{"strided", 2, 4, 2, 33, 40, 16, true};
  Inputs in = makeInputs(c, DType::f32);
  // [B, T, H, D] memory viewed as [B, H, T, D], the layout a fused qkv projection produces.
  Tensor qs = in.q.permute({0, 2, 1, 3}).contiguous().permute({0, 2, 1, 3});
  ASSERT_FALSE(qs.isContiguous());
  Tensor a = attend(c, {qs, in.k, test::nonContiguous(in.v)}, Tensor());
  Tensor b = attend(c, {in.q, in.k, in.v}, Tensor());
  test::expectClose(a, b, 0.0, 0.0, "strided vs contiguous");
}

// ---- argument errors name the shapes ----

void expectError(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected a lathe::Error mentioning " << parts.front();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos)
          << "message \"" << msg << "\" lacks \"" << p << "\"";
  }
}

TEST(Attention, BadArgumentsNameTheShapes) {
  const Tensor q = Tensor::zeros({2, 4, 5, 8}), k = Tensor::zeros({2, 2, 6, 8});
  const Tensor v = Tensor::zeros({2, 2, 6, 8});
  auto sdpa = [](const Tensor& a, const Tensor& b, const Tensor& c, const Tensor& m = Tensor(),
                 double scale = 0.0) { scaledDotProductAttention(a, b, c, false, m, scale); };
  expectError([&] { sdpa(Tensor::zeros({4, 5, 8}), k, v); }, {"[B, H, T, D]", "[4, 5, 8]"});
  expectError([&] { sdpa(q, Tensor::zeros({2, 6, 8}), v); }, {"[B, Hkv, S, D]", "[2, 6, 8]"});
  expectError([&] { sdpa(q, k, Tensor::zeros({2, 2, 7, 8})); }, {"[2, 2, 6, 8]", "[2, 2, 7, 8]"});
  expectError(
      [&] {
        sdpa(q, Tensor::zeros({3, 2, 6, 8}), Tensor::zeros({3, 2, 6, 8}));
      },
      {"batch", "[2, 4, 5, 8]", "[3, 2, 6, 8]"});
  expectError(
      [&] {
        sdpa(q, Tensor::zeros({2, 2, 6, 7}), Tensor::zeros({2, 2, 6, 7}));
      },
      {"head dim", "[2, 4, 5, 8]", "[2, 2, 6, 7]"});
  expectError(
      [&] {
        sdpa(q, Tensor::zeros({2, 3, 6, 8}), Tensor::zeros({2, 3, 6, 8}));
      },
      {"multiple", "H = 4", "Hkv = 3", "[2, 3, 6, 8]"});
  expectError([&] { sdpa(q, k.to(DType::f64), v); }, {"dtype", "f64[2, 2, 6, 8]"});
  expectError([&] { sdpa(q.to(DType::i64), k.to(DType::i64), v.to(DType::i64)); },
              {"i64[2, 4, 5, 8]"});
  expectError([&] { sdpa(q, k, v, Tensor::ones({2, 6})); }, {"bool", "f32[2, 6]"});
  expectError(
      [&] {
        sdpa(q, k, v, Tensor::ones({2, 5}, DType::b8));
      },
      {"[B, S] = [2, 6]", "bool[2, 5]"});
  expectError([&] { sdpa(q, k, v, Tensor(), std::nan("")); }, {"scale"});
}

// ---- memory: forward + backward never allocate anything of size T * S ----

TEST(Attention, PeakMemoryStaysFarBelowTheScoreMatrix) {
  const int64_t B = 1, H = 8, T = 2048, S = 2048, D = 64;
  manualSeed(4);
  const std::vector<Tensor> x{req(test::uniform({B, H, T, D}, -1, 1, DType::f32)),
                              req(test::uniform({B, H, S, D}, -1, 1, DType::f32)),
                              req(test::uniform({B, H, S, D}, -1, 1, DType::f32))};
  const Tensor gout = test::uniform({B, H, T, D}, -1, 1, DType::f32);
  Allocator& alloc = cpuAllocator();
  alloc.resetPeaks();
  const int64_t base = alloc.stats().current;
  {
    Tensor out = scaledDotProductAttention(x[0], x[1], x[2], true);
    std::vector<Tensor> g = grad({out}, {gout}, x);
    ASSERT_EQ(g.size(), 3u);
  }
  const int64_t used = alloc.stats().peak - base;
  const int64_t qkv_bytes = B * H * T * D * 4;     // one q-sized f32 tensor: 4 MiB
  const int64_t scores_bytes = B * H * T * S * 4;  // what a materialised [T, S] would take: 128 MiB
  // out, lse, dq, dk, dv: about five q-sized tensors; the score matrix would be 32 of them.
  EXPECT_LT(used, 8 * qkv_bytes) << "peak " << formatBytes(used) << " vs score matrix "
                                 << formatBytes(scores_bytes);
}

}  // namespace
}  // namespace lathe
