"""What ``cgan-train`` writes to disk: the generator file in the original's format, and full checkpoints.

Generator file (``cDCGAN_generator.pth``): the original project's dict ``{"model", "z_dim",
"num_classes", "img_size"}`` — its inference code loads it unchanged — plus our keys ``"class_names"``
(the run's class folders in stage order), ``"config"`` (:class:`GeneratorConfig` as a dict),
``"provenance"`` (str -> str) and ``"ema"`` (bool: ``"model"`` holds the EMA weights); the keys are
those of :class:`cgan.runtime.contract.GenKey`.

Full checkpoint (``checkpoints/ckpt_<step>.pt``): everything needed to continue a run exactly —
models, optimizers, grad scaler, EMA weights, the RNG states of torch/numpy/python and of every
rank's noise generator, the sampler position (epoch, batch), the history and the run's config.
Every value is a tensor or a plain Python container, so ``torch.load(..., weights_only=True)``
reads it. The generator weights to export are ``ckpt["generator_ema"]`` when not None, else
``ckpt["generator"]``; ``ckpt["config"]`` rebuilds the Generator.

Both are written atomically (temporary file, then rename): a run killed at any moment leaves the
previous checkpoint whole. :mod:`.read` reads them back.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from cgan.runtime.contract import GenKey
from cgan.runtime.fileio import atomic_path, our_temp

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FORMAT = "cgan-train-checkpoint"
CHECKPOINT_VERSION = 1
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


# ---------------------------------------------------------------- generator file

def generator_payload(
    state_dict: dict[str, torch.Tensor], config: dict[str, Any], provenance: dict[str, str], *, ema: bool,
    class_names: list[str],
) -> dict[str, Any]:
    """The generator file's dict: the original's four keys first, then ours."""
    if len(class_names) != int(config["num_classes"]):
        raise ValueError(f"{len(class_names)} class names for a generator of {config['num_classes']} classes")
    return {
        GenKey.MODEL: {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        GenKey.Z_DIM: int(config["z_dim"]),
        GenKey.NUM_CLASSES: int(config["num_classes"]),
        GenKey.IMG_SIZE: int(config["img_size"]),
        GenKey.CLASS_NAMES: [str(n) for n in class_names],
        GenKey.CONFIG: dict(config),
        GenKey.PROVENANCE: {str(k): str(v) for k, v in provenance.items()},
        GenKey.EMA: bool(ema),
    }


def save_generator(path: Path, payload: dict[str, Any]) -> Path:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


# ---------------------------------------------------------------- full checkpoints

def checkpoint_dir(out: Path) -> Path:
    return Path(out) / CHECKPOINT_DIR


def list_checkpoints(out: Path) -> list[Path]:
    """Checkpoints in ``out/checkpoints``, oldest first (by step)."""
    folder = checkpoint_dir(out)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out: Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1] if found else None


def save_checkpoint(out: Path, step: int, state: dict[str, Any], *, keep: int = 2) -> Path:
    """Write ``ckpt_<step>.pt`` atomically, then delete all but the newest ``keep`` checkpoints."""
    folder = checkpoint_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt_{step:09d}.pt"
    body = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(body, tmp)
    for old in list_checkpoints(out)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    for stale in folder.glob(".ckpt_*.tmp.pt"):  # left by a run killed while writing (one writer per --out)
        if our_temp(stale.name):  # made by a run, not a user's file that looks like one
            stale.unlink(missing_ok=True)
    return path
