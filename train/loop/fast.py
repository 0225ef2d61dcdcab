"""Speed choices of the training step made once per run: the optimizer's implementation and ``--compile``.

Neither changes the algorithm. The fused Adam computes the same update as the per-parameter one
(within float rounding) in one kernel over all parameters; ``torch.compile`` fuses the element-wise
work around the convolutions. A compiled step matches eager within float tolerance, not bit for bit,
which is why it is off by default and eager runs stay the reproducible reference.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from cgan.runtime.errors import first_line


def make_adam(params: Iterable[nn.Parameter], *, lr: float, betas: tuple[float, float],
              device: torch.device) -> torch.optim.Adam:
    """Adam with its fused kernel where torch has one for ``device`` (CPU and CUDA), else ``foreach``."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=device.type != "mps")


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """``opt.load_state_dict(state)``, keeping this run's kernel choice (``fused``/``foreach``): loading
    takes every group setting from the checkpoint, so one written by an older version would
    otherwise switch a resumed run to another implementation."""
    kept = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, settings in zip(opt.param_groups, kept):
        group.update(settings)


def compile_or_eager(module: nn.Module, enabled: bool, log: Callable[[str], object]) -> nn.Module:
    """``torch.compile(module)`` when ``enabled`` and available; otherwise ``module`` with a one-line note.

    Compilation itself happens at the first call; a failure there is caught by the training step,
    which then continues eagerly (see :meth:`cgan.train.loop.step.TrainingRun.train_step`).
    """
    if not enabled:
        return module
    compile_fn = getattr(torch, "compile", None)
    if compile_fn is None:
        log("note: --compile: this torch has no torch.compile; training in eager mode")
        return module
    try:
        return compile_fn(module)
    except Exception as exc:  # e.g. an unsupported Python version for dynamo
        log(f"note: --compile: torch.compile is unavailable here ({type(exc).__name__}: {first_line(exc)}); training in eager mode")
        return module

