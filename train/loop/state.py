"""A training run's checkpoint state (every rank): the checkpoint body it writes, and loading one back
for ``--resume`` or as a start (``--init-from``: another run's G and D, or a warm start from an exported
generator). A mixin of :class:`cgan.train.loop.run.TrainingRun`, which holds the models, optimizers, RNG and
position these read and set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cgan.runtime import __version__
from cgan.runtime.errors import CganError

from ..store import write as ckpt
from ..store.read_exported import ExportedGenerator, warm_state
from . import ddp
from .fast import load_optimizer_state


class RunState:
    """The checkpoint side of :class:`~cgan.train.loop.run.TrainingRun` (see the module docstring)."""

    def state(self) -> dict[str, Any]:
        """The full checkpoint body (collective under DDP: every rank must call it)."""
        per_rank = ddp.gather_objects(self.info, {"rng": ckpt.capture_rng(), "noise": self.noise_gen.get_state()})
        return {
            "config": self.gen_config.to_dict(),
            "train_config": self.config.to_dict(),
            "class_names": list(self.class_names),
            "training_data": self.description,
            "generator": self.G.state_dict(),
            "generator_ema": None if self.G_ema is None else self.G_ema.state_dict(),
            "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": [r["rng"] for r in per_rank],
            "noise_rng": [r["noise"] for r in per_rank],
            "noise_device": self.device.type,
            "world_size": self.info.world_size,
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "epoch_metrics": self.epoch_metrics[: self.batch].clone(),
            "epoch_images": self.epoch_images,
            "epoch_time": self.epoch_time,
            "history": list(self.history),
            "created": self.created,
            "tool_version": __version__,
            "provenance": self.provenance(),
            "init_source": self.init_source,
        }

    def load_state(self, state: dict[str, Any], source: Path) -> None:
        if state["world_size"] != self.info.world_size:
            raise CganError(f"{source} was written by a run of {state['world_size']} process(es); resume it with "
                            f"the same number (this run has {self.info.world_size})")
        if state["class_names"] != self.class_names:
            raise CganError(f"{source} was trained on classes {state['class_names']}, the data now has "
                            f"{self.class_names}; resume with the same data")
        self._load_weights(state, ema_key="generator_ema")
        load_optimizer_state(self.opt_g, state["opt_g"])
        load_optimizer_state(self.opt_d, state["opt_d"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.restore_rng(state["rng"][self.info.rank])
        if state["noise_device"] == self.device.type:
            self.noise_gen.set_state(state["noise_rng"][self.info.rank])
        else:
            self.log(f"warning: {source} was trained on {state['noise_device']}, this run uses {self.device.type}; "
                     "training continues, but not bit-for-bit as an uninterrupted run")
        self.step, self.epoch, self.batch = state["step"], state["epoch"], state["batch"]
        self.epoch_metrics[: self.batch] = state["epoch_metrics"]
        self.epoch_images, self.epoch_time = state["epoch_images"], state["epoch_time"]
        self.history = list(state["history"])
        self.created = state["created"]
        self.init_source = state.get("init_source", "")

    def _load_weights(self, state: dict[str, Any], *, ema_key: str) -> None:
        """G and D from a checkpoint body; the EMA model (if kept) from ``state[ema_key]``."""
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state[ema_key])

    def load_init(self, state: dict[str, Any] | ExportedGenerator, source: Path) -> None:
        """Start from another run's G and D (``--init-from``): fresh optimizers, step 0, this run's settings.
        From an exported generator (a warm start) G is rebuilt and D stays fresh.

        The EMA, if kept, starts from the loaded generator's own weights, not from the other run's average.
        """
        if isinstance(state, ExportedGenerator):
            return self._warm_start(state)
        if state["class_names"] != self.class_names:
            raise CganError(f"--init-from {source} was trained on classes {state['class_names']}, the data now has "
                            f"{self.class_names}; fine-tune on data with the same classes")
        self._load_weights(state, ema_key="generator")
        self.init_source = f"{source.name} (step {state['step']} of a run seeded {state['train_config'].get('seed')})"

    def _warm_start(self, exported: ExportedGenerator) -> None:
        state, self.warm_start_diff = warm_state(exported, self.gen_config, self.class_names, str(self.config.init_from))
        for g in (self.G, self.G_ema):
            if g is not None:
                g.load_state_dict(state)
        self.init_source = f"{exported.describe()}, rebuilt as {self.gen_config.arch}; a fresh discriminator"
