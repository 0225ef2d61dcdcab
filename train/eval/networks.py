"""The two judge architectures: networks of clearly different design that read a stage from a slice.

- ``small``: four 3x3 conv blocks with max-pooling on the image resized to 64 px, global average
  pooling, a 128-d feature layer. It sees coarse anatomy; texture finer than 2 px is averaged away.
- ``deep``: the full-resolution image (no resize), a 4x4 stride-4 patch stem and four 3x3 conv blocks
  (strided), then a spatial map kept before the head (a 1x1 conv to 8 channels, flattened, so *where*
  a pattern is matters), a 128-d feature layer. It sees every pixel, texture included.

Both map uint8-derived images ``[N, 1, S, S]`` in [-1, 1] to stage logits; ``features()`` is the
128-d penultimate layer (the space of the Fréchet distance, KID and precision/recall).
"""

from __future__ import annotations

import torch
from torch import nn

ARCHS = ("small", "deep")


def _block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, *, input_size: int = 64, width: int = 16, feature_dim: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(4):
            layers += [*_block(c_in, width << i), nn.MaxPool2d(2)]
            c_in = width << i
        self.conv = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Linear(c_in, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.conv(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DeepCNN(nn.Module):
    def __init__(self, num_classes: int, *, input_size: int = 128, width: int = 16, feature_dim: int = 128) -> None:
        super().__init__()
        if input_size % 32:
            raise ValueError(f"the deep judge needs an image size that is a multiple of 32 px, got {input_size}")
        w = width
        self.conv = nn.Sequential(
            nn.Conv2d(1, w + w // 2, 4, stride=4, bias=False), nn.BatchNorm2d(w + w // 2), nn.ReLU(inplace=True),
            *_block(w + w // 2, 2 * w), *_block(2 * w, 3 * w, 2), *_block(3 * w, 4 * w, 2), *_block(4 * w, 4 * w, 2),
            nn.Conv2d(4 * w, 8, 1), nn.ReLU(inplace=True),
        )
        side = input_size // 32
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(8 * side * side, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build(arch: str, num_classes: int, *, input_size: int, width: int, feature_dim: int) -> nn.Module:
    if arch == "small":
        return SmallCNN(num_classes, input_size=input_size, width=width, feature_dim=feature_dim)
    if arch == "deep":
        return DeepCNN(num_classes, input_size=input_size, width=width, feature_dim=feature_dim)
    raise ValueError(f"unknown judge architecture {arch!r}; expected one of {', '.join(ARCHS)}")
