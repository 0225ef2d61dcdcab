"""What a run's configuration (:class:`cgan.train.options.TrainConfig`) leads to: the device and
precision chosen once, how a resumed run's saved config meets the flags given now, and the result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgan.runtime.errors import CganError

from . import ddp
from ..options import TrainConfig


@dataclass
class TrainResult:
    out: Path
    generator: Path  # the seed-format generator file
    checkpoint: Path | None  # the newest full checkpoint
    steps: int  # total optimizer steps of the run (including those before --resume)
    epochs: float  # epochs done, fractional when stopped mid-epoch
    history: list[dict[str, Any]]  # training_history.csv's rows
    step_losses: np.ndarray  # float64 [n, 4]: d_loss, g_loss, d_real, d_fake of the steps run by this call
    first_step: int  # global index (1-based) of step_losses[0]
    images_per_s: float  # training throughput of this call, all ranks together
    device: str
    precision: str
    config: TrainConfig = field(repr=False, default_factory=TrainConfig)


# ---------------------------------------------------------------- choices made once

def resolve_device(requested: str, info: ddp.DistInfo) -> torch.device:
    cuda = torch.cuda.is_available()
    if requested == "cuda" and not cuda:
        raise CganError("--device cuda: CUDA is not available (no GPU or a CPU-only torch build); "
                        "use --device cpu or --device auto")
    if requested == "cuda" or (requested == "auto" and cuda):
        if info.enabled and info.local_rank >= torch.cuda.device_count():
            raise CganError(f"LOCAL_RANK {info.local_rank} but only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
    return torch.device("cpu")


def resolve_precision(requested: str, device: torch.device) -> str:
    if requested == "auto":
        return "fp16" if device.type == "cuda" else "fp32"  # the original: AMP on GPU only
    if requested == "fp16" and device.type != "cuda":
        raise CganError("--precision fp16 needs CUDA (GradScaler); on CPU use bf16 or fp32")
    return requested


# ---------------------------------------------------------------- resuming

def merge_resumed(config: TrainConfig, saved: dict[str, Any], source: Path, given: set[str] | None,
                   step: int) -> TrainConfig:
    """The saved run's config is the truth: a flag given now that differs from it is refused, except those in
    ``TrainConfig.SAFE_ON_RESUME``, which are applied and recorded in ``changes``.

    ``given``: the fields named on the command line (None: those that differ from the defaults)."""
    saved_cfg = TrainConfig.from_dict(saved)
    defaults = TrainConfig()
    if given is None:
        given = {f.name for f in dataclasses.fields(TrainConfig) if getattr(config, f.name) != getattr(defaults, f.name)}
    run_dir = source.parent.parent
    changed: dict[str, list] = {}
    for f in dataclasses.fields(TrainConfig):
        name = f.name
        if name in ("out", "resume", "changes") or name not in given:
            continue
        new, old = getattr(config, name), getattr(saved_cfg, name)
        if new == old:
            continue
        flag = "--" + name.replace("_", "-")
        if name not in TrainConfig.SAFE_ON_RESUME:
            safe = ", ".join("--" + n.replace("_", "-") for n in TrainConfig.SAFE_ON_RESUME)
            raise CganError(f"--resume continues {run_dir} as it was configured, with {name}={_shown(old)}; drop {flag} "
                            f"(got {_shown(new)}) or start a new run in another --out (a resume may change only {safe})")
        changed[name] = [old, new]
    merged = dataclasses.replace(saved_cfg, out=config.out, resume=True,
                                 **{name: getattr(config, name) for name in changed})
    if merged.max_steps is not None and merged.max_steps < step:
        raise CganError(f"--max-steps {merged.max_steps} is below the {step} steps {run_dir} has done; give a larger one to extend it")
    if changed:
        merged.changes = [*saved_cfg.changes, {"step": step, "time": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
                                               "set": {k: [_plain(v) for v in pair] for k, pair in changed.items()}}]
    return merged


def _shown(value: Any) -> str:
    """A value as the user typed it: a path as its text (never PosixPath('...')), anything else as repr."""
    return str(value) if isinstance(value, Path) else repr(value)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value
