// Reference indexing kernels: indexSelect / indexAdd along one dim (x viewed as [outer, V,
// inner], the index of any shape flattened to n entries, out as [outer, n, inner]) and
// torch-style gather / scatter. Every index is range-checked in a serial pass before any element
// is touched (an exception may not leave an OpenMP region), so a bad index is a lathe::Error and
// never an access past a buffer. Writes that can collide (indexAdd, scatter) are split across
// threads so that each destination element is owned by one thread and updated in index order:
// results are deterministic for any thread count.
#include <algorithm>
#include <vector>

#include "kernels/cpu/reference/ReferenceBackend.h"
#include "kernels/cpu/reference/Strided.h"

namespace lathe::cpu {
namespace {

void checkRange(const Tensor& index, int64_t size, int dim, const Tensor& t, const char* op,
                const char* what) {
  const int64_t* p = index.data<int64_t>();
  const int64_t n = index.numel();
  for (int64_t i = 0; i < n; ++i)
    LATHE_CHECK(p[i] >= 0 && p[i] < size, op, ": index ", p[i], " is out of range for dim ", dim,
                " of size ", size, " of ", what, " ", describe(t));
}

int64_t prodDims(const Shape& s, int begin, int end) {
  int64_t n = 1;
  for (int d = begin; d < end; ++d) n *= s[static_cast<size_t>(d)];
  return n;
}

// Offsets of "line" l (a position of `shape` with `dim` left out, row-major) for each tensor.
template <size_t K>
std::array<int64_t, K> lineOffsets(int64_t l, const Shape& shape, int dim,
                                   const std::array<const Shape*, K>& strides) {
  std::array<int64_t, K> off{};
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    if (d == dim) continue;
    const int64_t sz = shape[static_cast<size_t>(d)];
    const int64_t c = l % sz;
    l /= sz;
    for (size_t k = 0; k < K; ++k) off[k] += c * (*strides[k])[static_cast<size_t>(d)];
  }
  return off;
}

}  // namespace

void ReferenceBackend::indexSelect(const Tensor& x, int dim, const Tensor& index,
                                   const Tensor& out) {
  const int64_t V = x.shape()[static_cast<size_t>(dim)];
  checkRange(index, V, dim, x, "indexSelect", "input");
  const int64_t outer = prodDims(x.shape(), 0, dim);
  const int64_t inner = prodDims(x.shape(), dim + 1, x.dim());
  const int64_t n = index.numel();
  const int64_t* pi = index.data<int64_t>();
  const size_t es = x.elementSize();
  const char* px = static_cast<const char*>(x.rawData());
  char* po = static_cast<char*>(out.rawData());
  // Whole rows of `inner` elements move as bytes: the kernel serves every dtype.
  parallelFor(outer * n, inner, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t o = r / n, i = r % n;
      std::copy_n(px + static_cast<size_t>((o * V + pi[i]) * inner) * es,
                  static_cast<size_t>(inner) * es, po + static_cast<size_t>(r * inner) * es);
    }
  });
}

void ReferenceBackend::indexAdd(const Tensor& dst, int dim, const Tensor& index,
                                const Tensor& src) {
  const int64_t V = dst.shape()[static_cast<size_t>(dim)];
  checkRange(index, V, dim, dst, "indexAdd", "destination");
  const int64_t outer = prodDims(dst.shape(), 0, dim);
  const int64_t inner = prodDims(dst.shape(), dim + 1, dst.dim());
  const int64_t n = index.numel();
  const int64_t* pi = index.data<int64_t>();
  LATHE_DISPATCH_ALL(dst.dtype(), "indexAdd", [&] {
    scalar_t* pd = static_cast<scalar_t*>(dst.rawData());
    const scalar_t* ps = static_cast<const scalar_t*>(src.rawData());
    // Repeated indices hit the same row: threads own column blocks (or whole outer slabs), never
    // rows, so no two threads write one element.
    auto slab = [&](int64_t o, int64_t c0, int64_t c1) {
      for (int64_t i = 0; i < n; ++i) {
        scalar_t* d = pd + (o * V + pi[i]) * inner;
        const scalar_t* s = ps + (o * n + i) * inner;
        for (int64_t c = c0; c < c1; ++c)
          d[c] = fromDouble<scalar_t>(toDouble(d[c]) + toDouble(s[c]));
      }
    };
    if (outer >= 8 || inner < 64) {
      parallelFor(outer, n * inner, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) slab(o, 0, inner);
      });
    } else {
      constexpr int64_t kBlock = 64;
      const int64_t blocks = (inner + kBlock - 1) / kBlock;
      parallelFor(blocks, outer * n * kBlock, [&](int64_t b, int64_t e) {
        for (int64_t blk = b; blk < e; ++blk)
          for (int64_t o = 0; o < outer; ++o)
            slab(o, blk * kBlock, std::min(inner, (blk + 1) * kBlock));
      });
    }
  });
}

void ReferenceBackend::gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  checkRange(index, x.shape()[static_cast<size_t>(dim)], dim, x, "gather", "input");
  const Shape& is = index.shape();
  const int64_t J = is[static_cast<size_t>(dim)];
  const int64_t lines = J == 0 ? 0 : index.numel() / J;
  const int64_t* pi = index.data<int64_t>();
  const int64_t xs = x.strides()[static_cast<size_t>(dim)];
  const int64_t is_d = index.strides()[static_cast<size_t>(dim)];
  const int64_t os_d = out.strides()[static_cast<size_t>(dim)];
  LATHE_DISPATCH_ALL(x.dtype(), "gather", [&] {
    const scalar_t* px = static_cast<const scalar_t*>(x.rawData());
    scalar_t* po = static_cast<scalar_t*>(out.rawData());
    parallelFor(lines, J, [&](int64_t b, int64_t e) {
      for (int64_t l = b; l < e; ++l) {
        const auto off =
            lineOffsets<3>(l, is, dim, {&x.strides(), &index.strides(), &out.strides()});
        for (int64_t j = 0; j < J; ++j)
          po[off[2] + j * os_d] = px[off[0] + pi[off[1] + j * is_d] * xs];
      }
    });
  });
}

void ReferenceBackend::scatter(const Tensor& dst, int dim, const Tensor& index, const Tensor& src,
                               bool add) {
  checkRange(index, dst.shape()[static_cast<size_t>(dim)], dim, dst, "scatter", "destination");
  const Shape& is = index.shape();
  const int64_t J = is[static_cast<size_t>(dim)];
  const int64_t lines = J == 0 ? 0 : index.numel() / J;
  const int64_t* pi = index.data<int64_t>();
  const int64_t ds = dst.strides()[static_cast<size_t>(dim)];
  const int64_t is_d = index.strides()[static_cast<size_t>(dim)];
  const int64_t ss = src.strides()[static_cast<size_t>(dim)];
  LATHE_DISPATCH_ALL(dst.dtype(), "scatter", [&] {
    scalar_t* pd = static_cast<scalar_t*>(dst.rawData());
    const scalar_t* ps = static_cast<const scalar_t*>(src.rawData());
    // A line (all positions but `dim`) only writes to its own line of dst, so lines run in
    // parallel and duplicates within a line apply in index order (the last one wins).
    parallelFor(lines, J, [&](int64_t b, int64_t e) {
      for (int64_t l = b; l < e; ++l) {
        const auto off =
            lineOffsets<3>(l, is, dim, {&dst.strides(), &index.strides(), &src.strides()});
        for (int64_t j = 0; j < J; ++j) {
          scalar_t& d = pd[off[0] + pi[off[1] + j * is_d] * ds];
          const scalar_t v = ps[off[2] + j * ss];
          d = add ? fromDouble<scalar_t>(toDouble(d) + toDouble(v)) : v;
        }
      }
    });
  });
}

}  // namespace lathe::cpu
