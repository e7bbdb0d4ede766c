#!/usr/bin/env python3
"""Writes tests/data/golden/*.json: composite forward/backward cases computed by PyTorch in
float64, which tests/core/GoldenTest.cpp replays with Lathe's ops. Run with Debian's PyTorch:
    /usr/bin/python3 scripts/make_golden.py
Each file: {"tensors": {name: {"shape": [...], "data": [...]}}, "outputs": {...}, "grads": {...}}."""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.manual_seed(20261123)
torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "golden")


def pack(t):
    t = t.detach().contiguous()
    return {"shape": list(t.shape), "data": [float(v) for v in t.flatten().tolist()]}


def save(name, tensors, outputs):
    grads = {k: pack(v.grad) for k, v in tensors.items() if v.requires_grad and v.grad is not None}
    doc = {
        "generator": "scripts/make_golden.py (PyTorch %s, float64)" % torch.__version__,
        "tensors": {k: pack(v) for k, v in tensors.items()},
        "outputs": {k: pack(v) for k, v in outputs.items()},
        "grads": grads,
    }
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")


def p(*shape, scale=0.5):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def mlp():
    t = {"x": p(4, 6), "w1": p(5, 6), "b1": p(5), "w2": p(3, 5), "b2": p(3)}
    target = torch.tensor([0, 2, 1, 2])
    h = F.gelu(F.linear(t["x"], t["w1"], t["b1"]), approximate="tanh")
    logits = F.linear(h, t["w2"], t["b2"])
    loss = F.cross_entropy(logits, target)
    loss.backward()
    t["target"] = target.double()
    save("mlp", t, {"logits": logits, "loss": loss})


def cnn():
    t = {"x": p(2, 1, 8, 8, scale=1.0), "cw": p(3, 1, 3, 3), "cb": p(3), "bw": p(3, scale=0.2),
         "bb": p(3, scale=0.2), "fw": p(4, 48, scale=0.2), "fb": p(4)}
    with torch.no_grad():
        t["bw"] += 1.0
    running_mean, running_var = torch.zeros(3), torch.ones(3)
    target = torch.tensor([3, 1])
    y = F.conv2d(t["x"], t["cw"], t["cb"], padding=1)
    y = F.max_pool2d(F.relu(y), 2)
    y = F.batch_norm(y, running_mean, running_var, t["bw"], t["bb"], training=True, momentum=0.1)
    logits = F.linear(y.flatten(1), t["fw"], t["fb"])
    loss = F.cross_entropy(logits, target, label_smoothing=0.1)
    loss.backward()
    t["target"] = target.double()
    save("cnn", t, {"logits": logits, "loss": loss, "running_mean": running_mean,
                    "running_var": running_var})


def block():
    B, T, C, H = 2, 5, 8, 2
    D = C // H
    t = {"x": p(B, T, C, scale=1.0), "ln_w": p(C, scale=0.1), "ln_b": p(C, scale=0.1),
         "qkv_w": p(3 * C, C), "proj_w": p(C, C), "rms_w": p(C, scale=0.1), "fc_w": p(2 * C, C),
         "out_w": p(C, 2 * C), "target": torch.randn(B, T, C)}
    with torch.no_grad():
        t["ln_w"] += 1.0
        t["rms_w"] += 1.0
    x = t["x"]
    h = F.layer_norm(x, (C,), t["ln_w"], t["ln_b"])
    q, k, v = F.linear(h, t["qkv_w"]).split(C, dim=-1)
    q, k, v = (z.view(B, T, H, D).transpose(1, 2) for z in (q, k, v))
    s = q @ k.transpose(-1, -2) / math.sqrt(D)
    s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    a = (F.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, C)
    x = x + F.linear(a, t["proj_w"])
    r = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * t["rms_w"]
    x = x + F.linear(F.silu(F.linear(r, t["fc_w"])), t["out_w"])
    loss = F.mse_loss(x, t["target"])
    loss.backward()
    save("block", t, {"y": x, "loss": loss})


def reductions():
    t = {"x": p(3, 4, 5, scale=1.0)}
    x = t["x"]
    out = {"softmax1": F.softmax(x, 1), "log_softmax2": F.log_softmax(x, 2),
           "var02": x.var(dim=(0, 2)), "mean_keep": x.mean(1, keepdim=True),
           "max2": x.max(2).values, "argmax1": x.argmax(1).double()}
    (out["softmax1"] * 2 + out["log_softmax2"].exp() + out["var02"].sum() + out["max2"].sum()).sum().backward()
    save("reductions", t, out)


if __name__ == "__main__":
    mlp()
    cnn()
    block()
    reductions()
    print("wrote", sorted(os.listdir(OUT)))
