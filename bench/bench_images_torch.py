#!/usr/bin/python3
"""
bench_images_torch.py: the torchvision 0.14 + PIL baseline for bench/bench_images.c (1 thread).

    bench_images_torch.py [--passes N] [--size S] [--resize R] [--eval] [--jitter J] DIR
        decode (PIL) + RandomResizedCrop(S) + RandomHorizontalFlip + [ColorJitter] + ToTensor + Normalize,
        or with --eval Resize(R) + CenterCrop(S) + ToTensor + Normalize; prints "images/s: X".
    bench_images_torch.py --compare DUMP [--size S] [--resize R] DIR
        compares the evaluation outputs written by `bench_images --eval --dump DUMP DIR` with torchvision's,
        in 8-bit levels (|difference| x std x 255), and reports how far tensor bilinear without antialiasing
        would be from PIL's antialiased bilinear on the same images.

The files are read into memory first and decoded from BytesIO, as the C benchmark decodes from memory.
"""
import argparse
import io
import os
import time

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def load(folder):
    names = sorted(f for f in os.listdir(folder) if os.path.splitext(f)[1] in (".jpg", ".jpeg", ".JPEG", ".JPG"))
    out = []
    for n in names:
        with open(os.path.join(folder, n), "rb") as f:
            out.append(f.read())
    return out


def pil_rgb(data):
    return Image.open(io.BytesIO(data)).convert("RGB")  # torchvision's default_loader does convert("RGB")


def bench(args, files):
    if args.eval:
        tf = T.Compose([T.Resize(args.resize), T.CenterCrop(args.size), T.ToTensor(), T.Normalize(MEAN, STD)])
    else:
        ops = [T.RandomResizedCrop(args.size), T.RandomHorizontalFlip()]
        if args.jitter > 0:
            ops.append(T.ColorJitter(args.jitter, args.jitter, args.jitter, 0))
        tf = T.Compose(ops + [T.ToTensor(), T.Normalize(MEAN, STD)])
    checksum = 0.0
    t0, w0 = time.process_time(), time.perf_counter()  # CPU time of this (1-thread) process: per core
    for _ in range(args.passes):
        for data in files:
            x = tf(pil_rgb(data))
            checksum += float(x[0, 0, 0])
    total, wall = time.process_time() - t0, time.perf_counter() - w0
    count = args.passes * len(files)
    print(f"bench_images_torch: {len(files)} files x {args.passes} passes, torch threads {torch.get_num_threads()}")
    print(f"wall clock: {count / wall:.1f} images/s")
    print(f"images/s: {count / total:.1f}")


def compare(args, files):
    s = args.size
    ours = np.fromfile(args.compare, dtype=np.float32).reshape(len(files), 3, s, s)
    tf = T.Compose([T.Resize(args.resize), T.CenterCrop(s), T.ToTensor(), T.Normalize(MEAN, STD)])
    scale = (np.array(STD, dtype=np.float64) * 255.0).reshape(3, 1, 1)
    mad, worst, exact, alias = [], 0.0, 0, []
    for i, data in enumerate(files):
        img = pil_rgb(data)
        ref = tf(img).numpy()
        d = np.abs(ours[i].astype(np.float64) - ref) * scale
        mad.append(d.mean())
        worst = max(worst, d.max())
        exact += int((d < 1e-3).all())
        # antialias: the same Resize done on a tensor without antialiasing (bilinear from the 2 nearest pixels)
        pil_res = np.asarray(F.center_crop(F.resize(img, args.resize), s)).astype(np.float64)
        t = F.pil_to_tensor(img)
        ten_res = F.center_crop(F.resize(t, args.resize, antialias=False), s).permute(1, 2, 0).numpy()
        alias.append(np.abs(pil_res - ten_res.astype(np.float64)).mean())
    print(f"compare: {len(files)} images, mean |ours - torchvision| = {np.mean(mad):.3f} levels "
          f"(per image max mean {np.max(mad):.3f}), max {worst:.1f} levels, {exact} images bit-identical")
    print(f"antialias: mean |PIL bilinear (antialiased) - tensor bilinear (antialias=False)| = "
          f"{np.mean(alias):.3f} levels on the same images")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--resize", type=int, default=256)
    ap.add_argument("--eval", action="store_true")
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--compare", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    files = load(args.dir)
    if args.compare:
        compare(args, files)
    else:
        bench(args, files)


if __name__ == "__main__":
    main()
