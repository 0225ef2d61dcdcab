"""cgan-train's configuration: ``TrainConfig`` (every flag, validated, saved as config.json), the
device and precision chosen once, and how a resumed run's saved config meets the flags given now."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgan.runtime.contract import OUTPUT_DIR
from cgan.runtime.errors import CganError

from . import ddp
from .augment import parse_policy
from .models import DISCRIMINATORS, GENERATORS, GeneratorConfig
from .objectives import LOSSES

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Everything a training run depends on; built from cgan-train's flags, saved as config.json."""

    data: Path | None = None  # None: the built-in synthetic OASIS-like set
    classes: list[str] | None = None
    strict: bool = False
    cache_dir: Path | None = None
    epochs: int = 10
    max_steps: int | None = None  # total optimizer steps, counting those before --resume
    batch_size: int = 16
    lr_g: float = 2e-4
    lr_d: float = 5e-5
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 42
    img_size: int = 128
    z_dim: int = 100
    width: int = 512  # channels of G's first block, halved per block (the original: 512)
    disc: str = "projection"
    disc_width: int = 64  # channels of D's first conv, doubled per block (the original: 64)
    minibatch_std: bool = False  # D sees the batch's feature spread (against mode collapse); not in the original
    balance: bool = True
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True  # NHWC convolutions: faster on CPU (measured in bench/test_bench_train.py)
    threads: int | None = None
    out: Path = OUTPUT_DIR
    resume: bool = False
    init_from: Path | None = None  # a checkpoint whose G and D start this run (fine-tuning), or an exported
    # generator (.onnx, or "default": the embedded one) whose G starts it beside a fresh D (a warm start); fresh optimizers
    ema: bool = False
    ema_decay: float = 0.999
    sample_every: int = 1  # epochs; 0 = only at the end of the run
    checkpoint_every: int = 500  # steps; 0 = only at epoch ends and the end of the run
    keep_checkpoints: int = 2
    workers: int = 0  # batch-gathering threads; 0 gathers in the training thread
    quiet: bool = False
    changes: list = field(default_factory=list)  # what each --resume changed: [{"step", "time", "set": {name: [old, new]}}]
    # the faster step's switch and the discriminator-side levers (see train/objectives.py, augment.py)
    compile: bool = False  # torch.compile G and D; eager (with a one-line note) where it is unavailable or fails
    loss: str = "bce"  # the original's; or "hinge"
    diffaugment: str = ""  # DiffAugment policy for D's real and generated inputs alike, e.g. "color,translation"
    r1: float = 0.0  # R1 penalty weight gamma on real images; 0 = off
    r1_every: int = 16  # lazy R1: every N-th D step, weighted by N
    # conditioning levers (see train/cbn.py and the aux head in train/models.py) and the warm start's D warm-up
    generator: str = "dcgan"  # the original's layers; or "cbn": stage-dependent BatchNorm scale and shift
    aux_weight: float = 0.0  # AC-GAN stage classifier on D (projection only), its loss weight; 0 = off
    d_warmup: int = 0  # the first N steps train D alone (G generates, but does not move)
    balanced_batches: bool = False  # every batch holds the stages in equal shares (batches.stratified_order)

    # flags a --resume may change (recorded in `changes`); every other saved setting is kept, and a differing flag refused
    SAFE_ON_RESUME = ("epochs", "max_steps", "device", "threads", "workers", "quiet", "cache_dir", "sample_every",
                      "checkpoint_every", "keep_checkpoints")
    # what a checkpoint given to --init-from must share with this run: G's and D's shapes
    ARCH_FIELDS = ("img_size", "z_dim", "width", "disc", "disc_width", "minibatch_std", "generator")

    def validate(self) -> None:
        """Raise :class:`CganError` naming the first flag that is out of range."""
        if self.img_size < 32 or self.img_size & (self.img_size - 1):
            raise CganError(f"--img-size must be a power of two >= 32 (32, 64, 128, 256...), got {self.img_size}")
        positive = {"--epochs": self.epochs, "--batch-size": self.batch_size, "--z-dim": self.z_dim, "--width": self.width,
                    "--keep-checkpoints": self.keep_checkpoints}
        if self.max_steps is not None:
            positive["--max-steps"] = self.max_steps
        if self.threads is not None:
            positive["--threads"] = self.threads
        for flag, value in positive.items():
            if value < 1:
                raise CganError(f"{flag} must be at least 1, got {value}")
        for flag, value in {"--sample-every": self.sample_every, "--checkpoint-every": self.checkpoint_every,
                            "--workers": self.workers, "--seed": self.seed}.items():
            if value < 0:
                raise CganError(f"{flag} must be >= 0, got {value}")
        for flag, value in {"--lr-g": self.lr_g, "--lr-d": self.lr_d}.items():
            if not value > 0:
                raise CganError(f"{flag} must be > 0, got {value}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise CganError(f"Adam betas must lie in [0, 1), got ({self.beta1}, {self.beta2})")
        if not 0 < self.ema_decay < 1:
            raise CganError(f"--ema-decay must lie in (0, 1), got {self.ema_decay}")
        try:
            GeneratorConfig(z_dim=self.z_dim, img_size=self.img_size, width=self.width)
        except ValueError as exc:
            raise CganError(f"--width {self.width}: {exc}") from None
        if self.disc not in DISCRIMINATORS:
            raise CganError(f"--disc {self.disc!r} is unknown; choose {' or '.join(DISCRIMINATORS)}")
        if self.disc_width < 1:
            raise CganError(f"--disc-width must be >= 1, got {self.disc_width}")
        if self.device not in DEVICES:
            raise CganError(f"--device {self.device!r} is unknown; choose {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise CganError(f"--precision {self.precision!r} is unknown; choose {', '.join(PRECISIONS)}")
        if self.loss not in LOSSES:
            raise CganError(f"--loss {self.loss!r} is unknown; choose {' or '.join(LOSSES)}")
        try:
            parse_policy(self.diffaugment)
        except ValueError as exc:
            raise CganError(f"--diffaugment {self.diffaugment!r}: {exc}") from None
        if not (self.r1 >= 0 and math.isfinite(self.r1)):
            raise CganError(f"--r1 must be a finite number >= 0 (0 turns it off), got {self.r1}")
        if self.r1_every < 1:
            raise CganError(f"--r1-every must be at least 1, got {self.r1_every}")
        if self.generator not in GENERATORS:
            raise CganError(f"--generator {self.generator!r} is unknown; choose {' or '.join(GENERATORS)}")
        if not (self.aux_weight >= 0 and math.isfinite(self.aux_weight)):
            raise CganError(f"--aux-weight must be a finite number >= 0 (0 turns it off), got {self.aux_weight}")
        if self.aux_weight > 0 and self.disc != "projection":
            raise CganError(f"--aux-weight needs --disc projection: the {self.disc} discriminator is given the stage "
                            "as an input, so a stage classifier on its features would read the answer")
        if self.d_warmup < 0:
            raise CganError(f"--d-warmup must be >= 0, got {self.d_warmup}")
        if self.balanced_batches and not self.balance:
            raise CganError("--balanced-batches draws every stage equally; it cannot go with --no-balance")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("data", "cache_dir", "out", "init_from"):
            d[key] = None if d[key] is None else str(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("data", "cache_dir", "out", "init_from"):
            if kw.get(key) is not None:
                kw[key] = Path(kw[key])
        return cls(**kw)


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
            raise CganError(f"--resume continues {run_dir} as it was configured, with {name}={old!r}; drop {flag} "
                            f"(got {new!r}) or start a new run in another --out (a resume may change only {safe})")
        changed[name] = [old, new]
    merged = dataclasses.replace(saved_cfg, out=config.out, resume=True,
                                 **{name: getattr(config, name) for name in changed})
    if merged.max_steps is not None and merged.max_steps < step:
        raise CganError(f"--max-steps {merged.max_steps} is below the {step} steps {run_dir} has done; give a larger one to extend it")
    if changed:
        merged.changes = [*saved_cfg.changes, {"step": step, "time": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
                                               "set": {k: [_plain(v) for v in pair] for k, pair in changed.items()}}]
    return merged


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value
