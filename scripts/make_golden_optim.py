#!/usr/bin/env python3
"""Writes tests/data/golden/optim_*.json: five optimizer steps that torch.optim computes in float64
on a small model (Embedding -> Linear -> LayerNorm -> Linear without bias, MSE loss), which
tests/core/OptimTest.cpp replays with lathe::optim. Run with Debian's PyTorch:
    /usr/bin/python3 scripts/make_golden_optim.py
The parameter groups follow Lathe's DecayRule: "matricesOnly" decays the two Linear weights only
(no decay for biases, LayerNorm and the Embedding table), "all" decays everything. Each file:
  {"generator", "options": {...}, "inputs": {ids, target}, "initial": {param: packed},
   "steps": [{"lr", "loss", "norm", "params": {param: packed}}], "state": {"<param>.<name>": packed}}
with packed = {"shape": [...], "data": [...]}; "norm" is the global gradient L2 norm before
clipping (clip_grad_norm_ when options.max_norm is present) and "state" the optimizer state after
the last step under PyTorch's names (momentum_buffer, exp_avg, exp_avg_sq)."""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "golden")
STEPS = 5
# Registration order of the C++ test model.
NAMES = ["emb.weight", "fc.weight", "fc.bias", "ln.weight", "ln.bias", "head.weight"]
MATRICES = {"fc.weight", "head.weight"}


def pack(t):
    t = t.detach().contiguous()
    return {"shape": list(t.shape), "data": [float(v) for v in t.flatten().tolist()]}


def initial():
    torch.manual_seed(20261124)
    p = {"emb.weight": torch.randn(6, 4), "fc.weight": torch.randn(3, 4) * 0.5,
         "fc.bias": torch.randn(3) * 0.5, "ln.weight": 1.0 + 0.1 * torch.randn(3),
         "ln.bias": 0.1 * torch.randn(3), "head.weight": torch.randn(2, 3) * 0.5}
    # Ids leave embedding row 5 unused: its gradient is 0, so it moves only if it is (wrongly)
    # decayed.
    ids = torch.tensor([[0, 3, 1], [4, 2, 3]])
    target = torch.randn(2, 3, 2)
    return {k: p[k].clone().requires_grad_(True) for k in NAMES}, ids, target


def forward(p, ids):
    x = F.embedding(ids, p["emb.weight"])
    x = F.linear(x, p["fc.weight"], p["fc.bias"])
    x = F.layer_norm(x, (3,), p["ln.weight"], p["ln.bias"])
    return F.linear(x, p["head.weight"])


def schedule_lr(base, s, sched):
    """The LrSchedule formulas of core/optim/LrSchedule.h, written independently."""
    if sched is None:
        return base
    warmup, total = sched["warmup_steps"], sched["total_steps"]
    if s < warmup:
        return base * (s + 1) / warmup
    lo = base * sched["min_lr_ratio"]
    p = min(1.0, (s - warmup) / (total - warmup))
    assert sched["kind"] == "cosine"
    return lo + (base - lo) * 0.5 * (1.0 + math.cos(math.pi * p))


def run(name, options):
    params, ids, target = initial()
    decayed = [params[k] for k in NAMES if options["decay"] == "all" or k in MATRICES]
    others = [params[k] for k in NAMES if not (options["decay"] == "all" or k in MATRICES)]
    wd = options["weight_decay"]
    groups = [{"params": decayed, "weight_decay": wd}]
    if others:
        groups.append({"params": others, "weight_decay": 0.0})
    if options["optimizer"] == "sgd":
        opt = torch.optim.SGD(groups, lr=options["lr"], momentum=options["momentum"],
                              dampening=options["dampening"], nesterov=options["nesterov"])
        state_names = ["momentum_buffer"] if options["momentum"] != 0 else []
    else:
        opt = torch.optim.AdamW(groups, lr=options["lr"],
                                betas=(options["beta1"], options["beta2"]), eps=options["eps"])
        state_names = ["exp_avg", "exp_avg_sq"]
    doc = {"generator": "scripts/make_golden_optim.py (PyTorch %s, float64)" % torch.__version__,
           "options": options, "inputs": {"ids": pack(ids.double()), "target": pack(target)},
           "initial": {k: pack(params[k]) for k in NAMES}, "steps": []}
    for s in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(forward(params, ids), target)
        loss.backward()
        grads = [params[k].grad for k in NAMES]
        if "max_norm" in options:
            norm = torch.nn.utils.clip_grad_norm_([params[k] for k in NAMES], options["max_norm"])
        else:
            norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
        lr = schedule_lr(options["lr"], s, options.get("schedule"))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        doc["steps"].append({"lr": lr, "loss": float(loss), "norm": float(norm),
                             "params": {k: pack(params[k]) for k in NAMES}})
    doc["state"] = {k + "." + n: pack(opt.state[params[k]][n]) for k in NAMES for n in state_names}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "optim_" + name + ".json"), "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")


def sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, decay="matricesOnly"):
    return {"optimizer": "sgd", "lr": lr, "momentum": momentum, "dampening": dampening,
            "weight_decay": weight_decay, "nesterov": nesterov, "decay": decay}


def adamw(lr, beta1, beta2, eps, weight_decay, decay="matricesOnly"):
    return {"optimizer": "adamw", "lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps,
            "weight_decay": weight_decay, "decay": decay}


if __name__ == "__main__":
    run("sgd_plain", sgd(0.1))
    run("sgd_nesterov", sgd(0.1, momentum=0.9, weight_decay=0.05, nesterov=True))
    run("sgd_dampening_all", sgd(0.05, momentum=0.8, dampening=0.3, weight_decay=0.02,
                                 decay="all"))
    run("adamw", adamw(0.02, 0.8, 0.95, 1e-6, 0.1))
    clip = adamw(0.05, 0.9, 0.999, 1e-8, 0.2)
    clip["schedule"] = {"kind": "cosine", "warmup_steps": 2, "total_steps": 5, "min_lr_ratio": 0.1}
    clip["max_norm"] = 0.5
    run("adamw_cosine_clip", clip)
