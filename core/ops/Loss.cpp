// Losses: cross-entropy (fused log-softmax + NLL with ignore_index and label smoothing) and
// mean squared error. Cross-entropy records one node from the logits to per-row losses whose
// backward is the fused kernel (softmax minus the smoothed one-hot, recomputed from the saved
// log-sum-exp; no softmax is kept from the forward); the reduction is an ordinary sum/div.
#include "core/ops/Autocast.h"
#include "core/ops/OpsCommon.h"

namespace lathe {
namespace {

// Range-checks targets on the host and counts the rows that are not ignored.
int64_t checkTargets(const Tensor& target, int64_t C, int64_t ignore_index, const Tensor& logits) {
  const Tensor host = target.device().isCpu() ? target : target.to(Device::cpu());
  const int64_t* p = host.data<int64_t>();
  int64_t kept = 0;
  for (int64_t i = 0; i < host.numel(); ++i) {
    if (p[i] == ignore_index) continue;
    LATHE_CHECK(p[i] >= 0 && p[i] < C, "crossEntropy: target ", p[i], " at position ", i,
                " is out of range for ", C, " classes (logits ", describe(logits),
                ", ignore_index ", ignore_index, ")");
    ++kept;
  }
  return kept;
}

Tensor reduceLoss(const Tensor& per_row, Reduction reduction, double count, const Shape& shape) {
  switch (reduction) {
    case Reduction::none: return per_row.reshape(shape);
    case Reduction::sum: return sum(per_row);
    case Reduction::mean: return div(sum(per_row), count);
  }
  return per_row;
}

}  // namespace

Tensor crossEntropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                    double label_smoothing, Reduction reduction) {
  if (autocast::wantsF32(logits))
    return crossEntropy(autocast::f32(logits), target, ignore_index, label_smoothing, reduction);
  checkFloating(logits, "crossEntropy");
  LATHE_CHECK(logits.dim() >= 1 && logits.shape().back() > 0,
              "crossEntropy: logits must be [N, C] or [.., C] with C > 0, got ", describe(logits));
  detail::requireIndex(target, logits.device(), "crossEntropy", "target");
  const Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  LATHE_CHECK(target.shape() == lead, "crossEntropy: target ", describe(target),
              " does not match logits ", describe(logits), ": expected target shape ",
              shapeStr(lead));
  LATHE_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
              "crossEntropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  const int64_t C = logits.shape().back(), N = shapeNumel(lead);
  Tensor x, t;
  {
    NoGradGuard g;
    x = logits.detach().contiguous().view({N, C});
    t = target.detach().to(DType::i64).contiguous().view({N});
  }
  const int64_t kept = checkTargets(t, C, ignore_index, logits);
  Tensor loss = Tensor::empty({N}, logits.dtype(), logits.device());
  Tensor lse =
      Tensor::empty({N}, logits.dtype() == DType::f64 ? DType::f64 : DType::f32, logits.device());
  if (N > 0) backendFor(x).crossEntropy(x, t, ignore_index, label_smoothing, loss, lse);
  if (needsGrad({&logits})) {
    SavedTensor sx(x, "crossEntropy.logits"), st(t, "crossEntropy.target");
    SavedTensor sl(lse, "crossEntropy.lse");
    const Shape ls = logits.shape();
    loss = recordUnary("CrossEntropy", {logits}, loss, [=](const std::vector<Tensor>& g) {
      const Tensor& xx = sx.get();
      Tensor gl = g[0].contiguous();
      Tensor gx = Tensor::empty(xx.shape(), xx.dtype(), xx.device());
      if (gx.numel() > 0)
        backendFor(xx).crossEntropyBackward(xx, st.get(), sl.get(), gl, ignore_index,
                                            label_smoothing, gx);
      return std::vector<Tensor>{gx.view(ls)};
    });
  }
  // Mean over the rows that count; with every row ignored that is 0/0 = NaN, as in PyTorch.
  return reduceLoss(loss, reduction, static_cast<double>(kept), lead);
}

Tensor mseLoss(const Tensor& a, const Tensor& b, Reduction reduction) {
  if (autocast::wantsF32(a, b)) return mseLoss(autocast::f32(a), autocast::f32(b), reduction);
  checkFloating(a, "mseLoss");
  LATHE_CHECK(a.shape() == b.shape(), "mseLoss: input ", describe(a), " and target ", describe(b),
              " must have the same shape");
  checkSameDType(a, b, "mseLoss");
  checkSameDevice(a, b, "mseLoss");
  const Tensor sq = square(sub(a, b));
  switch (reduction) {
    case Reduction::none: return sq;
    case Reduction::sum: return sum(sq);
    case Reduction::mean: return mean(sq);
  }
  return sq;
}

}  // namespace lathe
