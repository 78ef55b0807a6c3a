#!/usr/bin/python3
"""gen_layer_fixtures.py: PyTorch reference values for tests/test_layers.c (batch norm, max pool, softmax CE).

Run with the Debian PyTorch (1.13):   /usr/bin/python3 tests/gen_layer_fixtures.py
It writes tests/fixtures/layers_golden.bin, which is committed, so the C test needs no PyTorch.

File format (little-endian):
    b"DCLG" u32 version=1 u32 n_records
    n_records x { u32 name_len, name (ASCII, no NUL), u32 dtype (0 = float32, 1 = int32), u64 count, data }

Activations are stored in decouple's CNHW order (x.permute(1, 0, 2, 3)), everything else as PyTorch has it.
"""
import os
import struct
import sys

import torch
import torch.nn.functional as F

records = []


def put(name, t):
    t = t.detach().contiguous()
    if t.dtype in (torch.int64, torch.int32):
        records.append((name, 1, t.to(torch.int32).numpy().tobytes(), t.numel()))
    else:
        records.append((name, 0, t.to(torch.float32).numpy().tobytes(), t.numel()))


def cnhw(t):
    return t.permute(1, 0, 2, 3)


def batchnorm():
    # C=3, N=4, H=3, W=3 (M=36 per channel); channel means far from 0 and unequal scales, so the test would
    # see a one-pass-variance or a wrong-axis bug.
    C, N, H, W = 3, 4, 3, 3
    x = torch.randn(N, C, H, W) * torch.tensor([0.5, 2.0, 1.0]).view(1, C, 1, 1) + \
        torch.tensor([3.0, -1.0, 0.2]).view(1, C, 1, 1)
    gamma = torch.tensor([1.5, 0.7, -0.4])
    beta = torch.tensor([0.1, -0.3, 0.25])
    rm0 = torch.tensor([0.5, -0.2, 0.0])
    rv0 = torch.tensor([2.0, 0.5, 1.0])
    dy = torch.randn(N, C, H, W)
    momentum, eps = 0.1, 1e-5
    put("bn.x", cnhw(x))
    put("bn.gamma", gamma)
    put("bn.beta", beta)
    put("bn.running_mean0", rm0)
    put("bn.running_var0", rv0)
    put("bn.dy", cnhw(dy))
    for relu in (0, 1):
        xr = x.clone().requires_grad_(True)
        g = gamma.clone().requires_grad_(True)
        b = beta.clone().requires_grad_(True)
        rm, rv = rm0.clone(), rv0.clone()
        y = F.batch_norm(xr, rm, rv, g, b, training=True, momentum=momentum, eps=eps)
        if relu:
            y = F.relu(y)
        y.backward(dy)
        s = "bn.relu%d." % relu
        put(s + "y", cnhw(y))
        put(s + "dx", cnhw(xr.grad))
        put(s + "dgamma", g.grad)
        put(s + "dbeta", b.grad)
        put(s + "running_mean", rm)
        put(s + "running_var", rv)
        ye = F.batch_norm(x, rm, rv, gamma, beta, training=False, eps=eps)
        if relu:
            ye = F.relu(ye)
        put(s + "y_eval", cnhw(ye))
    # the saved statistics (biased variance), from the aten op that autograd uses
    _, save_mean, save_invstd = torch.native_batch_norm(x, gamma, beta, rm0.clone(), rv0.clone(), True,
                                                        momentum, eps)
    put("bn.save_mean", save_mean)
    put("bn.save_rstd", save_invstd)


def maxpool(tag, C, N, H, W, K, S, P):
    # small integers make ties inside windows; one plane is all negative so that zero padding would win
    x = torch.randint(-3, 4, (N, C, H, W)).float()
    x[0, 0] = -torch.randint(1, 5, (H, W)).float()
    xr = x.clone().requires_grad_(True)
    y, idx = F.max_pool2d(xr, K, S, P, return_indices=True)
    dy = torch.randn_like(y)
    y.backward(dy)
    s = "pool.%s." % tag
    put(s + "shape", torch.tensor([C, N, H, W, K, S, P], dtype=torch.int32))
    put(s + "x", cnhw(x))
    put(s + "y", cnhw(y))
    put(s + "argmax", cnhw(idx))
    put(s + "dy", cnhw(dy))
    put(s + "dx", cnhw(xr.grad))


def softmax_ce():
    N, K = 6, 5
    logits = torch.randn(N, K) * 3
    logits[2] += 40.0  # a large shift: needs the max subtraction
    labels = torch.tensor([0, 4, 2, 1, 3, 4])
    counts = torch.tensor([500.0, 120.0, 40.0, 9.0, 2.0])
    offset = torch.log(counts / counts.sum())  # logit adjustment with tau = 1
    grad_scale = 0.25
    put("ce.logits", logits)
    put("ce.labels", labels)
    put("ce.offset", offset)
    put("ce.grad_scale", torch.tensor([grad_scale]))
    for tag, off in (("plain", None), ("offset", offset)):
        z = logits.clone().requires_grad_(True)
        zz = z + off if off is not None else z
        loss = F.cross_entropy(zz.double(), labels, reduction="sum")
        (loss * grad_scale).backward()
        put("ce.%s.dlogits" % tag, z.grad)
        # the double loss as two floats, hi + lo, so that the C test can compare far below float precision
        full = torch.tensor([loss.item()], dtype=torch.float64)
        hi = full.float()
        put("ce.%s.loss" % tag, hi)
        put("ce.%s.loss_lo" % tag, (full - hi.double()).float())


def main():
    torch.manual_seed(20200214)
    batchnorm()
    maxpool("a", C=2, N=2, H=7, W=6, K=3, S=2, P=1)  # the ResNet stem pool on a tiny image
    maxpool("b", C=2, N=1, H=5, W=5, K=3, S=1, P=1)  # heavy overlap: gradients add up
    softmax_ce()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "layers_golden.bin")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        f.write(b"DCLG" + struct.pack("<II", 1, len(records)))
        for name, dtype, data, count in records:
            nb = name.encode("ascii")
            f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<IQ", dtype, count) + data)
    print("wrote %s (%d records, %d bytes)" % (out, len(records), os.path.getsize(out)), file=sys.stderr)


if __name__ == "__main__":
    main()
