// Table-driven float64 gradcheck (central differences) of the elementwise, reduction and shape
// ops; other op groups have their own tables using the same harness (tests/OpTestUtil.h).
#include "tests/OpTestUtil.h"

namespace lathe {
namespace {

using test::gradcheck;
using test::uniform;

using test::GradCase;

Tensor req(Tensor t) {
  return t.setRequiresGrad(true);
}

std::vector<GradCase> cases() {
  auto u = [](Shape s, double lo = -1, double hi = 1) { return req(uniform(s, lo, hi)); };
  return {
      {"add_broadcast",
       [=] {
         return std::vector<Tensor>{u({3, 4}), u({4})};
       },
       [](auto& x) { return add(x[0], x[1]); }},
      {"sub_broadcast",
       [=] {
         return std::vector<Tensor>{u({3, 1}), u({1, 4})};
       },
       [](auto& x) { return sub(x[0], x[1]); }},
      {"mul",
       [=] {
         return std::vector<Tensor>{u({2, 3}), u({2, 3})};
       },
       [](auto& x) { return mul(x[0], x[1]); }},
      {"div",
       [=] {
         return std::vector<Tensor>{u({2, 3}), u({2, 3}, 0.5, 2)};
       },
       [](auto& x) { return div(x[0], x[1]); }},
      {"pow",
       [=] {
         return std::vector<Tensor>{u({5}, 0.5, 2), u({5})};
       },
       [](auto& x) { return pow(x[0], x[1]); }},
      {"maximum",
       [=] {
         return std::vector<Tensor>{u({6}), u({6})};
       },
       [](auto& x) { return maximum(x[0], x[1]); }},
      {"minimum",
       [=] {
         return std::vector<Tensor>{u({6}), u({6})};
       },
       [](auto& x) { return minimum(x[0], x[1]); }},
      {"scalar_ops", [=] { return std::vector<Tensor>{u({4}, 0.5, 2)}; },
       [](auto& x) { return add(mul(rsub(2.0, add(x[0], 1.5)), 3.0), rdiv(1.0, x[0])); }},
      {"pow_scalar", [=] { return std::vector<Tensor>{u({4}, 0.5, 2)}; },
       [](auto& x) { return pow(x[0], 2.5); }},
      {"neg", [=] { return std::vector<Tensor>{u({4})}; }, [](auto& x) { return neg(x[0]); }},
      {"exp", [=] { return std::vector<Tensor>{u({4})}; }, [](auto& x) { return exp(x[0]); }},
      {"log", [=] { return std::vector<Tensor>{u({4}, 0.2, 3)}; },
       [](auto& x) { return log(x[0]); }},
      {"sqrt", [=] { return std::vector<Tensor>{u({4}, 0.2, 3)}; },
       [](auto& x) { return sqrt(x[0]); }},
      {"rsqrt", [=] { return std::vector<Tensor>{u({4}, 0.2, 3)}; },
       [](auto& x) { return rsqrt(x[0]); }},
      {"abs", [=] { return std::vector<Tensor>{u({4})}; }, [](auto& x) { return abs(x[0]); }},
      {"square", [=] { return std::vector<Tensor>{u({4})}; }, [](auto& x) { return square(x[0]); }},
      {"sin", [=] { return std::vector<Tensor>{u({4})}; }, [](auto& x) { return sin(x[0]); }},
      {"cos", [=] { return std::vector<Tensor>{u({4})}; }, [](auto& x) { return cos(x[0]); }},
      {"clamp", [=] { return std::vector<Tensor>{u({8}, -2, 2)}; },
       [](auto& x) { return clamp(x[0], -0.5, 0.7); }},
      {"relu", [=] { return std::vector<Tensor>{u({8})}; }, [](auto& x) { return relu(x[0]); }},
      {"gelu", [=] { return std::vector<Tensor>{u({8}, -3, 3)}; },
       [](auto& x) { return gelu(x[0]); }},
      {"gelu_tanh", [=] { return std::vector<Tensor>{u({8}, -3, 3)}; },
       [](auto& x) { return gelu(x[0], true); }},
      {"silu", [=] { return std::vector<Tensor>{u({8}, -3, 3)}; },
       [](auto& x) { return silu(x[0]); }},
      {"sigmoid", [=] { return std::vector<Tensor>{u({8}, -3, 3)}; },
       [](auto& x) { return sigmoid(x[0]); }},
      {"tanh", [=] { return std::vector<Tensor>{u({8}, -3, 3)}; },
       [](auto& x) { return tanh(x[0]); }},
      {"where",
       [=] {
         return std::vector<Tensor>{u({3, 4}), u({4})};
       },
       [](auto& x) { return where(gt(x[0], 0.0), x[0], x[1]); }},
      {"masked_fill",
       [=] {
         return std::vector<Tensor>{u({3, 4})};
       },
       [](auto& x) { return maskedFill(x[0], lt(x[0], 0.0), 2.0); }},
      {"sum_dims",
       [=] {
         return std::vector<Tensor>{u({2, 3, 4})};
       },
       [](auto& x) {
         return sum(x[0], {0, 2});
       }},
      {"sum_all",
       [=] {
         return std::vector<Tensor>{u({2, 3})};
       },
       [](auto& x) { return sum(x[0]); }},
      {"mean_keepdim",
       [=] {
         return std::vector<Tensor>{u({2, 3, 4})};
       },
       [](auto& x) { return mean(x[0], {1}, true); }},
      {"max_dim",
       [=] {
         return std::vector<Tensor>{u({3, 5})};
       },
       [](auto& x) { return max(x[0], {1}); }},
      {"min_dim",
       [=] {
         return std::vector<Tensor>{u({3, 5})};
       },
       [](auto& x) { return min(x[0], {0}); }},
      {"var",
       [=] {
         return std::vector<Tensor>{u({3, 5})};
       },
       [](auto& x) { return var(x[0], {1}); }},
      {"views",
       [=] {
         return std::vector<Tensor>{u({2, 3, 4})};
       },
       [](auto& x) {
         return x[0].permute({2, 0, 1}).slice(0, 1, 4, 2).reshape({2, 6}).expand({3, 2, 6});
       }},
      {"select_squeeze",
       [=] {
         return std::vector<Tensor>{u({2, 3, 1})};
       },
       [](auto& x) { return x[0].select(1, 2).squeeze(-1).unsqueeze(0); }},
      {"concat",
       [=] {
         return std::vector<Tensor>{u({2, 3}), u({2, 2})};
       },
       [](auto& x) {
         return concat({x[0], x[1]}, 1);
       }},
      {"split_stack",
       [=] {
         return std::vector<Tensor>{u({4, 3})};
       },
       [](auto& x) {
         auto parts = split(x[0], {1, 3}, 0);
         return stack({parts[1].slice(0, 0, 1), parts[0]}, 0);
       }},
      {"chunk",
       [=] {
         return std::vector<Tensor>{u({5, 2})};
       },
       [](auto& x) { return mul(chunk(x[0], 2, 0)[1], 2.0); }},
      {"tril_triu",
       [=] {
         return std::vector<Tensor>{u({2, 4, 4})};
       },
       [](auto& x) { return add(tril(x[0], -1), triu(x[0], 1)); }},
  };
}

class GradcheckElementwise : public ::testing::TestWithParam<GradCase> {};

TEST_P(GradcheckElementwise, MatchesCentralDifferences) {
  const GradCase& c = GetParam();
  manualSeed(7);
  gradcheck(c.fn, c.inputs(), c.name);
}

INSTANTIATE_TEST_SUITE_P(Ops, GradcheckElementwise, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace lathe
