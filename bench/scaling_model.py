#!/usr/bin/env python3
"""scaling_model.py: predicted step time and scaling efficiency of data-parallel ResNet-50 on iNaturalist 2018.

    python3 bench/scaling_model.py [--img-s-per-core 1.5] [--cores-per-rank 32] [--batch-per-rank 32]
                                   [--alpha-us 2.0] [--bandwidth-gb-s 11.0] [--bucket-mb 25]

The model (docs/PERFORMANCE.md, "Scaling model", states its assumptions):

  compute per step   T_c = batch_per_rank / (img_s_per_core * cores_per_rank)     (weak scaling: the batch per
                     rank is fixed, the global batch grows with the ranks)
  backward share     T_b = 2/3 T_c                      (backward is about 2x the forward FLOPs)
  ring allreduce of  T_ar(n) = 2(p-1) alpha + 2 (p-1)/p * n * beta       for one bucket of n bytes
  the gradient slab  (Open MPI's ring / segmented-ring algorithm for large messages; beta = 1 / bandwidth)
  buckets            k = ceil(S / bucket), S = 4 bytes x 25.56 M parameters = 102.2 MB for ResNet-50
  exposed comm       no overlap: T_x = sum of all buckets; with overlap (decouple's default): every bucket but
                     the last can hide behind the rest of backward, so
                     T_x = max(T_ar(last bucket), sum T_ar - T_b)
  step time          T = T_c + T_x + T_opt (SGD over the slab on the rank's cores; 3 streams of S at 10 GB/s)
  efficiency         E(p) = (T_c + T_opt) / T            (1 rank needs no allreduce)
  epoch time         437,513 images / (p * batch_per_rank / T)

Inputs default to this machine's measurement (bench/run_bench_train.sh: ResNet-50 at 224x224, batch 32, 2
threads: 3.0 img/s, 1.5 img/s per core) scaled linearly to 32 cores per rank (one rank per 32-core socket),
and to a 100 Gb/s InfiniBand HDR fabric (alpha 2 us, about 11 GB/s achievable per link).
"""
import argparse
import math

P_RESNET50 = 25_557_032  # torchvision resnet50 parameters (num_classes 1000); 8,142 classes add 16.7 M
INAT_TRAIN = 437_513


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--img-s-per-core", type=float, default=1.5)
    ap.add_argument("--cores-per-rank", type=int, default=32)
    ap.add_argument("--batch-per-rank", type=int, default=32)
    ap.add_argument("--alpha-us", type=float, default=2.0)
    ap.add_argument("--bandwidth-gb-s", type=float, default=11.0)
    ap.add_argument("--bucket-mb", type=float, default=25.0)
    ap.add_argument("--classes", type=int, default=8142)
    ap.add_argument("--epochs", type=int, default=90)
    a = ap.parse_args()

    params = P_RESNET50 - (2048 + 1) * 1000 + (2048 + 1) * a.classes
    slab = 4.0 * params
    alpha, beta = a.alpha_us * 1e-6, 1.0 / (a.bandwidth_gb_s * 1e9)
    bucket = a.bucket_mb * 1e6
    k = math.ceil(slab / bucket)
    sizes = [bucket] * (k - 1) + [slab - bucket * (k - 1)]
    t_c = a.batch_per_rank / (a.img_s_per_core * a.cores_per_rank)
    t_b = 2.0 / 3.0 * t_c
    t_opt = 3 * slab / 10e9
    print(f"ResNet-50, {a.classes} classes: {params / 1e6:.1f} M parameters, gradient slab {slab / 1e6:.1f} MB "
          f"in {k} buckets of <= {a.bucket_mb:g} MB")
    print(f"compute: {a.img_s_per_core:g} img/s/core x {a.cores_per_rank} cores/rank, batch {a.batch_per_rank}/rank"
          f" -> {1e3 * t_c:.0f} ms/step (+ SGD {1e3 * t_opt:.0f} ms); network alpha {a.alpha_us:g} us, "
          f"{a.bandwidth_gb_s:g} GB/s")
    print(f"{'ranks':>6} {'global B':>9} {'allreduce':>10} {'exposed':>8} {'step':>8} {'eff.':>6} {'eff. no':>8} "
          f"{'epoch':>8} {f'{a.epochs} epochs':>10}")
    print(f"{'':>6} {'':>9} {'ms':>10} {'ms':>8} {'ms':>8} {'':>6} {'overlap':>8} {'min':>8} {'hours':>10}")
    for p in [1, 8, 16, 32, 64, 128, 256, 512]:
        ar = [0.0 if p == 1 else 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta for n in sizes]
        total = sum(ar)
        exposed = 0.0 if p == 1 else max(ar[-1], total - t_b)
        step = t_c + t_opt + exposed
        eff = (t_c + t_opt) / step
        eff_no = (t_c + t_opt) / (t_c + t_opt + total)
        img_s = p * a.batch_per_rank / step
        epoch_min = INAT_TRAIN / img_s / 60
        print(f"{p:>6} {p * a.batch_per_rank:>9} {1e3 * total:>10.1f} {1e3 * exposed:>8.1f} {1e3 * step:>8.0f} "
              f"{eff:>6.3f} {eff_no:>8.3f} {epoch_min:>8.1f} {a.epochs * epoch_min / 60:>10.1f}")


if __name__ == "__main__":
    main()
