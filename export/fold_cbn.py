"""The conditional-BatchNorm generator (``cgan.train.cbn``) for inference: each block's BatchNorm
statistics folded into the ConvTranspose before it (float64 arithmetic), the stage's gain and shift
kept as two lookup tables per block (``Gather``, ``Mul``, ``Add`` in the graph: standard operators).

Initializer names of the traced graph (a warm start reads them back, see cgan.train.store.read_exported):
``label_emb.weight``, ``blocks.<i>.conv.{weight,bias}``, ``blocks.<i>.gain.weight``,
``blocks.<i>.shift.weight`` and ``to_image.weight``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class _Block(nn.Module):
    def __init__(self, conv: nn.ConvTranspose2d, gain: nn.Embedding, shift: nn.Embedding) -> None:
        super().__init__()
        self.conv, self.gain, self.shift = conv, gain, shift

    def forward(self, h: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        y = self.gain(stage)[:, :, None, None] * self.conv(h) + self.shift(stage)[:, :, None, None]
        return torch.relu(y)


class CBNInference(nn.Module):
    """Embedding, folded blocks and the output layer; casts at the two ends when the body runs in float16."""

    def __init__(self, label_emb: nn.Embedding, blocks: list[_Block], to_image: nn.ConvTranspose2d, fp16: bool) -> None:
        super().__init__()
        self.label_emb = label_emb
        self.blocks = nn.ModuleList(blocks)
        self.to_image = to_image
        self.fp16 = fp16

    def forward(self, z: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        emb = self.label_emb(stage)
        if self.fp16:
            z = z.half()
        h = torch.cat([z, emb], dim=1)[:, :, None, None]
        for block in self.blocks:
            h = block(h, stage)
        out = torch.tanh(self.to_image(h))
        return out.float() if self.fp16 else out


def fold_conv_norm(conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> nn.ConvTranspose2d:
    """ConvTranspose2d (no bias) then an affine-free eval BatchNorm2d -> one ConvTranspose2d with a bias."""
    w = conv.weight.detach().double()  # [in, out, kh, kw]
    inv_std = 1.0 / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    folded = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                conv.output_padding, 1, True, conv.dilation)
    with torch.no_grad():
        folded.weight.copy_((w * inv_std[None, :, None, None]).float())
        folded.bias.copy_((-bn.running_mean.detach().double() * inv_std).float())
    return folded


def _table(embedding: nn.Embedding) -> nn.Embedding:
    return nn.Embedding.from_pretrained(embedding.weight.detach().clone().float(), freeze=True)


def build_cbn_inference(generator: Any, fp16: bool = False) -> nn.Module:
    """The inference copy of a :class:`cgan.train.cbn.CBNGenerator` (which is left unchanged)."""
    blocks = [_Block(fold_conv_norm(conv, norm.bn), _table(norm.gain), _table(norm.shift))
              for conv, norm in zip(generator.convs, generator.norms)]
    module = CBNInference(_table(generator.label_emb), blocks, copy.deepcopy(generator.to_image), fp16).eval()
    if fp16:
        module = module.half()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
