// Fused flash attention through cuDNN's SDPA graphs (cuDNN frontend v1 graph API; on Hopper
// cuDNN picks its wgmma flash kernels), forward and backward, for f16/bf16. Same contract as
// FlashAttention.h: q [B, H, T, D], k/v [B, Hkv, S, D] contiguous, GQA, causal aligned at the end
// (bottom right), f32 lse [B, H, T] = log-sum-exp of the scaled scores in natural log, which is
// what cuDNN's Stats output holds, so a forward of either path feeds a backward of either path.
//
// Compiled in only when CMake is given the frontend headers (LATHE_CUDNN_FRONTEND_DIR, see
// scripts/gpu-check); otherwise every entry point declines. Cases cuDNN cannot express as we
// define them are declined too, and the caller falls back to our own kernels: any key padding
// (ours is an arbitrary bool mask [B, S], cuDNN's is per-batch lengths), causal with T > S (the
// leading rows see no key; cuDNN rejects bottom-right causal with s_q > s_kv), and anything
// the built graphs report unsupported. By policy also T < 64 with T != S (decoding with a KV
// cache: a new S every step, and building the graphs of a case takes ~0.8 s) and new shapes
// once 64 cases are cached. Built graphs (or the verdict "unsupported") are cached by device,
// dtype, shape, GQA, causal and scale; workspace comes from the caching allocator and everything
// runs on the device's Lathe stream.
#pragma once

#include "core/backend/Backend.h"

namespace lathe::cuda {

// Which fused attention path CudaBackend::attention / attentionBackward prefer for f16/bf16:
// cudnn (the default when compiled in) or own (kernels/cuda/FlashAttention.cu). Read from the
// environment variable LATHE_ATTENTION=own|cudnn on every call, so a process (a test, the bench)
// can switch between calls. A case the preferred path declines goes to the other one.
enum class AttentionPath { own, cudnn };
AttentionPath preferredAttentionPath();

// True when this build has the cuDNN SDPA path (the frontend headers were found).
bool cudnnAttentionCompiled();

// True when cuDNN runs this case (builds and caches both graphs on first use; the verdict is
// cached). False when not compiled in, the GPU is not supported, or the case is declined.
bool cudnnAttentionSupports(const Tensor& q, const Tensor& k, const Tensor* key_padding,
                            const AttentionParams& p);

// Both return false (and do nothing) when the case is not supported, so the caller falls back.
bool cudnnAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                           const Tensor& lse);
bool cudnnAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                            const Tensor& lse, const Tensor& gout, const Tensor& gq,
                            const Tensor& gk, const Tensor& gv);

}  // namespace lathe::cuda
