#!/usr/bin/python3
"""Generates the PyTorch golden fixtures for tests/test_golden.c (run by hand; CI never needs PyTorch).

    /usr/bin/python3 tests/gen_golden.py        # writes tests/fixtures/golden_*.safetensors

golden_resnet8_init.safetensors   the CIFAR ResNet-8 state_dict (PyTorch names), filled by the shared rule
golden_resnet8.safetensors        x [8,3,32,32], labels [8]; after ONE training-mode forward/backward:
                                  out.logits, out.loss, grad.<param>; after 3 SGD steps (lr 0.1, momentum 0.9,
                                  weight decay 5e-4, same batch): step3.<tensor> for every state_dict entry
golden_resnet18_64.safetensors    torchvision ResNet-18 (10 classes) filled by the rule with seed 2, eval mode:
                                  x [2,3,64,64] and out.logits
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
DT = {np.float32: "F32", np.int32: "I32", np.int64: "I64"}


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.array(arr, order="C", copy=True)  # keeps 0-d tensors 0-d (ascontiguousarray would not)
        b = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": DT[arr.dtype.type], "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def state_arrays(model, prefix=""):
    out = {}
    for k, v in model.state_dict().items():
        out[prefix + k] = v.detach().cpu().numpy().copy()
    return out


def main():
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # plain fp32 reference kernels
    # --- CIFAR ResNet-8: training step, gradients, 3 SGD steps ---
    m = tm.build("resnet8", 10, 3).double()  # double: the reference is far more exact than the C float32 run
    tm.apply_fill(m, 1)
    init = state_arrays(m)
    init32 = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in init.items()}
    write_safetensors(os.path.join(OUT, "golden_resnet8_init.safetensors"), init32)
    g = np.random.default_rng(7)
    x = g.standard_normal((8, 3, 32, 32)).astype(np.float32)
    labels = g.integers(0, 10, 8).astype(np.int32)
    xt = torch.from_numpy(x).double()
    yt = torch.from_numpy(labels).long()
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    out = {"x": x, "labels": labels}
    for step in range(3):
        opt.zero_grad()
        logits = m(xt)
        loss = F.cross_entropy(logits, yt)
        loss.backward()
        if step == 0:
            out["out.logits"] = logits.detach().float().numpy()
            out["out.loss"] = np.array([loss.item()], dtype=np.float32)
            for k, p in m.named_parameters():
                out["grad." + k] = p.grad.detach().float().numpy().copy()
        opt.step()
    for k, v in state_arrays(m, "step3.").items():
        out[k] = v.astype(np.float32) if v.dtype == np.float64 else v
    write_safetensors(os.path.join(OUT, "golden_resnet8.safetensors"), out)

    # --- torchvision ResNet-18 at 64x64, eval mode ---
    r = tm.build("resnet18", 10, 3).double()
    tm.apply_fill(r, 2)
    r.eval()
    x2 = g.standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        lg = r(torch.from_numpy(x2).double()).float().numpy()
    write_safetensors(os.path.join(OUT, "golden_resnet18_64.safetensors"), {"x": x2, "out.logits": lg})
    print("wrote fixtures to", OUT)


if __name__ == "__main__":
    main()
