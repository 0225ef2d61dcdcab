"""A training run's checkpoint (every rank): the body it writes, and putting one back for ``--resume``
or starting from one (``--init-from``: another run's G and D, or a warm start from an exported generator).

:class:`RunCheckpoint` is built once per run from the facts that do not change while it trains (its
settings, classes, data, device, process group); :class:`~cgan.train.loop.step.TrainingRun` holds one and
hands it what it saves or sets: the :class:`Trainables` (models, optimizers, grad scaler, training noise)
and the run's position (step, epoch, batch, the epoch so far, the history), which the run itself reads
out of the body it gets back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cgan.runtime import __version__
from cgan.runtime.errors import CganError

from ..model_config import GeneratorConfig
from ..options import TrainConfig
from ..store.read_exported import ExportedGenerator, warm_state
from . import ddp
from .fast import load_optimizer_state


@dataclass
class Trainables:
    """What a training step changes, besides the position: the run's models, optimizers, scaler and noise."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module | None  # the EMA copy of G, when kept
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    noise_gen: torch.Generator  # the training noise: its own generator, seeded per rank

    def load_weights(self, state: dict[str, Any], *, ema_key: str) -> None:
        """G and D from a checkpoint body; the EMA model (if kept) from ``state[ema_key]``."""
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state[ema_key])


@dataclass
class RunCheckpoint:
    """The checkpoint side of a run (see the module docstring): every fact here is fixed when the run is built."""

    config: TrainConfig
    gen_config: GeneratorConfig
    class_names: list[str]
    description: str  # the training data, in words
    info: ddp.DistInfo
    device: torch.device
    log: Callable[[str], object]

    def body(self, parts: Trainables, position: dict[str, Any], provenance: dict[str, str]) -> dict[str, Any]:
        """The full checkpoint body (collective under DDP: every rank must call it). ``position``: the run's
        step, epoch, batch, epoch so far, history, start time and init source, as the body keeps them."""
        per_rank = ddp.gather_objects(self.info, {"rng": capture_rng(), "noise": parts.noise_gen.get_state()})
        return {
            "config": self.gen_config.to_dict(),
            "train_config": self.config.to_dict(),
            "class_names": list(self.class_names),
            "training_data": self.description,
            "generator": parts.G.state_dict(),
            "generator_ema": None if parts.G_ema is None else parts.G_ema.state_dict(),
            "discriminator": parts.D.state_dict(),
            "opt_g": parts.opt_g.state_dict(),
            "opt_d": parts.opt_d.state_dict(),
            "scaler": parts.scaler.state_dict(),
            "rng": [r["rng"] for r in per_rank],
            "noise_rng": [r["noise"] for r in per_rank],
            "noise_device": self.device.type,
            "world_size": self.info.world_size,
            **position,
            "tool_version": __version__,
            "provenance": provenance,
        }

    def restore(self, parts: Trainables, state: dict[str, Any], source: Path) -> None:
        """Put a checkpoint body's weights, optimizers, scaler and random states back (``--resume``);
        the run then takes its position from ``state``."""
        if state["world_size"] != self.info.world_size:
            raise CganError(f"{source} was written by a run of {state['world_size']} process(es); resume it with "
                            f"the same number (this run has {self.info.world_size})")
        if state["class_names"] != self.class_names:
            raise CganError(f"{source} was trained on classes {state['class_names']}, the data now has "
                            f"{self.class_names}; resume with the same data")
        parts.load_weights(state, ema_key="generator_ema")
        load_optimizer_state(parts.opt_g, state["opt_g"])
        load_optimizer_state(parts.opt_d, state["opt_d"])
        parts.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"][self.info.rank])
        if state["noise_device"] == self.device.type:
            parts.noise_gen.set_state(state["noise_rng"][self.info.rank])
        else:
            self.log(f"warning: {source} was trained on {state['noise_device']}, this run uses {self.device.type}; "
                     "training continues, but not bit-for-bit as an uninterrupted run")

    def start_from(self, parts: Trainables, init: dict[str, Any] | ExportedGenerator,
                   source: Path) -> tuple[str, float | None]:
        """Start from another run's G and D (``--init-from``): fresh optimizers, step 0, this run's settings.
        From an exported generator (a warm start) G is rebuilt and D stays fresh.

        The EMA, if kept, starts from the loaded generator's own weights, not from the other run's average.
        Returns what the run started from, in words (for its provenance), and for a warm start the rebuilt
        generator's largest difference from the file in ONNX Runtime (else None).
        """
        if isinstance(init, ExportedGenerator):
            state, diff = warm_state(init, self.gen_config, self.class_names, str(self.config.init_from))
            for g in (parts.G, parts.G_ema):
                if g is not None:
                    g.load_state_dict(state)
            return f"{init.describe()}, rebuilt as {self.gen_config.arch}; a fresh discriminator", diff
        if init["class_names"] != self.class_names:
            raise CganError(f"--init-from {source} was trained on classes {init['class_names']}, the data now has "
                            f"{self.class_names}; fine-tune on data with the same classes")
        parts.load_weights(init, ema_key="generator")
        return f"{source.name} (step {init['step']} of a run seeded {init['train_config'].get('seed')})", None


# ---------------------------------------------------------------- the process-wide random states

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
