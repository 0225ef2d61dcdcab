"""What every network here is built from: :class:`GeneratorConfig` (the sizes and architecture of a
generator, either one: the original's in ``models.py``, the conditional-BatchNorm one in ``cbn.py``) and
:func:`dcgan_init`, the initialisation they and the discriminators start from."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from torch import nn


GENERATORS = ("dcgan", "cbn")


@dataclass(frozen=True)
class GeneratorConfig:
    z_dim: int = 100
    num_classes: int = 4
    img_size: int = 128
    channels: int = 1
    width: int = 512  # channels of the first block; halved at every upsampling block
    arch: str = "dcgan"  # "dcgan": the original's layers; "cbn": stage-dependent BatchNorm scale and shift (cbn.py)

    def __post_init__(self) -> None:
        if self.arch not in GENERATORS:
            raise ValueError(f"unknown generator {self.arch!r}; expected one of {', '.join(GENERATORS)}")
        if self.img_size < 32 or self.img_size & (self.img_size - 1):
            raise ValueError(f"img_size must be a power of two >= 32, got {self.img_size}")
        if self.width >> (self.n_blocks - 1) < 1:
            raise ValueError(f"width {self.width} is too small for {self.n_blocks} blocks at {self.img_size} px")
        for name in ("z_dim", "num_classes", "channels", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def n_blocks(self) -> int:
        """ConvTranspose+BatchNorm+ReLU blocks: 4x4 from the latent, then doubling up to img_size/2."""
        return int(math.log2(self.img_size)) - 2

    def to_dict(self) -> dict:
        return asdict(self)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d) and module.affine:  # cbn.py's norms carry their affine elsewhere
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
