// lathe-bench ops: core op timings (median ms) against PyTorch CPU at the same thread count.
// A case is a token "kind:dims" that this file and bench/peers/torch_ops.py both parse, so the
// two sides always run the same shapes.
#include <iostream>
#include <sstream>

#include "bench/Suites.h"
#include "bench/Timing.h"
#include "core/ops/Ops.h"
#include "kernels/cpu/CpuBackend.h"

namespace lathe::bench {
namespace {

std::vector<int64_t> dimsOf(const std::string& token) {
  std::vector<int64_t> d;
  std::istringstream s(token.substr(token.find(':') + 1));
  std::string part;
  while (std::getline(s, part, ',')) d.push_back(std::stoll(part));
  return d;
}

// Builds the Lathe closure for a case; inputs are created once, outside the timed region.
std::function<void()> lathePlan(const std::string& token) {
  const std::string kind = token.substr(0, token.find(':'));
  const auto d = dimsOf(token);
  auto req = [](Tensor t) { return t.setRequiresGrad(true); };
  if (kind == "mm") {  // M,K,N
    Tensor a = randn({d[0], d[1]}), b = randn({d[1], d[2]});
    return [=] { matmul(a, b); };
  }
  if (kind == "bmm") {  // B,M,K,N
    Tensor a = randn({d[0], d[1], d[2]}), b = randn({d[0], d[2], d[3]});
    return [=] { matmul(a, b); };
  }
  if (kind == "linear_fb") {  // N,in,out: forward + backward
    Tensor x = req(randn({d[0], d[1]})), w = req(randn({d[2], d[1]})), b = req(randn({d[2]}));
    return [=] {
      Tensor y = linear(x, w, b);
      sum(y).backward();
    };
  }
  if (kind == "conv_f" || kind == "conv_fb") {  // N,Cin,H,W,Cout,k,pad
    Tensor x = randn({d[0], d[1], d[2], d[3]}), w = randn({d[4], d[1], d[5], d[5]}),
           b = randn({d[4]});
    Conv2dParams p;
    p.pad_h = p.pad_w = static_cast<int>(d[6]);
    if (kind == "conv_f") return [=] { conv2d(x, w, b, p); };
    Tensor xr = req(x), wr = req(w), br = req(b);
    return [=] { sum(conv2d(xr, wr, br, p)).backward(); };
  }
  if (kind == "softmax_fb") {  // N,C
    Tensor x = req(randn({d[0], d[1]}));
    return [=] { sum(mul(softmax(x, -1), x.detach())).backward(); };
  }
  if (kind == "layernorm_fb") {  // N,C
    Tensor x = req(randn({d[0], d[1]})), w = req(Tensor::ones({d[1]})),
           b = req(Tensor::zeros({d[1]}));
    return [=] { sum(mul(layerNorm(x, w, b), x.detach())).backward(); };
  }
  if (kind == "attn_fb") {  // B,H,T,D causal
    Tensor q = req(randn({d[0], d[1], d[2], d[3]})), k = req(randn({d[0], d[1], d[2], d[3]})),
           v = req(randn({d[0], d[1], d[2], d[3]}));
    return [=] { sum(scaledDotProductAttention(q, k, v, true)).backward(); };
  }
  fail("unknown benchmark case ", token);
}

const std::vector<std::string> kCases = {
    "mm:64,784,256",
    "mm:512,512,512",
    "mm:1024,1024,1024",
    "bmm:32,128,64,128",
    "linear_fb:64,784,256",
    "conv_f:64,1,28,28,32,3,1",
    "conv_f:64,32,14,14,64,3,1",
    "conv_fb:64,1,28,28,32,3,1",
    "conv_fb:64,32,14,14,64,3,1",
    "softmax_fb:8192,1024",
    "layernorm_fb:8192,768",
    "attn_fb:4,8,512,64",
};

}  // namespace

int runOps(const Options& opts) {
  if (opts.threads > 0) cpu::setNumThreads(opts.threads);
  const int threads = cpu::numThreads();
  std::vector<std::string> cases;
  for (const auto& c : kCases)
    if (opts.filter.empty() || c.find(opts.filter) != std::string::npos) cases.push_back(c);

  std::map<std::string, double> peer;
  std::string why = "skipped (--no-peer)";
  if (!opts.no_peer) {
    std::vector<std::string> args = {"--threads", std::to_string(threads), "--repeats",
                                     std::to_string(opts.repeats)};
    args.insert(args.end(), cases.begin(), cases.end());
    peer = runPeer("torch_ops.py", args, why);
  }
  std::cout << "lathe-bench ops: median of " << opts.repeats << " runs, " << threads
            << " thread(s); ratio = Lathe time / PyTorch time (goal <= 1.3 for matmul/conv)\n";
  if (peer.empty()) std::cout << "PyTorch peer: " << why << "\n";
  Table table({"case", "lathe ms", "pytorch ms", "ratio"});
  for (const auto& c : cases) {
    double ms = 0;
    try {
      auto fn = lathePlan(c);
      ms = medianMs(fn, opts.repeats);
    } catch (const Error& e) {
      table.add({c, std::string("error: ") + e.what(), "", ""});
      continue;
    }
    auto it = peer.find(c);
    table.add({c, fmt(ms), it != peer.end() ? fmt(it->second) : "-",
               it != peer.end() ? fmt(ms / it->second, 2) : "-"});
  }
  table.print();
  return 0;
}

}  // namespace lathe::bench
