// Ops that assemble or carve tensors: concat, split, chunk, stack, tril/triu, arange.
#include <cmath>

#include "core/ops/OpsCommon.h"
#include "core/tensor/Random.h"

namespace lathe {

Tensor concat(const std::vector<Tensor>& parts, int dim) {
  LATHE_CHECK(!parts.empty(), "concat: no tensors given");
  const Tensor& first = parts[0];
  const int d = first.normDim(dim);
  Shape s = first.shape();
  int64_t total = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor& p = parts[i];
    checkSameDevice(first, p, "concat");
    checkSameDType(first, p, "concat");
    LATHE_CHECK(p.dim() == first.dim(), "concat: tensor ", i, " ", describe(p), " has ", p.dim(),
                " dims, expected ", first.dim());
    for (int k = 0; k < p.dim(); ++k)
      LATHE_CHECK(k == d || p.shape()[static_cast<size_t>(k)] == s[static_cast<size_t>(k)],
                  "concat along dim ", d, ": tensor ", i, " ", describe(p), " differs from ",
                  describe(first), " in dim ", k);
    total += p.shape()[static_cast<size_t>(d)];
  }
  s[static_cast<size_t>(d)] = total;
  Tensor out = Tensor::empty(s, first.dtype(), first.device());
  std::vector<int64_t> sizes;
  {
    NoGradGuard no_grad;
    int64_t off = 0;
    for (const Tensor& p : parts) {
      const int64_t n = p.shape()[static_cast<size_t>(d)];
      sizes.push_back(n);
      if (n > 0 && p.numel() > 0) out.slice(d, off, off + n).copy_(p);
      off += n;
    }
  }
  return recordUnary("Concat", parts, out, [sizes, d](const std::vector<Tensor>& g) {
    std::vector<Tensor> r;
    int64_t off = 0;
    for (int64_t n : sizes) {
      r.push_back(g[0].slice(d, off, off + n));
      off += n;
    }
    return r;
  });
}

std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int dim) {
  const int d = a.normDim(dim);
  int64_t total = 0;
  for (int64_t n : sizes) {
    LATHE_CHECK(n >= 0, "split: negative size ", n);
    total += n;
  }
  LATHE_CHECK(total == a.shape()[static_cast<size_t>(d)], "split of ", describe(a), " along dim ",
              d, ": sizes add up to ", total, ", expected ", a.shape()[static_cast<size_t>(d)]);
  std::vector<Tensor> out;
  int64_t off = 0;
  for (int64_t n : sizes) {
    out.push_back(a.slice(d, off, off + n));
    off += n;
  }
  return out;
}

std::vector<Tensor> chunk(const Tensor& a, int chunks, int dim) {
  LATHE_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  const int d = a.normDim(dim);
  const int64_t n = a.shape()[static_cast<size_t>(d)];
  const int64_t each = (n + chunks - 1) / chunks;
  std::vector<int64_t> sizes;
  for (int64_t off = 0; off < n; off += each) sizes.push_back(std::min(each, n - off));
  return split(a, sizes, d);
}

Tensor stack(const std::vector<Tensor>& parts, int dim) {
  LATHE_CHECK(!parts.empty(), "stack: no tensors given");
  const int n = parts[0].dim();
  const int d = dim < 0 ? dim + n + 1 : dim;
  LATHE_CHECK(d >= 0 && d <= n, "stack: dimension ", dim, " is out of range for ", n, "-d inputs");
  std::vector<Tensor> u;
  for (size_t i = 0; i < parts.size(); ++i) {
    LATHE_CHECK(parts[i].shape() == parts[0].shape(), "stack: tensor ", i, " ", describe(parts[i]),
                " differs in shape from ", describe(parts[0]));
    u.push_back(parts[i].unsqueeze(d));
  }
  return concat(u, d);
}

namespace {
Tensor triangle(const Tensor& a, int64_t k, bool upper) {
  LATHE_CHECK(a.dim() >= 2, upper ? "triu" : "tril", ": needs at least 2 dims, got ", describe(a));
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (out.numel() > 0) backendFor(a).triangle(a.contiguous(), out, k, upper);
  return recordUnary(upper ? "Triu" : "Tril", {a}, out, [k, upper](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{upper ? triu(g[0], k) : tril(g[0], k)};
  });
}
}  // namespace

Tensor tril(const Tensor& a, int64_t k) {
  return triangle(a, k, false);
}
Tensor triu(const Tensor& a, int64_t k) {
  return triangle(a, k, true);
}

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  LATHE_CHECK(step != 0.0, "arange: step must not be 0");
  LATHE_CHECK(std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
              "arange: start, end and step must be finite");
  const double n = std::ceil((end - start) / step);
  const int64_t count = n > 0 ? static_cast<int64_t>(n) : 0;
  Tensor out = Tensor::empty({count}, dtype, device);
  if (count > 0) backendFor(device.type).arange(out, start, step);
  return out;
}

Tensor randn(const Shape& shape, DType dtype, Device device) {
  Tensor out = Tensor::empty(shape, dtype, device);
  if (out.numel() > 0)
    backendFor(device.type)
        .randomNormal(out, reserveRandom(static_cast<uint64_t>(out.numel())), 0.0, 1.0);
  return out;
}

Tensor rand(const Shape& shape, DType dtype, Device device) {
  Tensor out = Tensor::empty(shape, dtype, device);
  if (out.numel() > 0)
    backendFor(device.type)
        .randomUniform(out, reserveRandom(static_cast<uint64_t>(out.numel())), 0.0, 1.0);
  return out;
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, Device device) {
  LATHE_CHECK(low < high, "randint: low ", low, " must be below high ", high);
  Tensor out = Tensor::empty(shape, DType::i64, device);
  if (out.numel() > 0)
    backendFor(device.type)
        .randomUniform(out, reserveRandom(static_cast<uint64_t>(out.numel())),
                       static_cast<double>(low), static_cast<double>(high));
  return out;
}

}  // namespace lathe
