// Shared test harness for ops: random inputs, closeness checks, float64 gradcheck by central
// differences, and the fast-vs-reference backend comparison. Every op test uses these, so a new
// op's tests are a row in a table, not a new harness.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/ops/Ops.h"
#include "core/tensor/Random.h"
#include "kernels/cpu/CpuBackend.h"

namespace lathe::test {

// Uniform values in [lo, hi) of the given dtype (drawn in f64, then converted).
inline Tensor uniform(const Shape& shape, double lo = -1.0, double hi = 1.0,
                      DType dtype = DType::f64) {
  NoGradGuard g;
  Tensor u = rand(shape, DType::f64);
  return add(mul(u, hi - lo), lo).to(dtype);
}

// The same values as `t` but laid out transposed in memory (a non-contiguous view).
inline Tensor nonContiguous(const Tensor& t) {
  NoGradGuard g;
  if (t.dim() < 2) {
    Tensor big = Tensor::zeros({t.numel() * 2}, t.dtype());
    big.slice(0, 0, t.numel() * 2, 2).copy_(t);
    return big.slice(0, 0, t.numel() * 2, 2).detach();
  }
  Tensor tt = t.transpose(-1, -2).contiguous();  // memory order of the transpose
  return tt.transpose(-1, -2).detach();          // same logical values, strided
}

// |a - b| / |b| in the Frobenius norm, in f64: for results whose error scales with the whole
// tensor (low-precision GEMMs) rather than with each element.
inline double relError(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.toDoubles(), y = b.toDoubles();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

inline void expectClose(const Tensor& actual, const Tensor& expected, double atol, double rtol,
                        const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what << ": result undefined";
  ASSERT_TRUE(expected.defined()) << what << ": expected undefined";
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  const std::vector<double> a = actual.toDoubles(), e = expected.toDoubles();
  int reported = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const bool both_nan = std::isnan(a[i]) && std::isnan(e[i]);
    const bool same_inf = std::isinf(a[i]) && a[i] == e[i];
    if (both_nan || same_inf) continue;
    if (!(std::abs(a[i] - e[i]) <= atol + rtol * std::abs(e[i]))) {
      ADD_FAILURE() << what << ": element " << i << " is " << a[i] << ", expected " << e[i]
                    << " (atol " << atol << ", rtol " << rtol << ")";
      if (++reported >= 5) return;
    }
  }
}

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks the analytic gradient of sum(fn(inputs) * w) (w random, fixed) against central
// differences, for every input that requires grad. Inputs must be f64.
inline void gradcheck(const TensorFn& fn, const std::vector<Tensor>& inputs0,
                      const std::string& name, double eps = 1e-6, double atol = 1e-5,
                      double rtol = 1e-3) {
  std::vector<Tensor> inputs;
  for (const Tensor& t : inputs0) {
    if (!t.defined()) {
      inputs.push_back(t);
      continue;
    }
    Tensor c = t.detach().clone();
    if (t.requiresGrad()) {
      ASSERT_EQ(t.dtype(), DType::f64) << name << ": gradcheck needs f64 inputs";
      c.setRequiresGrad(true);
    }
    inputs.push_back(c);
  }
  Tensor out = fn(inputs);
  ASSERT_TRUE(out.requiresGrad()) << name << ": output does not require grad";
  Tensor w = uniform(out.shape(), 0.5, 1.5);
  std::vector<Tensor> wrt;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requiresGrad()) wrt.push_back(t);
  std::vector<Tensor> analytic = grad({out}, {w}, wrt);

  auto objective = [&](const std::vector<Tensor>& in) {
    NoGradGuard g;
    return sum(mul(fn(in), w)).item();
  };
  size_t k = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || !inputs[i].requiresGrad()) continue;
    std::vector<Tensor> probe = inputs;
    Tensor x = inputs[i].detach().clone();
    probe[i] = x;
    std::vector<double> numeric(static_cast<size_t>(x.numel()));
    double* px = x.data<double>();
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double orig = px[j];
      px[j] = orig + eps;
      const double up = objective(probe);
      px[j] = orig - eps;
      const double down = objective(probe);
      px[j] = orig;
      numeric[static_cast<size_t>(j)] = (up - down) / (2 * eps);
    }
    Tensor expected = Tensor::fromVector(numeric, x.shape(), DType::f64);
    Tensor got = analytic[k++];
    if (!got.defined()) got = Tensor::zeros(x.shape(), DType::f64);
    expectClose(got, expected, atol, rtol, name + ": d/d input " + std::to_string(i));
  }
}

// Runs fn (and its backward, when an input requires grad) on the fast CPU backend and on the
// reference backend, and compares outputs and input gradients.
inline void compareWithReference(const TensorFn& fn, const std::vector<Tensor>& inputs,
                                 const std::string& name, double atol, double rtol) {
  auto run = [&](std::vector<Tensor>& grads) {
    std::vector<Tensor> in;
    for (const Tensor& t : inputs) {
      if (!t.defined()) {
        in.push_back(t);
        continue;
      }
      Tensor c = t.detach();
      if (t.requiresGrad()) {
        c = t.detach().clone();
        if (!t.isContiguous()) c = nonContiguous(c);
        c.setRequiresGrad(true);
      }
      in.push_back(c);
    }
    Tensor out = fn(in);
    if (out.requiresGrad()) {
      NoGradGuard g;
      manualSeed(99);
      Tensor w = uniform(out.shape(), 0.5, 1.5, out.dtype());
      std::vector<Tensor> wrt;
      for (const Tensor& t : in)
        if (t.defined() && t.requiresGrad()) wrt.push_back(t);
      EnableGradGuard on;
      grads = grad({out}, {w}, wrt);
    }
    return out;
  };
  std::vector<Tensor> fast_grads, ref_grads;
  const RandomState rs = rngState();
  Tensor fast = run(fast_grads);
  Tensor ref;
  {
    ScopedBackend use_reference(&cpu::referenceBackend());
    setRngState(rs);
    ref = run(ref_grads);
  }
  expectClose(fast, ref, atol, rtol, name + " (output)");
  ASSERT_EQ(fast_grads.size(), ref_grads.size());
  for (size_t i = 0; i < fast_grads.size(); ++i)
    expectClose(fast_grads[i], ref_grads[i], atol, rtol,
                name + " (grad " + std::to_string(i) + ")");
}

// One row of a table-driven gradcheck: named inputs (leaves requiring grad) and the function.
struct GradCase {
  const char* name;
  std::function<std::vector<Tensor>()> inputs;
  TensorFn fn;
};
inline void PrintTo(const GradCase& c, std::ostream* os) {
  *os << c.name;
}

}  // namespace lathe::test
