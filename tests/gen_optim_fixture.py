#!/usr/bin/python3
"""Fixture for tests/test_optim.c: torch.optim.SGD and the LR schedulers of PyTorch 1.13, in float64.

    /usr/bin/python3 tests/gen_optim_fixture.py   # writes tests/fixtures/optim_golden.safetensors

sgd.<variant>.p0 / .grads (steps x n) / .final: a parameter vector, the gradient fed at each step, and the
parameter after the steps, for plain momentum, Nesterov, and weight decay with a no-decay mask (two param groups).
sched.cosine: CosineAnnealingLR(T_max=10, eta_min=0.001) lr at epochs 0..12 (base 0.1), stepped per epoch.
sched.multistep: MultiStepLR([3, 6], gamma=0.1) lr at epochs 0..9.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import write_safetensors  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "optim_golden.safetensors")


def run_sgd(p0, grads, mask, lr, momentum, wd, nesterov):
    decay = torch.nn.Parameter(torch.from_numpy(p0[mask == 0].astype(np.float64)))
    nodecay = torch.nn.Parameter(torch.from_numpy(p0[mask == 1].astype(np.float64)))
    opt = torch.optim.SGD([{"params": [decay]}, {"params": [nodecay], "weight_decay": 0.0}], lr=lr,
                          momentum=momentum, weight_decay=wd, nesterov=nesterov)
    for g in grads:
        decay.grad = torch.from_numpy(g[mask == 0].astype(np.float64))
        nodecay.grad = torch.from_numpy(g[mask == 1].astype(np.float64))
        opt.step()
    out = np.empty_like(p0)
    out[mask == 0] = decay.detach().numpy()
    out[mask == 1] = nodecay.detach().numpy()
    return out.astype(np.float32)


def main():
    g = np.random.default_rng(3)
    n, steps = 257, 5
    p0 = g.standard_normal(n).astype(np.float32)
    grads = g.standard_normal((steps, n)).astype(np.float32)
    mask = (np.arange(n) % 3 == 0).astype(np.int32)
    t = {"p0": p0, "grads": grads, "mask": mask}
    t["sgd.momentum.final"] = run_sgd(p0, grads, np.zeros(n, np.int32), 0.1, 0.9, 0.0, False)
    t["sgd.nesterov_wd.final"] = run_sgd(p0, grads, np.zeros(n, np.int32), 0.1, 0.9, 5e-4, True)
    t["sgd.wd_nodecay.final"] = run_sgd(p0, grads, mask, 0.05, 0.9, 1e-2, False)
    p = torch.nn.Parameter(torch.zeros(1))
    o = torch.optim.SGD([p], lr=0.1)
    s = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.001)
    lrs = []
    for _ in range(13):
        lrs.append(o.param_groups[0]["lr"])
        o.step()
        s.step()
    t["sched.cosine"] = np.array(lrs, np.float64).astype(np.float32)
    o = torch.optim.SGD([p], lr=0.1)
    s = torch.optim.lr_scheduler.MultiStepLR(o, milestones=[3, 6], gamma=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(o.param_groups[0]["lr"])
        o.step()
        s.step()
    t["sched.multistep"] = np.array(lrs, np.float64).astype(np.float32)
    write_safetensors(OUT, t)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
