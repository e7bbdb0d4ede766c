// Tensor-core (mma.sync) FlashAttention-2 forward and backward for the CUDA backend: f16/bf16
// inputs with head dim 64 or 128, f32 accumulation, f32 lse. Same semantics as the generic
// kernels in Attention.cu (q [B, H, T, D], k/v [B, Hkv, S, D] contiguous, GQA, causal aligned at
// the end, optional key padding bool [B, S], rows with no visible key: out 0, lse -inf, zero
// gradients). Plain C++ header (no CUDA types), so tests can call the entry points directly.
#pragma once

#include "core/backend/Backend.h"

namespace lathe::cuda {

// True when the tensor-core path handles this case (dtype f16/bf16, D 64 or 128, positive
// scale, 16-byte aligned data, sizes within the grid limits).
bool flashAttentionSupports(const Tensor& q, const Tensor& k, const AttentionParams& p);

// Both return false (and do nothing) when the case is not supported, so the caller falls back
// to the generic kernels. Outputs are written in full (they may be uninitialised on entry).
bool flashAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                           const Tensor& lse);
bool flashAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                            const Tensor& lse, const Tensor& gout, const Tensor& gq,
                            const Tensor& gk, const Tensor& gv);

}  // namespace lathe::cuda
