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
previous checkpoint whole.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgan.runtime.contract import GenKey
from cgan.runtime.errors import CganError, first_line
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


class PickledCodeError(CganError):
    """A file that needs pickled Python code to load: refused, the code never runs."""


class UnreadableCheckpointError(CganError):
    """A truncated, corrupt or foreign file; ``reason`` is torch's, in a line."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path} is corrupt or not a PyTorch file ({reason})")
        self.path, self.reason = path, reason


# What torch's weights-only unpickler says when a file asks for code (a global, a reduce call), in the
# wordings of the torch versions we support ("Unsupported global: GLOBAL x.y", "unsupported GLOBAL x.y").
_ASKS_FOR_CODE = re.compile(r"unsupported global|add_safe_globals|trying to call reduce|GLOBAL [\w.]+", re.IGNORECASE)
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
# Lines of torch's text that are advice about the unsafe option, never repeated to a user.
_UNSAFE_ADVICE = re.compile(r"weights.only|re-running|arbitrary code|trusted source|documentation of torch.load", re.IGNORECASE)


def refused_message(path: Path | str, exc: BaseException) -> str | None:
    """The refusal for torch's weights-only unpickler error ``exc``, or None when it is not one.

    Only what the file asked for is kept from torch's text, never its advice to turn the protection off."""
    text = str(exc)
    if not _ASKS_FOR_CODE.search(text):
        return None
    found = _GLOBAL.search(text)
    asked = f" (it asks for {found.group(1)})" if found else ""
    return (f"{path} refused: the file needs pickled code to load{asked}, which is never executed here; "
            "load only checkpoints of plain tensors, such as cgan-train writes")


def safe_load(path: Path | str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: a file needing pickled code raises :class:`PickledCodeError`,
    an unreadable one :class:`UnreadableCheckpointError` (message: the first line of torch's reason)."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # torch warns about a plain pickle's protocol before refusing it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        refusal = refused_message(path, exc)
        if refusal is not None:
            raise PickledCodeError(refusal) from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
        reason = detail.group(1).strip()[:200] if detail else _torch_reason(exc)
        if _plain_pickle(path):
            reason = "a plain Python pickle, not a file written by torch.save; it is never unpickled here"
        raise UnreadableCheckpointError(path, reason) from None
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise UnreadableCheckpointError(path, _torch_reason(exc)) from None


def _plain_pickle(path: Path | str) -> bool:
    """Whether ``path`` starts like a pickle of protocol 3 or later (torch.save writes a zip, or protocol 2)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and head[1] >= 3


def _torch_reason(exc: BaseException) -> str:
    """torch's reason in a line: its first line that is not advice to load again with the protection off."""
    for line in str(exc).splitlines():
        if line.strip() and not _UNSAFE_ADVICE.search(line):
            return line.strip()[:200]
    return first_line(exc)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", *,
                    hint: str | None = None) -> dict[str, Any]:
    """Read a full checkpoint, or raise :class:`CganError` saying what is wrong with it.

    ``hint`` ends the message (what the caller wants instead); the default suits ``--resume``.
    """
    try:
        body = safe_load(path, map_location)
    except PickledCodeError as exc:
        raise PickledCodeError(f"checkpoint {exc}" + (f"; {hint}" if hint else "")) from None
    except UnreadableCheckpointError as exc:
        raise CganError(f"checkpoint {path} is unreadable ({exc.reason}); "
                        f"{hint or 'delete it to resume from the previous one'}") from None
    if not isinstance(body, dict) or body.get("format") != CHECKPOINT_FORMAT:
        raise CganError(f"{path} is not a cgan-train checkpoint" + (f"; {hint}" if hint else ""))
    if body.get("version") != CHECKPOINT_VERSION:
        raise CganError(f"checkpoint {path} has version {body.get('version')}; this cgan-train reads "
                        f"version {CHECKPOINT_VERSION}")
    return body


# ---------------------------------------------------------------- RNG states

def capture_rng() -> dict[str, Any]:
    """The process-wide RNG states (torch CPU and CUDA, numpy's legacy global, python's random)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
