"""The models the benchmarks run: a briefly trained seed-size Generator, its .pth and its ONNX exports.

An untrained Generator has BatchNorm running statistics of exactly (0, 1), so in eval mode its
BatchNorms are near-identity and its outputs span a tiny range; parity measured on it says little.
A few GAN steps plus a re-estimate of the BatchNorm statistics give weights and statistics like a
real model's (outputs spanning most of [-1, 1]) in seconds. Nothing here touches the network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EMBEDDED_DEFAULT = REPO / "runtime" / "assets" / "default.onnx"


def _fake_real_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Bright ellipses with a dark core on a black background, in [-1, 1]: a cheap stand-in for slices."""
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j].astype(np.float32)
    out = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        a, b = rng.uniform(0.6, 0.9, 2)
        r = (xx / a) ** 2 + (yy / b) ** 2
        core = rng.uniform(0.05, 0.3)
        img = np.where(r < 1, 0.8, -1.0) - np.where(r < core, 1.2, 0.0)
        out[i, 0] = np.clip(img + rng.normal(0, 0.1, img.shape), -1, 1)
    return out


def briefly_trained_generator(*, steps: int = 4, batch: int = 16, seed: int = 0, img_size: int = 128):
    """A seed-architecture Generator after ``steps`` GAN steps and a BatchNorm re-estimate, in eval mode."""
    import torch
    from torch import nn

    from cgan.train.models import Generator, ProjectionDiscriminator

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = Generator(img_size=img_size)
    disc = ProjectionDiscriminator(img_size=img_size)
    opt_g = torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), 5e-5, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(batch), torch.zeros(batch)
    gen.train()
    for _ in range(steps):
        real = torch.from_numpy(_fake_real_images(rng, batch, img_size))
        labels = torch.randint(0, gen.config.num_classes, (batch,))
        fake = gen(torch.randn(batch, gen.config.z_dim), labels)
        loss_d = bce(disc(real, labels), ones) + bce(disc(fake.detach(), labels), zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = bce(disc(fake, labels), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    # Re-estimate the running statistics as a cumulative average over a few batches (momentum=None).
    bns = [m for m in gen.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    with torch.no_grad():
        for _ in range(4):
            gen(torch.randn(32, gen.config.z_dim), torch.randint(0, gen.config.num_classes, (32,)))
    for bn in bns:
        bn.momentum = 0.1
    return gen.eval()


def save_seed_checkpoint(gen, path: Path) -> Path:
    """The original project's generator file: ``{model, z_dim, num_classes, img_size}``."""
    import torch

    cfg = gen.config
    torch.save(
        {"model": gen.state_dict(), "z_dim": cfg.z_dim, "num_classes": cfg.num_classes, "img_size": cfg.img_size},
        path,
    )
    return path


def export_onnx(gen, path: Path, *, fp16: bool = False):
    """Export with the project's exporter (validated against torch); returns its ExportReport."""
    from cgan.export.api import export_generator

    return export_generator(
        gen,
        path,
        fp16=fp16,
        provenance={"training_data": "bench: 4 GAN steps on ellipses, BatchNorm re-estimated", "epochs": "0"},
        model_card=False,
    )
