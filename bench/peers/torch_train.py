#!/usr/bin/env python3
"""PyTorch peer for `lathe-bench train`: trains the models of resources/examples/fashion_mlp.json
and fashion_cnn.json with the same settings as Lathe (AdamW lr 1e-3, betas 0.9/0.999, eps 1e-8,
weight decay 0.01 on parameters with dim >= 2 only, like DecayRule::matricesOnly; cosine schedule
with 100 linear warmup steps as core/optim/LrSchedule.cpp computes it, over the planned steps of
`--epochs` epochs; batch 64, drop_last, a 10% validation split; pixels scaled by 1/255; the CNN's
batch norm and dropout 0.25; PyTorch's default initialisation, which Lathe's layers use too).

The data is read from the IDX .gz files with numpy and kept in memory as f32, and each batch is
one index gather, the fastest loader PyTorch offers (no per-example collation). Like Lathe's
Trainer, every step reads the loss and counts correct predictions.

The tiny GPT (`--models gpt`) is resources/examples/text_gpt_tiny.json's model and settings:
bytes of /usr/share/games/fortunes (the regular files in name order, without .dat/.u8), the last
5% of the stream for testing and the 5% before it for validation, non-overlapping windows of 128
(+1) tokens, shuffled each epoch; 4 pre-norm blocks (LayerNorm, one qkv Linear with bias,
causal softmax attention, GELU-tanh MLP 4x), learned positions, tied embeddings, GPT-2
initialisation (std 0.02, residual projections 0.02/sqrt(2L)); AdamW lr 1e-3, betas 0.9/0.95,
weight decay 0.1 on matrices other than embeddings, cosine to 0.1x after 50 warmup steps,
clipping at global norm 1.0, batch 32, 1000 steps. It reports tokens/s and, on a whole run,
the validation loss over the whole validation split.

Usage: torch_train.py --threads N [--models mlp,cnn,gpt] [--epochs 5] [--steps S] [--seed 0]
  --steps S > 0 times S optimizer steps of the 5-epoch schedule and skips the test evaluation
  (a quick throughput run); without it the whole run trains and evaluates on the test set.
Prints one JSON object per model, then "RESULT <model>.<key> <value>" lines for lathe-bench.
samples_per_s and step_ms are steady state: the first step (warm-up) is excluded."""
import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = "/usr/share/datasets/fashion-mnist"
BATCH = 64
VAL_FRACTION = 0.1
LR, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.999), 1e-8, 0.01
WARMUP = 100


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(prefix):
    images = read_idx(os.path.join(DATA_DIR, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # [N, 1, 28, 28]
    return x, torch.from_numpy(labels.astype(np.int64))


def make_model(kind):
    if kind == "mlp":  # 784-256-128-10, ReLU
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                             nn.ReLU(), nn.Linear(128, 10))
    if kind == "cnn":  # LeNet preset with batch_norm: [conv3x3 pad 1 (no bias), BatchNorm, ReLU,
        # maxpool 2] x (32, 64), 128 hidden, dropout 0.25
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
                             nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
                             nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                             nn.Dropout(0.25), nn.Linear(128, 10))
    raise SystemExit(f"unknown model {kind}")


def lr_at(step, total, lr=LR, warmup=WARMUP, min_ratio=0.0):
    """core/optim/LrSchedule.cpp, kind cosine."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min((step - warmup) / (total - warmup), 1.0)
    return lr * min_ratio + (lr - lr * min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---- tiny GPT on the fortunes bytes (resources/examples/text_gpt_tiny.json) ----

TEXT_DIR = "/usr/share/games/fortunes"
GPT = dict(vocab=256, block=128, layers=4, heads=4, d=128, batch=32, steps=1000, lr=1e-3,
           betas=(0.9, 0.95), wd=0.1, warmup=50, min_ratio=0.1, clip=1.0, val=0.05, test=0.05)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(c["vocab"], c["d"]), nn.Embedding(c["block"], c["d"])
        self.blocks = nn.Sequential(*[Block(c["d"], c["heads"]) for _ in range(c["layers"])])
        self.ln_f = nn.LayerNorm(c["d"])
        for name, p in self.named_parameters():  # core/nn/Gpt.cpp initWeights
            if name.endswith("weight") and p.dim() == 2:
                residual = name.endswith("proj.weight") or name.endswith("fc2.weight")
                std = 0.02 / math.sqrt(2 * c["layers"]) if residual else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias") and not name.startswith("ln") and ".ln" not in name:
                nn.init.zeros_(p)

    def forward(self, idx):
        pos = torch.arange(idx.shape[1])
        x = self.blocks(self.wte(idx) + self.wpe(pos))
        return self.ln_f(x) @ self.wte.weight.t()


def load_text_windows(c):
    names = sorted(f for f in os.listdir(TEXT_DIR) if os.path.isfile(os.path.join(TEXT_DIR, f))
                   and os.path.splitext(f)[1] not in (".dat", ".u8"))
    data = b"".join(open(os.path.join(TEXT_DIR, f), "rb").read() for f in names)
    tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.int64)
    n = tokens.numel()
    n_test, n_val = int(n * c["test"]), int(n * c["val"])
    n_train = n - n_test - n_val

    def windows(t):
        count = (t.numel() - (c["block"] + 1)) // c["block"] + 1
        idx = torch.arange(count)[:, None] * c["block"] + torch.arange(c["block"] + 1)[None, :]
        w = t[idx]
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()

    return (windows(tokens[:n_train]), windows(tokens[n_train:n_train + n_val]),
            windows(tokens[n_train + n_val:]))


def train_gpt(steps, seed):
    c = GPT
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = load_text_windows(c)
    torch.manual_seed(seed)
    model = Gpt(c)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("w")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n.startswith("w")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c["wd"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=c["lr"], betas=c["betas"], eps=1e-8)
    total = c["steps"]
    run_steps = min(steps, total) if steps > 0 else total
    per_epoch = x_tr.shape[0] // c["batch"]
    gen = torch.Generator().manual_seed(seed)
    step, t_train, loss_sum = 0, 0.0, 0.0
    model.train()
    while step < run_steps:
        order = torch.randperm(x_tr.shape[0], generator=gen)
        for b in range(per_epoch):
            if step >= run_steps:
                break
            t0 = time.perf_counter()
            idx = order[b * c["batch"]:(b + 1) * c["batch"]]
            x, y = x_tr[idx], y_tr[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, c["lr"], c["warmup"], c["min_ratio"])
            logits = model(x)
            loss = F.cross_entropy(logits.view(-1, c["vocab"]), y.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), c["clip"])
            opt.step()
            loss_sum += loss.item()
            if step > 0:
                t_train += time.perf_counter() - t0
            step += 1
    tokens = c["batch"] * c["block"]
    result = {"model": "gpt", "threads": torch.get_num_threads(), "batch": c["batch"],
              "steps": step, "tokens_per_s": (step - 1) * tokens / t_train if step > 1 else 0.0,
              "samples_per_s": (step - 1) * c["batch"] / t_train if step > 1 else 0.0,
              "step_ms": 1e3 * t_train / max(step - 1, 1), "train_loss": loss_sum / max(step, 1)}
    if steps <= 0:
        model.eval()
        with torch.no_grad():
            for name, (x_e, y_e) in (("val", (x_val, y_val)), ("test", (x_te, y_te))):
                total_loss = 0.0
                for b in range(0, x_e.shape[0], c["batch"]):
                    logits = model(x_e[b:b + c["batch"]])
                    total_loss += F.cross_entropy(logits.reshape(-1, c["vocab"]),
                                                  y_e[b:b + c["batch"]].reshape(-1),
                                                  reduction="sum").item()
                result[name + "_loss"] = total_loss / y_e.numel()
    return result


@torch.no_grad()
def evaluate(model, x, y):
    model.eval()
    correct, loss_sum = 0, 0.0
    for b in range(0, x.shape[0], BATCH):
        out = model(x[b:b + BATCH])
        loss_sum += F.cross_entropy(out, y[b:b + BATCH], reduction="sum").item()
        correct += (out.argmax(-1) == y[b:b + BATCH]).sum().item()
    model.train()
    return correct / x.shape[0], loss_sum / x.shape[0]


def train(kind, data, epochs, steps, seed):
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = data
    torch.manual_seed(seed)
    model = make_model(kind)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    per_epoch = x_tr.shape[0] // BATCH  # drop_last
    total = per_epoch * epochs
    run_steps = min(steps, total) if steps > 0 else total
    gen = torch.Generator().manual_seed(seed)
    model.train()
    step, t_first, t_train, val_acc = 0, 0.0, 0.0, None
    correct = seen = 0
    loss_sum = 0.0
    while step < run_steps:
        order = torch.randperm(x_tr.shape[0], generator=gen)
        for b in range(per_epoch):
            if step >= run_steps:
                break
            t0 = time.perf_counter()
            idx = order[b * BATCH:(b + 1) * BATCH]
            x, y = x_tr[idx], y_tr[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total)
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            correct += (out.detach().argmax(-1) == y).sum().item()
            seen += y.numel()
            dt = time.perf_counter() - t0
            if step == 0:
                t_first = dt
            else:
                t_train += dt
            step += 1
        if steps <= 0 and x_val.shape[0] > 0:  # Lathe evaluates at every epoch end (untimed)
            val_acc, _ = evaluate(model, x_val, y_val)
    result = {"model": kind, "threads": torch.get_num_threads(), "batch": BATCH, "steps": step,
              "epochs": step / per_epoch, "samples_per_s": (step - 1) * BATCH / t_train
              if step > 1 else 0.0, "step_ms": 1e3 * t_train / max(step - 1, 1),
              "first_step_ms": 1e3 * t_first, "train_loss": loss_sum / max(step, 1),
              "train_accuracy": correct / max(seen, 1)}
    if steps <= 0:
        result["val_accuracy"] = val_acc
        result["test_accuracy"], result["test_loss"] = evaluate(model, x_te, y_te)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps to time; 0 = all")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kinds = args.models.split(",")
    if "gpt" in kinds:
        r = train_gpt(args.steps, args.seed)
        print(json.dumps(r), flush=True)
        for k in ("samples_per_s", "tokens_per_s", "step_ms", "val_loss", "test_loss"):
            if r.get(k) is not None:
                print(f"RESULT gpt.{k} {r[k]:.6f}", flush=True)
        kinds.remove("gpt")
    if not kinds:
        return
    x, y = load_split("train")
    g = torch.Generator().manual_seed(args.seed ^ 0x5A1)
    perm = torch.randperm(x.shape[0], generator=g)
    n_val = int(round(x.shape[0] * VAL_FRACTION))
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    data = ((x[tr_idx].contiguous(), y[tr_idx].contiguous()),
            (x[val_idx].contiguous(), y[val_idx].contiguous()), load_split("t10k"))
    for kind in kinds:
        r = train(kind, data, args.epochs, args.steps, args.seed)
        print(json.dumps(r), flush=True)
        for k in ("samples_per_s", "step_ms", "test_accuracy"):
            if r.get(k) is not None:
                print(f"RESULT {kind}.{k} {r[k]:.6f}", flush=True)


if __name__ == "__main__":
    main()
