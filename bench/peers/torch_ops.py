#!/usr/bin/env python3
"""PyTorch peer for `lathe-bench ops`: times the same case tokens ("kind:dims") on the CPU and
prints "RESULT <case> <median ms>" lines. Usage: torch_ops.py --threads N --repeats R CASE..."""
import argparse
import time

import torch
import torch.nn.functional as F


def plan(token):
    kind, dims = token.split(":")
    d = [int(x) for x in dims.split(",")]
    req = lambda t: t.requires_grad_(True)
    if kind == "mm":
        a, b = torch.randn(d[0], d[1]), torch.randn(d[1], d[2])
        return lambda: a @ b
    if kind == "bmm":
        a, b = torch.randn(d[0], d[1], d[2]), torch.randn(d[0], d[2], d[3])
        return lambda: a @ b
    if kind == "linear_fb":
        x, w, b = req(torch.randn(d[0], d[1])), req(torch.randn(d[2], d[1])), req(torch.randn(d[2]))
        return lambda: F.linear(x, w, b).sum().backward()
    if kind in ("conv_f", "conv_fb"):
        x = torch.randn(d[0], d[1], d[2], d[3])
        w, b = torch.randn(d[4], d[1], d[5], d[5]), torch.randn(d[4])
        if kind == "conv_f":
            return lambda: F.conv2d(x, w, b, padding=d[6])
        x, w, b = req(x), req(w), req(b)
        return lambda: F.conv2d(x, w, b, padding=d[6]).sum().backward()
    if kind == "softmax_fb":
        x = req(torch.randn(d[0], d[1]))
        return lambda: (F.softmax(x, -1) * x.detach()).sum().backward()
    if kind == "layernorm_fb":
        x = req(torch.randn(d[0], d[1]))
        w, b = req(torch.ones(d[1])), req(torch.zeros(d[1]))
        return lambda: (F.layer_norm(x, (d[1],), w, b) * x.detach()).sum().backward()
    if kind == "attn_fb":
        q, k, v = (req(torch.randn(d[0], d[1], d[2], d[3])) for _ in range(3))
        mask = torch.ones(d[2], d[2], dtype=torch.bool).tril()
        scale = d[3] ** -0.5
        if hasattr(F, "scaled_dot_product_attention"):
            return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
        def composed():
            s = (q @ k.transpose(-1, -2) * scale).masked_fill(~mask, float("-inf"))
            (F.softmax(s, -1) @ v).sum().backward()
        return composed
    raise SystemExit(f"unknown case {token}")


def median_ms(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(repeats, 1)):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("cases", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for c in args.cases:
        print(f"RESULT {c} {median_ms(plan(c), args.repeats):.6f}", flush=True)


if __name__ == "__main__":
    main()
