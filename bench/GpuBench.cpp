// lathe-bench gpu: GEMM TFLOP/s (bf16, and fp8 against torch._scaled_mm), a linear layer's
// forward + backward in bf16 and in fp8 (Lathe's fp8 recipe against PyTorch's bf16: plain
// PyTorch has no fp8 training recipe), attention TFLOP/s (fwd+bwd, and the forward (_f) and the
// backward (_b) alone) and memory-bound kernels in GB/s on cuda:0, each next to PyTorch measured
// in the same run (bench/peers/torch_gpu.py). Times are medians of device-synchronised repeats.
// Attention runs twice: attn_bf16_* under LATHE_ATTENTION=cudnn (cuDNN's SDPA when the build has
// the cuDNN frontend, else our kernel) and attn_bf16_*_own under LATHE_ATTENTION=own (our
// tensor-core kernel); both are compared with the same PyTorch time.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "bench/Suites.h"
#include "bench/Timing.h"
#include "core/ops/Fp8.h"
#include "core/ops/Ops.h"

namespace lathe::bench {
namespace {

const Device kGpu = Device::cuda(0);

std::vector<int64_t> dimsOf(const std::string& token) {
  std::vector<int64_t> d;
  std::istringstream s(token.substr(token.find(':') + 1));
  std::string part;
  while (std::getline(s, part, ',')) d.push_back(std::stoll(part));
  return d;
}

struct Case {
  std::function<void()> fn;
  double flops = 0, bytes = 0;
};

// "attn_bf16_fb_own:..." -> "attn_bf16_fb:..." (the same case on our own attention kernel).
bool isOwn(const std::string& token) {
  const std::string kind = token.substr(0, token.find(':'));
  return kind.size() > 4 && kind.compare(kind.size() - 4, 4, "_own") == 0;
}
std::string peerToken(const std::string& token) {
  if (!isOwn(token)) return token;
  const size_t colon = token.find(':');
  return token.substr(0, colon - 4) + token.substr(colon);
}

Case plan(const std::string& token) {
  const std::string base = peerToken(token);  // the _own cases plan the same work
  const std::string kind = base.substr(0, base.find(':'));
  const auto d = dimsOf(token);
  auto req = [](Tensor t) { return t.setRequiresGrad(true); };
  if (kind == "gemm_bf16") {  // M,N,K
    Tensor a = randn({d[0], d[2]}, DType::bf16, kGpu), b = randn({d[2], d[1]}, DType::bf16, kGpu);
    return {[=] { matmul(a, b); }, 2.0 * d[0] * d[1] * d[2], 0};
  }
  if (kind == "gemm_fp8") {  // M,N,K: e4m3 [M,K] x e4m3 [N,K]^T -> bf16 (cuBLASLt, scaled)
    const Tensor a = randn({d[0], d[2]}, DType::f32, kGpu).to(DType::f8e4m3);
    const Tensor b = randn({d[1], d[2]}, DType::f32, kGpu).to(DType::f8e4m3);
    const Tensor s = Tensor::ones({1}, DType::f32, kGpu);
    const Tensor out = Tensor::empty({d[0], d[1]}, DType::bf16, kGpu);
    return {[=] { backendFor(DeviceType::cuda).matmulFp8(a, b, s, s, nullptr, out); },
            2.0 * d[0] * d[1] * d[2], 0};
  }
  if (kind == "linear_bf16_fb" || kind == "linear_fp8_fb") {  // rows,in,out: fwd + both grads
    // fp8: f32 master weight and bf16 activations as in training, quantization and delayed
    // scaling included; bf16: a bf16 weight, as the PyTorch peer.
    const bool fp8 = kind == "linear_fp8_fb";
    Tensor x = req(randn({d[0], d[1]}, DType::bf16, kGpu));
    Tensor w = req(mul(randn({d[2], d[1]}, fp8 ? DType::f32 : DType::bf16, kGpu), 0.02).detach());
    const Tensor g = randn({d[0], d[2]}, DType::bf16, kGpu);
    auto state = std::make_shared<Fp8State>();
    return {[=] {
              std::optional<Fp8AutocastGuard> guard;
              if (fp8) guard.emplace(*state);
              Tensor y = linear(x, w);
              grad({y}, {g}, {x, w});
            },
            6.0 * d[0] * d[1] * d[2], 0};
  }
  if (kind == "attn_bf16_fb") {  // B,H,T,D causal fwd+bwd; FLOPs as FlashAttention counts them
    Tensor q = req(randn({d[0], d[1], d[2], d[3]}, DType::bf16, kGpu));
    Tensor k = req(randn({d[0], d[1], d[2], d[3]}, DType::bf16, kGpu));
    Tensor v = req(randn({d[0], d[1], d[2], d[3]}, DType::bf16, kGpu));
    Tensor g = randn({d[0], d[1], d[2], d[3]}, DType::bf16, kGpu);
    const double fwd = 4.0 * d[0] * d[1] * d[2] * d[2] * d[3] / 2;  // causal halves the work
    return {[=] {
              Tensor o = scaledDotProductAttention(q, k, v, true);
              grad({o}, {g}, {q, k, v});
            },
            3.5 * fwd, 0};
  }
  if (kind == "attn_bf16_f" || kind == "attn_bf16_b") {  // the forward or the backward alone
    Tensor q = req(randn({d[0], d[1], d[2], d[3]}, DType::bf16, kGpu));
    Tensor k = req(randn({d[0], d[1], d[2], d[3]}, DType::bf16, kGpu));
    Tensor v = req(randn({d[0], d[1], d[2], d[3]}, DType::bf16, kGpu));
    Tensor g = randn({d[0], d[1], d[2], d[3]}, DType::bf16, kGpu);
    const double fwd = 4.0 * d[0] * d[1] * d[2] * d[2] * d[3] / 2;
    if (kind == "attn_bf16_f")
      return {[=] { scaledDotProductAttention(q.detach(), k.detach(), v.detach(), true); }, fwd, 0};
    Tensor o = scaledDotProductAttention(q, k, v, true);  // graph kept across repeats
    return {[=] { grad({o}, {g}, {q, k, v}, true); }, 2.5 * fwd, 0};
  }
  if (kind == "add_bf16") {  // N elements: read 2, write 1
    Tensor a = randn({d[0]}, DType::bf16, kGpu), b = randn({d[0]}, DType::bf16, kGpu);
    return {[=] { add(a, b); }, 0, 3.0 * 2 * d[0]};
  }
  if (kind == "softmax_bf16") {  // rows, cols: read 1, write 1
    Tensor a = randn({d[0], d[1]}, DType::bf16, kGpu);
    return {[=] { softmax(a, -1); }, 0, 2.0 * 2 * d[0] * d[1]};
  }
  if (kind == "layernorm_bf16") {
    Tensor a = randn({d[0], d[1]}, DType::bf16, kGpu), w = Tensor::ones({d[1]}, DType::bf16, kGpu),
           b = Tensor::zeros({d[1]}, DType::bf16, kGpu);
    return {[=] { layerNorm(a, w, b); }, 0, 2.0 * 2 * d[0] * d[1]};
  }
  fail("unknown gpu benchmark case ", token);
}

const std::vector<std::string> kCases = {
    "gemm_fp8:8192,8192,8192",        "gemm_fp8:16384,768,3072",
    "linear_bf16_fb:16384,4096,4096", "linear_fp8_fb:16384,4096,4096",
    "linear_bf16_fb:8192,3072,768",   "linear_fp8_fb:8192,3072,768",
    "gemm_bf16:4096,4096,4096",       "gemm_bf16:8192,8192,8192",
    "gemm_bf16:16384,768,3072",       "attn_bf16_fb:8,16,1024,64",
    "attn_bf16_fb_own:8,16,1024,64",  "attn_bf16_fb:4,16,2048,128",
    "attn_bf16_fb_own:4,16,2048,128", "attn_bf16_fb:2,16,4096,64",
    "attn_bf16_fb_own:2,16,4096,64",  "attn_bf16_f:8,16,1024,64",
    "attn_bf16_f_own:8,16,1024,64",   "attn_bf16_f:4,16,2048,128",
    "attn_bf16_f_own:4,16,2048,128",  "attn_bf16_f:2,16,4096,64",
    "attn_bf16_f_own:2,16,4096,64",   "attn_bf16_b:8,16,1024,64",
    "attn_bf16_b_own:8,16,1024,64",   "attn_bf16_b:4,16,2048,128",
    "attn_bf16_b_own:4,16,2048,128",  "attn_bf16_b:2,16,4096,64",
    "attn_bf16_b_own:2,16,4096,64",   "add_bf16:268435456",
    "softmax_bf16:65536,4096",        "layernorm_bf16:65536,768",
};

}  // namespace

int runGpu(const Options& opts) {
  if (!hasBackend(DeviceType::cuda)) {
    std::cout << "lathe-bench gpu: no GPU found; nothing to measure\n";
    return 0;
  }
  std::vector<std::string> cases;
  for (const auto& c : kCases)
    if (opts.filter.empty() || c.find(opts.filter) != std::string::npos) cases.push_back(c);
  std::map<std::string, double> peer;
  std::string why = "skipped (--no-peer)";
  if (!opts.no_peer) {
    std::vector<std::string> args = {"--repeats", std::to_string(opts.repeats)};
    std::set<std::string> asked;
    for (const auto& c : cases)
      if (asked.insert(peerToken(c)).second) args.push_back(peerToken(c));
    peer = runPeer("torch_gpu.py", args, why);
  }
  std::cout << "lathe-bench gpu: cuda:0, median of " << opts.repeats
            << " synchronised runs; rate = TFLOP/s (compute) or GB/s (memory)\n";
  if (peer.empty()) std::cout << "PyTorch peer: " << why << "\n";
  std::cout << "attention: attn_bf16_* with LATHE_ATTENTION=cudnn (cuDNN SDPA when built with the "
               "cuDNN frontend), attn_bf16_*_own with LATHE_ATTENTION=own (Lathe's kernel)\n";
  const char* env = std::getenv("LATHE_ATTENTION");
  const std::string saved_env = env ? env : "";
  Table table(
      {"case", "lathe ms", "lathe rate", "pytorch ms", "pytorch rate", "lathe/pytorch speed"});
  Backend& gpu = backendFor(DeviceType::cuda);
  for (const auto& c : cases) {
    try {
      if (c.rfind("attn", 0) == 0) setenv("LATHE_ATTENTION", isOwn(c) ? "own" : "cudnn", 1);
      Case k = plan(c);
      const double ms = medianMs(
          [&] {
            k.fn();
            gpu.synchronize(0);
          },
          opts.repeats);
      auto rate = [&](double t) {
        return k.flops > 0 ? fmt(k.flops / t / 1e9, 1) + " TF"
                           : fmt(k.bytes / t / 1e6, 0) + " GB/s";
      };
      auto it = peer.find(peerToken(c));
      table.add({c, fmt(ms), rate(ms), it != peer.end() ? fmt(it->second) : "-",
                 it != peer.end() ? rate(it->second) : "-",
                 it != peer.end() ? fmt(it->second / ms, 2) : "-"});
    } catch (const Error& e) {
      table.add({c, std::string("error: ") + e.what()});
    }
  }
  if (env)
    setenv("LATHE_ATTENTION", saved_env.c_str(), 1);
  else
    unsetenv("LATHE_ATTENTION");
  table.print();
  return 0;
}

}  // namespace lathe::bench
