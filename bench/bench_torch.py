#!/usr/bin/python3
"""PyTorch 1.13 (Debian python3-torch) twin of bench/bench_train.c: the same model, batch and step.

    bench_torch.py --arch resnet32 --batch 128 --infer-batch 256 --size 32 --steps 20 --threads T --mode both

A training step is forward (train-mode BN), cross-entropy, backward and SGD (momentum 0.9, weight decay 5e-4);
inference is an eval-mode forward under torch.no_grad(). Prints RESULT lines in bench_train's format. Peak RSS
is reported by the runner (bench/run_bench_train.sh) with /usr/bin/time.
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import torch_models as tm  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="resnet32")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--infer-batch", type=int, default=256)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--mode", default="both")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = tm.build(a.arch, a.classes, 3)
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, mkldnn {torch.backends.mkldnn.is_available()}")
    macs = None
    if a.mode in ("train", "both"):
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        x = torch.randn(a.batch, 3, a.size, a.size)
        y = torch.randint(0, a.classes, (a.batch,))
        times = []
        for i in range(a.steps + 3):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
            t = time.perf_counter() - t0
            if i >= 3:
                times.append(t)
        med = statistics.median(times)
        print(f"RESULT torch train {a.arch} batch={a.batch} threads={a.threads} img_s={a.batch / med:.1f} ms_step={1e3 * med:.2f}")
    if a.mode in ("infer", "both"):
        m.eval()
        x = torch.randn(a.infer_batch, 3, a.size, a.size)
        times = []
        with torch.no_grad():
            for i in range(a.steps + 2):
                t0 = time.perf_counter()
                m(x)
                t = time.perf_counter() - t0
                if i >= 2:
                    times.append(t)
        med = statistics.median(times)
        print(f"RESULT torch infer {a.arch} batch={a.infer_batch} threads={a.threads} img_s={a.infer_batch / med:.1f} ms_step={1e3 * med:.2f}")


if __name__ == "__main__":
    main()
