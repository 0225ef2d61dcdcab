"""The conditional-BatchNorm generator (``--generator cbn``): the original's layers, but every block's
BatchNorm takes its scale and shift from the stage (de Vries et al. 2017; Miyato & Koyama 2018).

In the original generator the stage enters once, as four embedding channels beside the 100 noise
channels at the input; here it also sets a per-channel gain and shift after every upsampling block,
so each stage can move every layer's features. The input embedding is kept, so the first layer is
the original's and a warm start can carry the original's weights over unchanged (every stage's
gain and shift rows set to the shared BatchNorm's weight and bias: the same function at the start).
The contract is unchanged: ``(z, stage) -> image``, exported to the same ONNX inputs and output.

State-dict names: ``label_emb.weight``, ``convs.<i>.weight``, ``norms.<i>.bn.{running_mean,
running_var,num_batches_tracked}``, ``norms.<i>.gain.weight`` / ``norms.<i>.shift.weight``
(``[num_classes, channels]``) and ``to_image.weight``.
"""

from __future__ import annotations

import torch
from torch import nn

from .model_config import GeneratorConfig, dcgan_init


class StageBatchNorm(nn.Module):
    """BatchNorm without its own affine, then the stage's gain and shift: ``gain[s] * BN(x) + shift[s]``."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.shift = nn.Embedding(num_classes, channels)
        # the DCGAN init of a BatchNorm (weight N(1, 0.02), bias 0), drawn per stage
        nn.init.normal_(self.gain.weight, 1.0, 0.02)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.gain(labels)[:, :, None, None] * self.bn(x) + self.shift(labels)[:, :, None, None]


class CBNGenerator(nn.Module):
    """(z, stage) -> image in [-1, 1], like :class:`cgan.train.models.Generator`, with stage-dependent norms."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        if config.arch != "cbn":
            raise ValueError(f"CBNGenerator needs arch 'cbn', got {config.arch!r}")
        self.config = config
        self.label_emb = nn.Embedding(config.num_classes, config.num_classes)
        convs, norms = [], []
        c_in = config.z_dim + config.num_classes
        for i in range(config.n_blocks):
            c_out = config.width >> i
            stride, pad = (1, 0) if i == 0 else (2, 1)
            convs.append(nn.ConvTranspose2d(c_in, c_out, 4, stride, pad, bias=False))
            norms.append(StageBatchNorm(c_out, config.num_classes))
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.to_image = nn.ConvTranspose2d(c_in, config.channels, 4, 2, 1, bias=False)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        h = torch.cat([z, self.label_emb(labels)[:, :, None, None]], dim=1)
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(norm(conv(h), labels))
        return torch.tanh(self.to_image(h))
