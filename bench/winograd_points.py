#!/usr/bin/python3
"""winograd_points.py: how much rounding F(4x4, 3x3) adds for a choice of interpolation points.

    /usr/bin/python3 bench/winograd_points.py [channels]

Builds the Toom-Cook transforms (A^T, G, B^T) of F(4, 3) for each set of five finite points plus infinity in
exact rationals, checks them on a random 1-D correlation, then simulates a 16-channel 3x3 convolution the way
core/conv_winograd.c computes it in float32 (weights transformed in double and rounded once, the input
transform, the channel sum of the products and the output transform each rounded to float32) and prints its
relative L2 error against a double-precision reference, next to the float32 direct convolution's error on the
same data. Lavin & Gray's points are the first row (the ones conv_winograd.c uses). Needs numpy (Debian
python3-numpy); no part of the build or the tests runs it.
"""
import sys
from fractions import Fraction as Fr

import numpy as np

M, R = 4, 3  # output tile, kernel size
N = M + R - 1  # input tile


def poly_from_roots(roots):
    """Coefficients (lowest degree first, N entries) of prod (x - root)."""
    c = [Fr(1)]
    for root in roots:
        c = [Fr(0)] + c
        for i in range(len(c) - 1):
            c[i] -= root * c[i + 1]
    return c + [Fr(0)] * (N - len(c))


def toom_cook(points):
    """A^T (M x N), G (N x R), B^T (N x N) for the N - 1 finite points and infinity."""
    a = [Fr(p) for p in points]
    AT = [[a[j] ** i for j in range(N - 1)] + [Fr(int(i == M - 1))] for i in range(M)]
    f = [np.prod([a[j] - a[l] for l in range(N - 1) if l != j]) for j in range(N - 1)]
    G = [[a[j] ** k / f[j] for k in range(R)] for j in range(N - 1)] + [[Fr(int(k == R - 1)) for k in range(R)]]
    BT = [poly_from_roots([a[l] for l in range(N - 1) if l != j]) for j in range(N - 1)] + [poly_from_roots(a)]
    return tuple(np.array([[float(x) for x in row] for row in m]) for m in (AT, G, BT))


def exactness(AT, G, BT, rng):
    d, g = rng.standard_normal(N), rng.standard_normal(R)
    ref = np.array([d[i:i + R] @ g for i in range(M)])
    return np.abs(AT @ ((G @ g) * (BT @ d)) - ref).max()


def data(channels, tiles, rng):
    d = rng.standard_normal((tiles, channels, N, N)).astype(np.float32)
    g = (rng.standard_normal((channels, R, R)) / np.sqrt(R * R * channels)).astype(np.float32)
    ref = np.empty((tiles, M, M))
    for i in range(M):
        for j in range(M):
            ref[:, i, j] = np.einsum("tcab,cab->t", d[:, :, i:i + R, j:j + R].astype(np.float64), g.astype(np.float64))
    return d, g, ref


def winograd_error(AT, G, BT, d, g, ref):
    f32 = lambda x: x.astype(np.float32)
    U = f32(np.einsum("ij,cjk,lk->cil", G, g.astype(np.float64), G))
    BT32, AT32 = f32(BT), f32(AT)
    V = f32(np.einsum("ij,tcjk,lk->tcil", BT32, d, BT32))
    Mt = f32(np.einsum("tcil,cil->til", V, U))
    Y = f32(np.einsum("ij,tjk,lk->til", AT32, Mt, AT32))
    return np.linalg.norm(Y - ref) / np.linalg.norm(ref)


def direct_error(d, g, ref):
    Y = np.zeros(ref.shape, np.float32)
    for i in range(M):
        for j in range(M):
            acc = np.zeros(d.shape[0], np.float32)
            for c in range(d.shape[1]):
                for a in range(R):
                    for b in range(R):
                        acc = (acc + d[:, c, i + a, j + b] * g[c, a, b]).astype(np.float32)
            Y[:, i, j] = acc
    return np.linalg.norm(Y - ref) / np.linalg.norm(ref)


def main():
    channels = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    rng = np.random.default_rng(0)
    d, g, ref = data(channels, 2000, rng)
    h = Fr(1, 2)
    print(f"{channels} channels, 2000 tiles; relative L2 error against double precision")
    print(f"{'direct float32':40s} {direct_error(d, g, ref):.2e}")
    for points in [(0, 1, -1, 2, -2), (0, 1, -1, h, -h), (0, 1, -1, h, -2), (0, 1, -1, 2, -h),
                   (0, 1, -1, 3 * h, -3 * h), (0, 1, -1, h, -3 * h), (0, 1, -1, Fr(2, 3), -Fr(2, 3))]:
        AT, G, BT = toom_cook(points)
        name = "F(4x4) points " + ", ".join(str(Fr(p)) for p in points) + ", inf"
        print(f"{name:40s} {winograd_error(AT, G, BT, d, g, ref):.2e}   (exact to {exactness(AT, G, BT, rng):.0e})")


if __name__ == "__main__":
    main()
