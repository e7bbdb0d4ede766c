#!/usr/bin/env python3
"""Writes tests/data/golden/optim_*.json: five optimizer steps that torch.optim computes in float64
on a small model (Embedding -> Linear -> LayerNorm -> Linear without bias, MSE loss), which
tests/core/OptimTest.cpp replays with lathe::optim. Run with Debian's PyTorch:
    /usr/bin/python3 scripts/make_golden_optim.py
(or /opt/torchpeer/bin/python). torch.optim has no Lion, Sophia or Hugging Face-style Adafactor,
so those (optim_lion*, optim_adafactor*, optim_sophia*; replayed by tests/core/OptimExtraTest.cpp)
are written below in a few lines of torch from their papers / reference code, independently of
the C++ implementation.
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
import sys

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


# ---- Optimizers torch.optim does not have, written out from their sources ----

def lion_update(p, g, st, o, lr, wd):
    """Lion, Chen et al. 2023 (Algorithm 2; lucidrains/lion-pytorch's order of operations)."""
    m = st.setdefault("exp_avg", torch.zeros_like(p))
    c = m * o["beta1"] + g * (1 - o["beta1"])
    p.mul_(1 - lr * wd)
    p.add_(torch.sign(c), alpha=-lr)
    m.mul_(o["beta2"]).add_(g, alpha=1 - o["beta2"])


def rms(t):
    return t.norm(2) / (t.numel() ** 0.5)


def adafactor_update(p, g, st, o, lr, wd, step):
    """Adafactor as Hugging Face transformers' optimization.Adafactor.step computes it
    (Shazeer & Stern 2018): factored second moment for dim >= 2, update clipping, beta2 schedule,
    relative step / parameter scaling, optional first moment, decoupled weight decay."""
    if o["relative_step"]:
        min_step = 1e-6 * step if o["warmup_init"] else 1e-2
        rel = min(min_step, 1.0 / math.sqrt(step))
    else:
        rel = lr
    scale = max(o["eps2"], float(rms(p))) if o["scale_parameter"] else 1.0
    step_size = rel * scale
    beta2t = 1.0 - math.pow(step, o["decay_rate"])
    update = g ** 2 + o["eps1"]
    if p.dim() >= 2:
        row = st.setdefault("exp_avg_sq_row", torch.zeros(p.shape[:-1]))
        col = st.setdefault("exp_avg_sq_col", torch.zeros(p.shape[:-2] + p.shape[-1:]))
        row.mul_(beta2t).add_(update.mean(dim=-1), alpha=1.0 - beta2t)
        col.mul_(beta2t).add_(update.mean(dim=-2), alpha=1.0 - beta2t)
        r = (row / row.mean(dim=-1, keepdim=True)).rsqrt().unsqueeze(-1)
        c = col.unsqueeze(-2).rsqrt()
        update = r * c * g
    else:
        v = st.setdefault("exp_avg_sq", torch.zeros_like(p))
        v.mul_(beta2t).add_(update, alpha=1.0 - beta2t)
        update = v.rsqrt() * g
    update = update / (rms(update) / o["clip_threshold"]).clamp(min=1.0)
    update = update * step_size
    if o["beta1"] > 0:
        m = st.setdefault("exp_avg", torch.zeros_like(p))
        m.mul_(o["beta1"]).add_(update, alpha=1 - o["beta1"])
        update = m
    if wd != 0:
        p.add_(p, alpha=-wd * step_size)
    p.add_(-update)


def sophia_update(p, g, st, o, lr, wd):
    """Sophia, Liu et al. 2023, Algorithm 3 (the Hessian EMA is updated in run_manual)."""
    m = st.setdefault("exp_avg", torch.zeros_like(p))
    h = st.setdefault("hessian", torch.zeros_like(p))
    m.mul_(o["beta1"]).add_(g, alpha=1 - o["beta1"])
    p.mul_(1 - lr * wd)
    ratio = (m / torch.clamp(o["gamma"] * h, min=o["eps"])).clamp(-1.0, 1.0)
    p.add_(ratio, alpha=-lr)
    st.setdefault("clipped", 0)
    st["clipped"] += int((ratio.abs() == 1.0).sum())
    st.setdefault("unclipped", 0)
    st["unclipped"] += int(((ratio.abs() < 1.0) & (ratio != 0)).sum())


def run_manual(name, options):
    params, ids, target = initial()
    torch.manual_seed(7)
    target2 = torch.randn(2, 3, 2)  # Sophia-G's stand-in for sampled labels
    decayed = {k for k in NAMES if options["decay"] == "all" or k in MATRICES}
    states = {k: {} for k in NAMES}
    doc = {"generator": "scripts/make_golden_optim.py (PyTorch %s, float64, %s written out)"
                        % (torch.__version__, options["optimizer"]),
           "options": options,
           "inputs": {"ids": pack(ids.double()), "target": pack(target), "target2": pack(target2)},
           "initial": {k: pack(params[k]) for k in NAMES}, "steps": []}
    kind = options["optimizer"]
    for s in range(STEPS):
        step = s + 1
        if kind == "sophia" and s % options["hessian_every"] == 0:
            # Gauss-Newton-Bartlett (Algorithm 2): B * g_s * g_s for the mean loss over B terms.
            for k in NAMES:
                params[k].grad = None
            F.mse_loss(forward(params, ids), target2).backward()
            n = target2.numel()
            for k in NAMES:
                h = states[k].setdefault("hessian", torch.zeros_like(params[k]))
                h.mul_(options["beta2"]).add_(n * params[k].grad ** 2, alpha=1 - options["beta2"])
        for k in NAMES:
            params[k].grad = None
        loss = F.mse_loss(forward(params, ids), target)
        loss.backward()
        norm = torch.linalg.vector_norm(torch.cat([params[k].grad.flatten() for k in NAMES]))
        lr = options["lr"]
        with torch.no_grad():
            for k in NAMES:
                wd = options["weight_decay"] if k in decayed else 0.0
                p, g = params[k], params[k].grad
                if kind == "lion":
                    lion_update(p, g, states[k], options, lr, wd)
                elif kind == "adafactor":
                    adafactor_update(p, g, states[k], options, lr, wd, step)
                else:
                    sophia_update(p, g, states[k], options, lr, wd)
        doc["steps"].append({"lr": lr, "loss": float(loss), "norm": float(norm),
                             "params": {k: pack(params[k]) for k in NAMES}})
    if kind == "sophia":
        clipped = sum(states[k].pop("clipped") for k in NAMES)
        unclipped = sum(states[k].pop("unclipped") for k in NAMES)
        assert clipped > 0 and unclipped > 0, (clipped, unclipped)  # both branches exercised
    doc["state"] = {k + "." + n: pack(t) for k in NAMES for n, t in states[k].items()}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "optim_" + name + ".json"), "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")


def lion(lr, beta1=0.9, beta2=0.99, weight_decay=0.0, decay="matricesOnly"):
    return {"optimizer": "lion", "lr": lr, "beta1": beta1, "beta2": beta2,
            "weight_decay": weight_decay, "decay": decay}


def adafactor(lr, relative_step=False, scale_parameter=False, warmup_init=False, beta1=0.0,
              decay_rate=-0.8, clip_threshold=1.0, eps1=1e-30, eps2=1e-3, weight_decay=0.0,
              decay="matricesOnly"):
    return {"optimizer": "adafactor", "lr": lr, "relative_step": relative_step,
            "scale_parameter": scale_parameter, "warmup_init": warmup_init, "beta1": beta1,
            "decay_rate": decay_rate, "clip_threshold": clip_threshold, "eps1": eps1,
            "eps2": eps2, "weight_decay": weight_decay, "decay": decay}


def sophia(lr, beta1=0.96, beta2=0.99, gamma=0.01, eps=1e-12, weight_decay=0.1, hessian_every=2,
           decay="matricesOnly"):
    return {"optimizer": "sophia", "estimator": "gnb", "lr": lr, "beta1": beta1, "beta2": beta2,
            "gamma": gamma, "eps": eps, "weight_decay": weight_decay,
            "hessian_every": hessian_every, "decay": decay}


def main(only):
    """Writes every golden file, or only those named on the command line (e.g. `lion sophia_g`),
    so regenerating one family leaves the other files (and their generator line) as they are."""
    clip = adamw(0.05, 0.9, 0.999, 1e-8, 0.2)
    clip["schedule"] = {"kind": "cosine", "warmup_steps": 2, "total_steps": 5, "min_lr_ratio": 0.1}
    clip["max_norm"] = 0.5
    files = [
        (run, "sgd_plain", sgd(0.1)),
        (run, "sgd_nesterov", sgd(0.1, momentum=0.9, weight_decay=0.05, nesterov=True)),
        (run, "sgd_dampening_all", sgd(0.05, momentum=0.8, dampening=0.3, weight_decay=0.02,
                                       decay="all")),
        (run, "adamw", adamw(0.02, 0.8, 0.95, 1e-6, 0.1)),
        (run, "adamw_cosine_clip", clip),
        (run_manual, "lion", lion(0.01, weight_decay=0.5)),
        (run_manual, "lion_all", lion(0.02, beta1=0.8, beta2=0.95, weight_decay=0.1,
                                      decay="all")),
        (run_manual, "adafactor", adafactor(0.05, weight_decay=0.1)),
        (run_manual, "adafactor_relative",
         adafactor(0.0, relative_step=True, scale_parameter=True, warmup_init=True, beta1=0.9,
                   clip_threshold=0.5, weight_decay=0.2, decay="all")),
        (run_manual, "sophia_g", sophia(0.02, gamma=0.05, weight_decay=0.2)),
    ]
    unknown = set(only) - {name for _, name, _ in files}
    assert not unknown, "unknown golden files: %s" % sorted(unknown)
    for fn, name, options in files:
        if not only or name in only:
            fn(name, options)


if __name__ == "__main__":
    main(sys.argv[1:])
