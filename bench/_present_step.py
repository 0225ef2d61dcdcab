"""The baseline of the training-step benchmark: cgan-train's step as it was before it was made faster (fused D passes, channels-last).

``present_step`` is ``TrainingRun.train_step`` of ``git show ee3460d:train/loop.py``, unchanged but
for ``self`` -> ``run`` (and the EMA update inlined): D on the real batch and on the generated batch
in two passes (two spectral-norm power iterations), then G against a third pass of D in train mode
(a third power iteration), per-parameter Adam, contiguous (NCHW) tensors by default. Kept here, not
imported from git, so the comparison stays side by side in one process as the code moves on.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def as_present(run):
    """Give ``run`` (a :class:`cgan.train.loop.step.TrainingRun`) the optimizers the present step had."""
    c = run.config
    betas = (c.beta1, c.beta2)
    run.opt_g = torch.optim.Adam(run.G.parameters(), lr=c.lr_g, betas=betas)
    run.opt_d = torch.optim.Adam(run.D.parameters(), lr=c.lr_d, betas=betas)
    run.bce = nn.BCEWithLogitsLoss()
    return run


def present_step(run, real: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One D update then one G update; returns [d_loss, g_loss, D(real), D(fake)] (on device)."""
    G, D, scaler = run.G_train, run.D_train, run.scaler
    b = real.shape[0]
    ones = torch.ones(b, device=run.device)
    zeros = torch.zeros(b, device=run.device)
    z = torch.randn(b, run.gen_config.z_dim, device=run.device, generator=run.noise_gen)

    with run._autocast():
        fake = G(z, labels)
        real_logits = D(real, labels).float()
        fake_logits = D(fake.detach(), labels).float()
        loss_d = run.bce(real_logits, ones) + run.bce(fake_logits, zeros)
    run.opt_d.zero_grad(set_to_none=True)
    scaler.scale(loss_d).backward()
    scaler.step(run.opt_d)

    # G step: D's weight gradients would be thrown away, so D is frozen and DDP told not to sync it
    run.D.requires_grad_(False)
    no_sync = D.no_sync() if run.info.enabled else contextlib.nullcontext()
    with no_sync:
        with run._autocast():
            loss_g = run.bce(D(fake, labels).float(), ones)
        run.opt_g.zero_grad(set_to_none=True)
        scaler.scale(loss_g).backward()
    run.D.requires_grad_(True)
    scaler.step(run.opt_g)
    scaler.update()
    if run.G_ema is not None:
        with torch.no_grad():
            decay = run.config.ema_decay
            for e, p in zip(run.G_ema.parameters(), run.G.parameters()):
                e.lerp_(p, 1.0 - decay)
            for e, buf in zip(run.G_ema.buffers(), run.G.buffers()):
                e.copy_(buf)
    with torch.no_grad():
        return torch.stack([loss_d.detach(), loss_g.detach(),
                            torch.sigmoid(real_logits.detach()).mean(), torch.sigmoid(fake_logits.detach()).mean()])
