// fp8 training of linear layers (Micikevicius et al. 2022, "FP8 Formats for Deep Learning"), with
// the delayed per-tensor scaling recipe of NVIDIA's Transformer Engine. Inside an
// Fp8AutocastGuard, ops::linear runs its three GEMMs on fp8 operands: the forward x w^T with x
// and w in e4m3, and both backward GEMMs with the output gradient in e5m2 (more range, less
// precision). Everything else runs under bf16 autocast (core/ops/Autocast.h), and the master
// weights stay f32.
//
// Scaling: every linear layer (keyed by its weight) keeps an amax history of the last `history`
// uses of each of its three tensors (input, weight, output gradient). Before a tensor is
// quantized its scale is computed on the device as fp8_max / max(history) / 2^margin, and the
// tensor's own amax goes into the history as it is quantized, so no step waits on the host. The
// very first use of each tensor measures its amax first (current scaling), so step 1 is not
// quantized with a blind scale of 1. The forward saves the transposed fp8 copies of x and w that
// the backward GEMMs need (1 byte per element instead of the 2-4 of x itself).
//
// Layers with a dimension that is not a multiple of 16 (cuBLASLt's fp8 alignment) run in bf16,
// and the state counts them. The CPU computes the same numbers through the reference kernels
// (an emulation for tests; it is not fast).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "core/ops/Autocast.h"
#include "core/tensor/Tensor.h"

namespace lathe {

struct Fp8Recipe {
  int history = 16;  // amax history length (uses of each tensor)
  int margin = 0;    // scale = fp8_max / amax / 2^margin
};

// Per-run fp8 state: the scaling histories of every linear layer seen, and counters.
class Fp8State {
 public:
  explicit Fp8State(Fp8Recipe recipe = {});
  const Fp8Recipe& recipe() const { return recipe_; }
  int64_t fp8Linears() const { return fp8_calls_; }     // linear forwards that ran in fp8
  int64_t bf16Fallbacks() const { return fallbacks_; }  // linear forwards left in bf16
  int64_t layers() const { return static_cast<int64_t>(metas_.size()); }

  // For ops::linear (core/ops/Fp8.cpp).
  struct Meta {
    Tensor history;  // f32 [3, H]: input, weight, output gradient
    int64_t position[3] = {0, 0, 0};
    bool seen[3] = {false, false, false};
  };
  Meta& metaFor(const Tensor& weight);
  // The layer of `weight` has scaling state (it ran in fp8 at least once).
  bool has(const Tensor& weight) const { return metas_.count(weight.rawData()) > 0; }
  // Checkpoints: the layer's state as two tensors, its history (f32 [3, H]) and its ring
  // positions and first-use flags (i64 [6]); and back. restore() checks the shapes and throws
  // lathe::Error naming `what` on a mismatch (another history length).
  std::pair<Tensor, Tensor> save(const Tensor& weight) const;
  void checkState(const Tensor& history, const Tensor& positions, const std::string& what) const;
  void restore(const Tensor& weight, const Tensor& history, const Tensor& positions,
               const std::string& what);
  void countFp8() { ++fp8_calls_; }
  void countFallback() { ++fallbacks_; }

 private:
  Fp8Recipe recipe_;
  std::map<const void*, Meta> metas_;
  int64_t fp8_calls_ = 0, fallbacks_ = 0;
};

// Turns fp8 linears on for this thread (with bf16 autocast for every other op) until destroyed;
// `state` must outlive the guard and every backward of a graph built under it.
class Fp8AutocastGuard {
 public:
  explicit Fp8AutocastGuard(Fp8State& state);
  ~Fp8AutocastGuard();
  Fp8AutocastGuard(const Fp8AutocastGuard&) = delete;
  Fp8AutocastGuard& operator=(const Fp8AutocastGuard&) = delete;

 private:
  Fp8State* previous_;
  AutocastGuard autocast_{DType::bf16};
};

namespace fp8 {

// The active state on this thread, or null.
Fp8State* active();
// ops::linear's fp8 path; falls back to bf16 (counted) when a dimension is not a multiple of 16.
Tensor linear(Fp8State& state, const Tensor& x, const Tensor& w, const Tensor& b);

}  // namespace fp8
}  // namespace lathe
