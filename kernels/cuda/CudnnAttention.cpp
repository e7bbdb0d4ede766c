// cuDNN SDPA (flash) forward and backward through the cuDNN frontend v1 graph API; see
// CudnnAttention.h for the contract and what is declined. Host code only: the frontend is a
// header-only C++ library over the cuDNN backend API (libcudnn, already linked for Conv.cu).
// A .cpp (host compiler), not a .cu: nvcc's front end takes minutes over the frontend's headers.
//
// One forward graph (Q, K, V -> O, Stats) and one backward graph (Q, K, V, O, dO, Stats -> dQ,
// dK, dV) per (device, dtype, B, H, Hkv, T, S, D, causal, scale). A case counts as supported
// only when both graphs build, so a forward and its backward never split between paths because
// of support (they could: cuDNN's Stats and our lse are the same quantity). Causal is cuDNN's
// diagonal band with right bound 0: top-left aligned when T == S, bottom-right when T < S (our
// "aligned at the end"); T > S is declined (rows with no visible key).
#include "kernels/cuda/CudnnAttention.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "core/base/Error.h"
#include "core/tensor/Allocator.h"

#ifdef LATHE_HAVE_CUDNN_FRONTEND
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <cudnn_frontend.h>
#endif

namespace lathe::cuda {

AttentionPath preferredAttentionPath() {
  const char* e = std::getenv("LATHE_ATTENTION");
  if (e != nullptr && std::strcmp(e, "own") == 0) return AttentionPath::own;
  return AttentionPath::cudnn;
}

#ifndef LATHE_HAVE_CUDNN_FRONTEND

bool cudnnAttentionCompiled() {
  return false;
}
bool cudnnAttentionSupports(const Tensor&, const Tensor&, const Tensor*, const AttentionParams&) {
  return false;
}
bool cudnnAttentionForward(const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                           const AttentionParams&, const Tensor&, const Tensor&) {
  return false;
}
bool cudnnAttentionBackward(const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                            const AttentionParams&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, const Tensor&, const Tensor&) {
  return false;
}

#else

namespace {

namespace fe = cudnn_frontend;
}  // namespace

// From CudaCommon.cuh (a CUDA header; this file is plain C++).
cudaStream_t streamFor(int device);
void setDevice(int device);

namespace {

enum Uid : fe::graph::Tensor_attributes::uid_t {
  kQ = 1,
  kK,
  kV,
  kO,
  kStats,
  kDO,
  kDQ,
  kDK,
  kDV,
};

// LATHE_ATTENTION_VERBOSE=1: say once per shape which path cuDNN took or why it declined.
bool verbose() {
  static const bool on = [] {
    const char* e = std::getenv("LATHE_ATTENTION_VERBOSE");
    return e != nullptr && e[0] == '1';
  }();
  return on;
}

std::mutex handle_mutex;
cudnnHandle_t handleFor(int dev) {
  static std::map<int, cudnnHandle_t> handles;
  std::lock_guard<std::mutex> lock(handle_mutex);
  cudnnHandle_t& h = handles[dev];
  if (h == nullptr) {
    setDevice(dev);
    cudnnStatus_t st = cudnnCreate(&h);
    if (st != CUDNN_STATUS_SUCCESS) {
      h = nullptr;
      fail("cuDNN error in cudnnCreate: ", cudnnGetErrorString(st));
    }
    st = cudnnSetStream(h, streamFor(dev));
    if (st != CUDNN_STATUS_SUCCESS)
      fail("cuDNN error in cudnnSetStream: ", cudnnGetErrorString(st));
  }
  return h;
}

struct Dims {
  int64_t B, H, Hkv, T, S, D;
  float scale;
  bool causal;
};

// Shape-level checks that do not need cuDNN; the rest is up to the graph build.
bool precheck(const Tensor& q, const Tensor& k, const Tensor* key_padding, const AttentionParams& p,
              Dims& d) {
  if (key_padding != nullptr) return false;  // arbitrary bool masks: not expressible
  if (q.dtype() != DType::bf16 && q.dtype() != DType::f16) return false;
  if (q.dim() != 4 || k.dim() != 4 || k.dtype() != q.dtype()) return false;
  if (!q.device().isCuda() || k.device() != q.device()) return false;
  d = {q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3), 0.f, p.causal};
  if (k.size(0) != d.B || k.size(3) != d.D) return false;
  if (d.B <= 0 || d.H <= 0 || d.Hkv <= 0 || d.T <= 0 || d.S <= 0 || d.H % d.Hkv != 0) return false;
  if (d.D % 8 != 0 || d.D > 256) return false;
  if (d.causal && d.T > d.S) return false;  // leading rows with no visible key
  // Few queries against a longer key sequence is decoding with a KV cache: S grows every step,
  // and building the graphs of a new shape (~0.8 s on H100) would cost far more than it saves.
  if (d.T < 64 && d.T != d.S) return false;
  const double scale = p.scale != 0.0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(d.D));
  if (!std::isfinite(scale)) return false;
  d.scale = static_cast<float>(scale);
  return true;
}

// Contiguous and 16-byte aligned.
bool usable(const Tensor& t) {
  return t.isContiguous() && (reinterpret_cast<uintptr_t>(t.rawData()) & 15u) == 0;
}

fe::DataType_t feType(DType t) {
  return t == DType::bf16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF;
}

std::shared_ptr<fe::graph::Tensor_attributes> bhsd(fe::graph::Graph& g, const char* name, Uid uid,
                                                   int64_t B, int64_t H, int64_t S, int64_t D) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(name)
                      .set_uid(uid)
                      .set_dim({B, H, S, D})
                      .set_stride({H * S * D, S * D, D, 1}));
}

template <typename Attr>
void setCausal(Attr& a, const Dims& d) {
  if (!d.causal) return;
  a.set_diagonal_alignment(d.T == d.S ? fe::DiagonalAlignment_t::TOP_LEFT
                                      : fe::DiagonalAlignment_t::BOTTOM_RIGHT)
      .set_diagonal_band_right_bound(0);
}

std::shared_ptr<fe::graph::Graph> makeForward(const Dims& d, DType dt) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(feType(dt))
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  auto Q = bhsd(*g, "Q", kQ, d.B, d.H, d.T, d.D);
  auto K = bhsd(*g, "K", kK, d.B, d.Hkv, d.S, d.D);
  auto V = bhsd(*g, "V", kV, d.B, d.Hkv, d.S, d.D);
  auto opts = fe::graph::SDPA_attributes()
                  .set_name("lathe_sdpa")
                  .set_generate_stats(true)
                  .set_attn_scale(d.scale);
  setCausal(opts, d);
  auto [O, Stats] = g->sdpa(Q, K, V, opts);
  O->set_output(true)
      .set_uid(kO)
      .set_dim({d.B, d.H, d.T, d.D})
      .set_stride({d.H * d.T * d.D, d.T * d.D, d.D, 1});
  Stats->set_output(true)
      .set_uid(kStats)
      .set_data_type(fe::DataType_t::FLOAT)
      .set_dim({d.B, d.H, d.T, 1})
      .set_stride({d.H * d.T, d.T, 1, 1});
  return g;
}

std::shared_ptr<fe::graph::Graph> makeBackward(const Dims& d, DType dt) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(feType(dt))
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  auto Q = bhsd(*g, "Q", kQ, d.B, d.H, d.T, d.D);
  auto K = bhsd(*g, "K", kK, d.B, d.Hkv, d.S, d.D);
  auto V = bhsd(*g, "V", kV, d.B, d.Hkv, d.S, d.D);
  auto O = bhsd(*g, "O", kO, d.B, d.H, d.T, d.D);
  auto dO = bhsd(*g, "dO", kDO, d.B, d.H, d.T, d.D);
  auto Stats = g->tensor(fe::graph::Tensor_attributes()
                             .set_name("Stats")
                             .set_uid(kStats)
                             .set_dim({d.B, d.H, d.T, 1})
                             .set_stride({d.H * d.T, d.T, 1, 1})
                             .set_data_type(fe::DataType_t::FLOAT));
  auto opts =
      fe::graph::SDPA_backward_attributes().set_name("lathe_sdpa_backward").set_attn_scale(d.scale);
  setCausal(opts, d);
  auto [dQ, dK, dV] = g->sdpa_backward(Q, K, V, O, dO, Stats, opts);
  dQ->set_output(true)
      .set_uid(kDQ)
      .set_dim({d.B, d.H, d.T, d.D})
      .set_stride({d.H * d.T * d.D, d.T * d.D, d.D, 1});
  dK->set_output(true)
      .set_uid(kDK)
      .set_dim({d.B, d.Hkv, d.S, d.D})
      .set_stride({d.Hkv * d.S * d.D, d.S * d.D, d.D, 1});
  dV->set_output(true)
      .set_uid(kDV)
      .set_dim({d.B, d.Hkv, d.S, d.D})
      .set_stride({d.Hkv * d.S * d.D, d.S * d.D, d.D, 1});
  return g;
}

// validate -> operation graph -> heuristic plans -> support check -> plan build. Returns the
// first error's message, or "" when the graph is ready.
std::string build(fe::graph::Graph& g, cudnnHandle_t h, int64_t& workspace) {
  auto why = [](const char* step, const fe::error_t& e) {
    return std::string(step) + ": " + e.err_msg;
  };
  if (const fe::error_t e = g.validate(); e.is_bad()) return why("validate", e);
  if (const fe::error_t e = g.build_operation_graph(h); e.is_bad())
    return why("build_operation_graph", e);
  if (const fe::error_t e = g.create_execution_plans({fe::HeurMode_t::A}); e.is_bad())
    return why("create_execution_plans", e);
  if (const fe::error_t e = g.check_support(); e.is_bad()) return why("check_support", e);
  if (const fe::error_t e = g.build_plans(fe::BuildPlanPolicy_t::HEURISTICS_CHOICE); e.is_bad())
    return why("build_plans", e);
  if (const fe::error_t e = g.get_workspace_size(workspace); e.is_bad())
    return why("get_workspace_size", e);
  return "";
}

struct Plans {
  bool ok = false;
  std::shared_ptr<fe::graph::Graph> fwd, bwd;
  int64_t ws_fwd = 0, ws_bwd = 0;
};

using Key =
    std::tuple<int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, uint32_t>;
std::mutex plan_mutex;
// Distinct cases built per process at most (forward + backward graphs take ~0.8 s of host
// time); later new shapes (say, a loop over many sequence lengths) go to our kernels instead.
constexpr size_t kMaxCases = 64;

// The cached plans of a case (built on first use; a failed build is cached as unsupported).
const Plans& plansFor(int dev, DType dt, const Dims& d) {
  static std::map<Key, Plans> cache;
  static const Plans full;  // declined, not cached
  uint32_t scale_bits = 0;
  std::memcpy(&scale_bits, &d.scale, sizeof scale_bits);
  const Key key{dev, static_cast<int>(dt), d.B, d.H, d.Hkv, d.T, d.S, d.D, d.causal, scale_bits};
  std::lock_guard<std::mutex> lock(plan_mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= kMaxCases) return full;
  Plans p;
  std::string why;
  try {
    setDevice(dev);
    cudnnHandle_t h = handleFor(dev);
    p.fwd = makeForward(d, dt);
    why = build(*p.fwd, h, p.ws_fwd);
    if (why.empty()) {
      p.bwd = makeBackward(d, dt);
      why = build(*p.bwd, h, p.ws_bwd);
      if (!why.empty()) why = "backward " + why;
    } else {
      why = "forward " + why;
    }
  } catch (const std::exception& e) {
    why = std::string("exception: ") + e.what();
  }
  cudaGetLastError();  // a failed probe must not leave a sticky-looking error behind
  p.ok = why.empty();
  if (!p.ok) p.fwd.reset(), p.bwd.reset();
  if (verbose())
    std::cerr << "lathe attention: cuDNN SDPA " << dtypeName(dt) << " B" << d.B << " H" << d.H
              << "/" << d.Hkv << " T" << d.T << " S" << d.S << " D" << d.D
              << (d.causal ? " causal" : "") << " scale " << d.scale << ": "
              << (p.ok ? "supported (workspace " + std::to_string(p.ws_fwd) + " / " +
                             std::to_string(p.ws_bwd) + " bytes)"
                       : "declined (" + why + ")")
              << "\n";
  return cache.emplace(key, std::move(p)).first->second;
}

const Plans* lookup(const Tensor& q, const Tensor& k, const Tensor* key_padding,
                    const AttentionParams& p) {
  Dims d{};
  if (!precheck(q, k, key_padding, p, d)) return nullptr;
  const Plans& pl = plansFor(q.device().index, q.dtype(), d);
  return pl.ok ? &pl : nullptr;
}

void execute(const fe::graph::Graph& g, int dev, int64_t ws_bytes,
             std::unordered_map<fe::graph::Tensor_attributes::uid_t, void*>& pack) {
  setDevice(dev);
  cudnnHandle_t h = handleFor(dev);
  Tensor ws;
  void* ws_ptr = nullptr;
  if (ws_bytes > 0) {
    MemoryTagScope tag(MemoryTag::workspace);
    ws = Tensor::empty({ws_bytes}, DType::u8, Device::cuda(dev));
    ws_ptr = ws.rawData();
  }
  const fe::error_t e = g.execute(h, pack, ws_ptr);
  if (e.is_bad()) fail("cuDNN SDPA execute failed: ", e.err_msg);
  // ws goes back to the caching allocator here; the stream orders its reuse after this work.
}

}  // namespace

bool cudnnAttentionCompiled() {
  return true;
}

bool cudnnAttentionSupports(const Tensor& q, const Tensor& k, const Tensor* key_padding,
                            const AttentionParams& p) {
  return lookup(q, k, key_padding, p) != nullptr;
}

bool cudnnAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                           const Tensor& lse) {
  if (lse.dtype() != DType::f32 || !lse.isContiguous() || out.dtype() != q.dtype() ||
      v.dtype() != q.dtype())
    return false;
  for (const Tensor* t : {&q, &k, &v, &out})
    if (!usable(*t)) return false;
  const Plans* pl = lookup(q, k, key_padding, p);
  if (pl == nullptr) return false;
  std::unordered_map<fe::graph::Tensor_attributes::uid_t, void*> pack = {
      {kQ, q.rawData()},   {kK, k.rawData()},       {kV, v.rawData()},
      {kO, out.rawData()}, {kStats, lse.rawData()},
  };
  execute(*pl->fwd, out.device().index, pl->ws_fwd, pack);
  return true;
}

bool cudnnAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                            const Tensor& lse, const Tensor& gout, const Tensor& gq,
                            const Tensor& gk, const Tensor& gv) {
  if (lse.dtype() != DType::f32 || !lse.isContiguous()) return false;
  for (const Tensor* t : {&v, &out, &gout, &gq, &gk, &gv})
    if (t->dtype() != q.dtype()) return false;
  for (const Tensor* t : {&q, &k, &v, &out, &gout, &gq, &gk, &gv})
    if (!usable(*t)) return false;
  const Plans* pl = lookup(q, k, key_padding, p);
  if (pl == nullptr) return false;
  std::unordered_map<fe::graph::Tensor_attributes::uid_t, void*> pack = {
      {kQ, q.rawData()},   {kK, k.rawData()},     {kV, v.rawData()},
      {kO, out.rawData()}, {kDO, gout.rawData()}, {kStats, lse.rawData()},
      {kDQ, gq.rawData()}, {kDK, gk.rawData()},   {kDV, gv.rawData()},
  };
  execute(*pl->bwd, gq.device().index, pl->ws_bwd, pack);
  return true;
}

#endif  // LATHE_HAVE_CUDNN_FRONTEND

}  // namespace lathe::cuda
