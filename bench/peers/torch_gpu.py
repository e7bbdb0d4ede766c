#!/usr/bin/env python3
"""PyTorch peer for `lathe-bench gpu`: times the same case tokens on cuda:0 with synchronised
repeats and prints "RESULT <case> <median ms>". Usage: torch_gpu.py --repeats R CASE..."""
import argparse
import time

import torch
import torch.nn.functional as F


def plan(token):
    kind, dims = token.split(":")
    d = [int(x) for x in dims.split(",")]
    dev, bf = "cuda", torch.bfloat16
    if kind == "gemm_bf16":
        a, b = torch.randn(d[0], d[2], device=dev, dtype=bf), torch.randn(d[2], d[1], device=dev, dtype=bf)
        return lambda: a @ b
    if kind == "gemm_fp8":  # e4m3 x e4m3 -> bf16 with unit scales
        a = torch.randn(d[0], d[2], device=dev).to(torch.float8_e4m3fn)
        b = torch.randn(d[1], d[2], device=dev).to(torch.float8_e4m3fn)
        s = torch.ones((), device=dev, dtype=torch.float32)
        return lambda: torch._scaled_mm(a, b.t(), scale_a=s, scale_b=s, out_dtype=bf)
    if kind in ("linear_bf16_fb", "linear_fp8_fb"):  # fp8: PyTorch's bf16 (no fp8 recipe)
        x = torch.randn(d[0], d[1], device=dev, dtype=bf, requires_grad=True)
        w = (torch.randn(d[2], d[1], device=dev, dtype=bf) * 0.02).requires_grad_(True)
        g = torch.randn(d[0], d[2], device=dev, dtype=bf)
        def lin():
            y = F.linear(x, w)
            torch.autograd.grad(y, (x, w), g)
        return lin
    if kind == "attn_bf16_fb":
        q, k, v = (torch.randn(*d, device=dev, dtype=bf, requires_grad=True) for _ in range(3))
        g = torch.randn(*d, device=dev, dtype=bf)
        def step():
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            torch.autograd.grad(o, (q, k, v), g)
        return step
    if kind in ("attn_bf16_f", "attn_bf16_b"):  # the forward or the backward alone
        q, k, v = (torch.randn(*d, device=dev, dtype=bf, requires_grad=True) for _ in range(3))
        g = torch.randn(*d, device=dev, dtype=bf)
        if kind == "attn_bf16_f":
            def fwd():
                with torch.no_grad():
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return fwd
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # graph kept across repeats
        return lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True)
    if kind == "add_bf16":
        a, b = torch.randn(d[0], device=dev, dtype=bf), torch.randn(d[0], device=dev, dtype=bf)
        return lambda: a + b
    if kind == "softmax_bf16":
        a = torch.randn(d[0], d[1], device=dev, dtype=bf)
        return lambda: F.softmax(a, -1)
    if kind == "layernorm_bf16":
        a = torch.randn(d[0], d[1], device=dev, dtype=bf)
        w, b = torch.ones(d[1], device=dev, dtype=bf), torch.zeros(d[1], device=dev, dtype=bf)
        return lambda: F.layer_norm(a, (d[1],), w, b)
    raise SystemExit(f"unknown case {token}")


def median_ms(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(max(repeats, 1)):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("cases", nargs="+")
    args = ap.parse_args()
    torch.manual_seed(0)
    for c in args.cases:
        print(f"RESULT {c} {median_ms(plan(c), args.repeats):.6f}", flush=True)


if __name__ == "__main__":
    main()
