"""PyTorch twins of decouple's networks, for golden fixtures and for users who load decouple weights.

CIFAR ResNet-(6n+2) with torchvision naming: conv1 (3x3, 16) + bn1, layer1..layer3 of torchvision BasicBlocks
(16/32/64 planes, stride 2 at layer2 and layer3), a 1x1 conv + BN projection shortcut named downsample.0 /
downsample.1 where the shape changes, global average pool, fc. torchvision ResNets are used as they are.
"""
import numpy as np
import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


class CifarResNet(nn.Module):
    def __init__(self, n, num_classes=10, in_channels=3):
        super().__init__()
        self.inplanes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def _make_layer(self, planes, blocks, stride):
        layers = []
        for i in range(blocks):
            s = stride if i == 0 else 1
            down = None
            if s != 1 or self.inplanes != planes:
                down = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, s, bias=False), nn.BatchNorm2d(planes))
            layers.append(BasicBlock(self.inplanes, planes, s, down))
            self.inplanes = planes
        return nn.Sequential(*layers)

    def features(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        return self.fc(self.features(x))


def build(arch, num_classes, in_channels):
    cifar = {"resnet8": 1, "resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}
    if arch in cifar:
        return CifarResNet(cifar[arch], num_classes, in_channels)
    tv = {"resnet10": (BasicBlock, [1, 1, 1, 1]), "resnet18": (BasicBlock, [2, 2, 2, 2]),
          "resnet34": (BasicBlock, [3, 4, 6, 3]), "resnet50": (Bottleneck, [3, 4, 6, 3])}
    block, layers = tv[arch]
    m = ResNet(block, layers, num_classes=num_classes)
    if in_channels != 3:
        m.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return m


# ---- decouple's counter-based generator (core/rng.h), in numpy, so C and Python fill identical weights ----
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def rng_key(seed, purpose, a, b):
    with np.errstate(over="ignore"):
        k = _mix64(np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15))
        k = _mix64(k ^ (np.uint64(purpose) * np.uint64(0xD1B54A32D192ED03)))
        k = _mix64(k ^ (np.uint64(a) + np.uint64(0x8CB92BA72F3D8DD7)))
        k = _mix64(k ^ (np.uint64(b) + np.uint64(0x52DCE729DA3ED0F5)))
    return k


def rng_uniform(key, n):
    """dc_rng_uniform for counters 0..n-1: 24-bit floats in [0, 1)."""
    c = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _mix64(_mix64(c * np.uint64(0x9E3779B97F4A7C15) + key) ^ key)
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def fill_rule(name, shape, index, seed):
    """The deterministic test fill of tests/golden_fill.h: every tensor from its own stream."""
    n = int(np.prod(shape)) if len(shape) else 1
    u = rng_uniform(rng_key(seed, 3, index, 0), n).reshape(shape)  # purpose 3 = DC_RNG_INIT
    if name.endswith("num_batches_tracked"):
        return None
    if len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        return ((u * np.float32(2) - np.float32(1)) * np.float32(np.sqrt(3.0 / fan_in) * 1.4)).astype(np.float32)
    if name.endswith("running_var") or (name.endswith(".weight") and len(shape) == 1):
        return (u + np.float32(0.5)).astype(np.float32)
    if name.endswith("running_mean") or name.endswith(".bias"):
        return ((u - np.float32(0.5)) * np.float32(0.2)).astype(np.float32)
    fan_in = shape[1]
    return ((u * np.float32(2) - np.float32(1)) * np.float32(1.0 / np.sqrt(fan_in))).astype(np.float32)


def apply_fill(model, seed):
    sd = model.state_dict()
    with torch.no_grad():
        for i, (name, t) in enumerate(sd.items()):
            v = fill_rule(name, tuple(t.shape), i, seed)
            if v is not None:
                t.copy_(torch.from_numpy(v))
