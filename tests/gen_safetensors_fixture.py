#!/usr/bin/env python3
"""gen_safetensors_fixture.py: writes tests/fixtures/torch_written.safetensors from PyTorch tensors.

Debian 12 has no `safetensors` Python package, so the file is written by hand with the same few lines that
docs/CHECKPOINTS.md gives PyTorch users (save_safetensors / load_safetensors below are copied verbatim into
the docs, so this script also tests that snippet). The values are simple closed forms that
tests/test_safetensors.c recomputes and compares exactly:

    conv.weight            F32 [2, 3, 2, 2]  arange(24) * 0.25 - 3
    fc.bias                F32 [5]           [1/3, -2.5, 1e-40 (subnormal), 3.0e38, -0.0]
    bn.num_batches_tracked I64 []            1234567890123 (a 0-dim tensor, as in BatchNorm state_dicts)
    labels                 I64 [3]           [-1, 0, 2**40 + 7]
    counts                 I32 [2, 3]        arange(6) - 3
    mask                   U8  [4]           [0, 1, 254, 255]
    empty                  F32 [0, 3]        (no data)
    __metadata__           {"format": "pt", "note": <non-ASCII text and characters that need escaping>}

Usage:
    python3 tests/gen_safetensors_fixture.py                 # (re)writes the fixture
    python3 tests/gen_safetensors_fixture.py --check FILE    # loads FILE with load_safetensors, prints it
"""
import json
import os
import struct
import sys

import numpy as np
import torch

# ---- the snippet in docs/CHECKPOINTS.md (keep the two in sync) ------------------------------------------------
DTYPES = {"F32": "<f4", "I64": "<i8", "I32": "<i4", "U8": "u1"}  # safetensors name -> little-endian numpy
NAMES = {torch.float32: "F32", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def load_safetensors(path):
    """Returns (state_dict, metadata) from a decouple/safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    metadata = header.pop("__metadata__", {})
    state = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]])
        state[name] = torch.from_numpy(array.copy()).reshape(info["shape"])
    return state, metadata


def save_safetensors(path, state, metadata=None):
    """Writes a state_dict (float32/int64/int32/uint8 tensors) so that decouple can load it."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in state.items():
        raw = t.detach().cpu().contiguous().numpy().astype(DTYPES[NAMES[t.dtype]]).tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # pad so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for raw in chunks:
            f.write(raw)
# ---- end of the snippet ------------------------------------------------------------------------------------


def fixture_tensors():
    return {
        "conv.weight": (torch.arange(24, dtype=torch.float32) * 0.25 - 3).reshape(2, 3, 2, 2),
        "fc.bias": torch.tensor([1.0 / 3.0, -2.5, 1e-40, 3.0e38, -0.0], dtype=torch.float32),
        "bn.num_batches_tracked": torch.tensor(1234567890123, dtype=torch.int64),
        "labels": torch.tensor([-1, 0, 2**40 + 7], dtype=torch.int64),
        "counts": (torch.arange(6, dtype=torch.int32) - 3).reshape(2, 3),
        "mask": torch.tensor([0, 1, 254, 255], dtype=torch.uint8),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }


FIXTURE_METADATA = {"format": "pt", "note": "mu=\u00b5 smile=\U0001F600 quote=\" backslash=\\ tab=\t"}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        state, meta = load_safetensors(sys.argv[2])
        print("metadata:", meta)
        for name, t in state.items():
            print(f"{name}: {t.dtype} {list(t.shape)} {t.flatten()[:8].tolist()}")
        return
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "torch_written.safetensors")
    tensors = fixture_tensors()
    save_safetensors(out, tensors, FIXTURE_METADATA)
    # Self-check: the loader half of the snippet gives back exactly what was saved.
    back, meta = load_safetensors(out)
    assert meta == FIXTURE_METADATA, meta
    assert list(back) == list(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape, name
        assert torch.equal(back[name], t), name
    print(f"wrote {out} ({os.path.getsize(out)} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
