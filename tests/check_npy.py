#!/usr/bin/env python3
"""check_npy.py: confirms that numpy reads .npy files written by decouple (dc_npy_write).

    build/tests/test_npy /tmp/npy_check        # leaves arange_{f4,i4,i8,u1}.npy there
    python3 tests/check_npy.py /tmp/npy_check  # or: python3 tests/check_npy.py FILE.npy ...

Files named arange_*.npy must hold np.arange(numel).reshape(shape) in their dtype (u1 modulo 256); any other
file is only loaded and summarised. Exits 1 on the first mismatch. Needs numpy (not needed by the C tests).
"""
import os
import sys

import numpy as np

EXPECTED_DTYPES = {"f4": "<f4", "i4": "<i4", "i8": "<i8", "u1": "|u1"}


def check(path):
    a = np.load(path, allow_pickle=False)
    print(f"{path}: dtype={a.dtype.str} shape={a.shape} C-contiguous={a.flags.c_contiguous} "
          f"first={a.ravel()[:5].tolist()}")
    name = os.path.basename(path)
    if name.startswith("arange_"):
        kind = name[len("arange_"):-len(".npy")]
        want = np.arange(a.size).astype(EXPECTED_DTYPES[kind]).reshape(a.shape)
        if a.dtype.str != EXPECTED_DTYPES[kind]:
            sys.exit(f"{path}: dtype {a.dtype.str}, expected {EXPECTED_DTYPES[kind]}")
        if not np.array_equal(a, want):
            sys.exit(f"{path}: values differ from arange({a.size})")
        # The data is the file's tail, stored C-ordered, starting at a 64-byte aligned offset.
        raw = open(path, "rb").read()
        if a.nbytes and raw[-a.nbytes:] != a.tobytes(order="C"):
            sys.exit(f"{path}: the file's data bytes differ from the array")
        if (len(raw) - a.nbytes) % 64 != 0:
            sys.exit(f"{path}: the data does not start at a multiple of 64 bytes")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    paths = []
    for arg in sys.argv[1:]:
        if os.path.isdir(arg):
            paths += sorted(os.path.join(arg, f) for f in os.listdir(arg) if f.endswith(".npy"))
        else:
            paths.append(arg)
    if not paths:
        sys.exit("no .npy files given")
    for p in paths:
        check(p)
    print(f"ok: numpy read {len(paths)} file(s)")


if __name__ == "__main__":
    main()
