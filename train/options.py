"""cgan-train's settings, one dataclass field each: :class:`TrainConfig`. The fields made with :func:`flag`
carry their command-line name and help, and cgan-train's command line is built from them (train/cli.py,
with :mod:`.flags`),
so an option is written once. Torch-free (the checks that need the model registry import it when they
run), so ``cgan-train --help`` works without torch."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cgan.runtime.contract import OUTPUT_DIR
from cgan.runtime.errors import CganError, check_least

from .flags import flag, flag_fields

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


def class_list(text: Optional[str]) -> list[str] | None:
    """``--classes "a,b,c,d"`` -> ["a", "b", "c", "d"]."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise CganError(f"--classes {text!r} names no class; give folder names in stage order, e.g. \"a,b,c,d\"")
    return names


def options() -> list[dataclasses.Field]:
    """The fields of :class:`TrainConfig` that are cgan-train options, in the order --help lists them."""
    return flag_fields(TrainConfig)


@dataclass
class TrainConfig:
    """Everything a training run depends on, saved as config.json. A field made with :func:`flag` is a
    cgan-train option: its name (``lr_g`` -> ``--lr-g``), default and help are read from here."""

    data: Path | None = flag(None, "--data",
                        help="Dataset folder: Kaggle OASIS layout (Data/ or its parent), stage0..stageN, or class folders named by --classes (default: the built-in synthetic OASIS-like set, built once and cached).")
    classes: list[str] | None = flag(None, "--classes", parse=class_list, cli_type=Optional[str],
                        help='Class folders in stage order, e.g. "a,b,c,d".')
    strict: bool = flag(False, "--strict",
                        help="Stop at the first unreadable image instead of skipping it.")
    cache_dir: Path | None = flag(None, "--cache-dir",
                        help="Decoded-image cache (default: $CGAN_CACHE, $XDG_CACHE_HOME/dementia-cgan or ~/.cache/dementia-cgan).")
    epochs: int = flag(10, "--epochs",
                        help="Epochs in total (an epoch = as many draws as images).")
    max_steps: int | None = flag(None, "--max-steps",
                        help="Stop after this many optimizer steps in total, counting those before --resume.")
    batch_size: int = flag(16, "--batch-size",
                        help="Images per step (per process under torchrun).")
    lr_g: float = flag(2e-4, "--lr-g",
                        help="Generator learning rate (Adam, betas 0.5, 0.999).")
    lr_d: float = flag(5e-5, "--lr-d",
                        help="Discriminator learning rate.")
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = flag(42, "--seed",
                        help="Seed for weights, sampling and noise.")
    img_size: int = flag(128, "--img-size",
                        help="Image size, a power of two >= 32.")
    z_dim: int = flag(100, "--z-dim",
                        help="Latent size.")
    width: int = flag(512, "--width",
                        help="Channels of the generator's first block, halved at each upsampling (the original: 512).")
    disc: str = flag("projection", "--disc",
                        help="Discriminator: projection (the notebook's, spectral norm) or spatial (image + label-map channel).")
    disc_width: int = flag(64, "--disc-width",
                        help="Channels of the discriminator's first conv, doubled per block (the original: 64); its cost grows with the square.")
    minibatch_std: bool = flag(False, "--minibatch-std/--no-minibatch-std",
                        help="Give the discriminator a channel with the batch's feature spread (ProGAN's minibatch standard deviation), the usual cure for a generator that gives one image per stage; not in the original.")
    balance: bool = flag(True, "--balance/--no-balance",
                        help="Balanced sampling: weight 1/class count per image, draws with replacement.")
    device: str = flag("auto", "--device",
                        help="auto (CUDA if available), cpu or cuda.")
    precision: str = flag("auto", "--precision",
                        help="auto (fp16 autocast + GradScaler on CUDA, fp32 on CPU), fp32, bf16 (autocast) or fp16 (CUDA only).")
    channels_last: bool = flag(True, "--channels-last/--no-channels-last",
                        help="Channels-last (NHWC) memory format for the convolutions: faster on CPU. A resumed run keeps its saved setting.")
    threads: int | None = flag(None, "--threads",
                        help="torch CPU threads (default: torch's choice).")
    out: Path = flag(OUTPUT_DIR, "--out",
                        help="Output folder: generator file, checkpoints/, history, plots, samples/, config.json.")
    resume: bool = flag(False, "--resume",
                        help="Continue the run in --out from its newest checkpoint, exactly, with its saved config (repeat no flags); only --epochs, --max-steps (to extend it), --device, --threads, --workers, --quiet, --cache-dir, --sample-every, --checkpoint-every and --keep-checkpoints may differ, and the change is recorded in config.json.")
    init_from: Path | None = flag(None, "--init-from",
                        help="Start from the G and D weights of a checkpoint (ckpt_*.pt) of another run, with fresh optimizers and this run's learning rates: fine-tuning, e.g. at a lower rate. Or a warm start from an exported generator: an fp32 .onnx that cgan-export wrote, or 'default' (the embedded default model); its generator is rebuilt from the file (checked against it in ONNX Runtime) beside a fresh discriminator (see --d-warmup). --max-steps counts this run's steps.")
    ema: bool = flag(False, "--ema",
                        help="Keep an exponential moving average of G's weights and export it.")
    ema_decay: float = flag(0.999, "--ema-decay",
                        help="EMA decay per step.")
    sample_every: int = flag(1, "--sample-every",
                        help="Write a fixed-noise sample grid every N epochs (0: at the end only).")
    checkpoint_every: int = flag(500, "--checkpoint-every",
                        help="Write a full checkpoint every N steps (0: only at epoch ends); one is always written at each epoch end and at the end.")
    keep_checkpoints: int = flag(2, "--keep-checkpoints",
                        help="Checkpoints kept in --out/checkpoints.")
    workers: int = flag(0, "--workers",
                        help="Threads gathering batches ahead of the step (0: in the training thread).")
    quiet: bool = flag(False, "--quiet",
                        help="No progress bar and no per-epoch lines.")
    changes: list = field(default_factory=list)  # what each --resume changed: [{"step", "time", "set": {name: [old, new]}}]
    # the faster step's switch and the discriminator-side levers (see train/loop/objectives.py, augment.py)
    compile: bool = flag(False, "--compile/--no-compile",
                        help="torch.compile the generator and discriminator (the first steps take minutes to compile; losses match eager within float tolerance, not bit for bit). Where compile is unavailable or fails, training continues eagerly after a one-line note.")
    loss: str = flag("bce", "--loss",
                        help="Adversarial loss: bce (the original's) or hinge.")
    diffaugment: str = flag("", "--diffaugment",
                        help='DiffAugment for the discriminator, applied to real and generated images alike: a comma list of color (brightness/contrast), translation (up to 1/8 of the side; translation:F up to F), cutout (a half-side square), e.g. "color,translation,cutout" [default: off]. No flips.')
    r1: float = flag(0.0, "--r1",
                        help="R1 gradient penalty weight gamma on real images (0: off).")
    r1_every: int = flag(16, "--r1-every",
                        help="Apply R1 every N discriminator steps, weighted by N (lazy regularisation).")
    # conditioning levers (see train/cbn.py and the aux head in train/models.py) and the warm start's D warm-up
    generator: str = flag("dcgan", "--generator",
                        help="Generator: dcgan (the original's layers; loads its checkpoint) or cbn (conditional BatchNorm: every block's scale and shift set by the stage; same inputs and output, so the export, cgan-run and the web page are unchanged).")
    aux_weight: float = flag(0.0, "--aux-weight",
                        help="Weight of an AC-GAN stage classifier on D's features, which also scores G (0: off). Trained on real images' stages and generated images' asked-for stages (see --aux-head).")
    d_warmup: int = flag(0, "--d-warmup",
                        help="Train the discriminator alone for the first N steps (the generator generates but does not move): for a warm start, whose discriminator is new. Counts toward --max-steps.")
    aux_head: str = flag("ac", "--aux-head",
                        help="The stage classifier of --aux-weight: ac, twin, real or matched (see the levers page). The ac head is AC-GAN's; twin reads generated stages as classes of their own (after ADC-GAN); real is fitted on real images only; matched is fitted as real, and G is scored on being read as the batch's real images of its stage are, not more surely.")
    reader_weight: float = flag(0.0, "--reader-weight",
                        help="Weight of a frozen stage reader fitted first on the training images (0: off). Fitted by subject and cached; G is scored on being read as held-out real images of its stage are.")
    tune: str = flag("all", "--tune",
                        help="What of the generator trains: all (every weight) or stage (only its stage code: the embedding table and, with --generator cbn, every block's per-stage gain and shift; the rest keeps the starting model's weights and BatchNorm statistics, in eval mode, with no weight gradients). stage needs --init-from.")
    tune_blocks: int = flag(0, "--tune-blocks",
                        help="With --tune stage, also train the generator's first N (coarse) blocks.")
    freeze_bn: bool = flag(False, "--freeze-bn/--no-freeze-bn",
                        help="The generator's BatchNorm uses and keeps its running statistics (its gains and shifts train), as --tune stage does.")
    freeze_d: int = flag(0, "--freeze-d",
                        help="Freeze the discriminator's first N of 4 conv blocks (FreezeD; from --init-from).")
    balance_power: float = flag(1.0, "--balance-power",
                        help="Sampling weight 1/count^P per image (1: equal stage shares; 0: the data's).")
    balanced_batches: bool = flag(False, "--balanced-batches/--no-balanced-batches",
                        help="Every batch holds the stages in equal shares (the stages left over take turns when the batch size is not a multiple of their count), instead of the balanced sampler's random mix; each stage's images drawn uniformly with replacement.")

    # flags a --resume may change (recorded in `changes`); every other saved setting is kept, and a differing flag refused
    SAFE_ON_RESUME = ("epochs", "max_steps", "device", "threads", "workers", "quiet", "cache_dir", "sample_every",
                      "checkpoint_every", "keep_checkpoints")
    # what a checkpoint given to --init-from must share with this run: G's and D's shapes
    ARCH_FIELDS = ("img_size", "z_dim", "width", "disc", "disc_width", "minibatch_std", "generator")
    AUX_HEADS = ("ac", "twin", "real", "matched")
    TUNES = ("all", "stage")
    D_BLOCKS = 4  # the discriminators' conv blocks before their heads (what --freeze-d counts)

    def validate(self) -> None:
        """Raise :class:`CganError` naming the first flag that is out of range."""
        from .loop.augment import parse_policy  # torch: only once a run is configured, never for --help
        from cgan.runtime.session import check_threads

        from .models import DISCRIMINATORS, GENERATORS, GeneratorConfig
        from .loop.objectives import LOSSES
        from .store.read_exported import is_onnx_source

        if self.img_size < 32 or self.img_size & (self.img_size - 1):
            raise CganError(f"--img-size must be a power of two >= 32 (32, 64, 128, 256...), got {self.img_size}")
        for name, value in {"--epochs": self.epochs, "--batch-size": self.batch_size, "--z-dim": self.z_dim,
                            "--width": self.width, "--keep-checkpoints": self.keep_checkpoints,
                            "--max-steps": self.max_steps, "--threads": self.threads}.items():
            check_least(name, value, 1)
        for name, value in {"--sample-every": self.sample_every, "--checkpoint-every": self.checkpoint_every,
                            "--workers": self.workers, "--seed": self.seed}.items():
            check_least(name, value, 0)
        check_threads(self.threads, "--threads")
        for name, value in {"--lr-g": self.lr_g, "--lr-d": self.lr_d}.items():
            if not (value > 0 and math.isfinite(value)):  # inf trained to a NaN generator and exited 0
                raise CganError(f"{name} must be a finite number > 0, got {value}")
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
        if self.aux_head not in self.AUX_HEADS:
            raise CganError(f"--aux-head {self.aux_head!r} is unknown; choose {', '.join(self.AUX_HEADS[:-1])} or {self.AUX_HEADS[-1]}")
        if self.aux_head != "ac" and self.aux_weight == 0:
            raise CganError(f"--aux-head {self.aux_head} sets the stage classifier of --aux-weight, which is 0 (off); "
                            "give --aux-weight above 0")
        if not (self.reader_weight >= 0 and math.isfinite(self.reader_weight)):
            raise CganError(f"--reader-weight must be a finite number >= 0 (0 turns it off), got {self.reader_weight}")
        if self.tune not in self.TUNES:
            raise CganError(f"--tune {self.tune!r} is unknown; choose {' or '.join(self.TUNES)}")
        if self.tune == "stage" and self.init_from is None:
            raise CganError("--tune stage trains only the stage code of a generator that is already trained; "
                            "give --init-from (a checkpoint, an exported .onnx or 'default')")
        blocks = GeneratorConfig(z_dim=self.z_dim, img_size=self.img_size, width=self.width).n_blocks
        if not 0 <= self.tune_blocks <= blocks:
            raise CganError(f"--tune-blocks must be 0 to {blocks} (the generator's blocks at {self.img_size} px), "
                            f"got {self.tune_blocks}")
        if self.tune_blocks and self.tune != "stage":
            raise CganError(f"--tune-blocks {self.tune_blocks} adds blocks to what --tune stage trains; with --tune "
                            f"{self.tune} every weight trains already: give --tune stage")
        if not 0 <= self.freeze_d <= self.D_BLOCKS:
            raise CganError(f"--freeze-d must be 0 to {self.D_BLOCKS} (the discriminator's conv blocks), got {self.freeze_d}")
        if self.freeze_d and (self.init_from is None or is_onnx_source(self.init_from)):
            given = "none" if self.init_from is None else f"{self.init_from} (an exported generator: its discriminator is new)"
            raise CganError(f"--freeze-d keeps the discriminator's lower blocks as a trained run left them; give --init-from "
                            f"a ckpt_*.pt from a run's checkpoints/ folder (--init-from: {given})")
        if self.d_warmup < 0:
            raise CganError(f"--d-warmup must be >= 0, got {self.d_warmup}")
        if not (0 <= self.balance_power <= 1):  # also refuses NaN
            raise CganError(f"--balance-power must lie in [0, 1] (1: equal stage shares), got {self.balance_power}")
        if self.balance_power != 1 and (not self.balance or self.balanced_batches):
            other = "--no-balance" if not self.balance else "--balanced-batches"
            raise CganError(f"--balance-power {self.balance_power:g} sets the balanced sampler's weights; "
                            f"it cannot go with {other}")
        if self.balanced_batches and not self.balance:
            raise CganError("--balanced-batches draws every stage equally; it cannot go with --no-balance")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("data", "cache_dir", "out", "init_from"):
            d[key] = None if d[key] is None else str(d[key])
        return d

    @classmethod
    def from_checkpoint(cls, state: Any, source: Path, flag: str) -> "TrainConfig":
        """The run settings a checkpoint body holds (``train_config``, with its ``step``), checked: a missing or
        malformed one is a :class:`CganError` naming ``flag`` and the file, never a KeyError or TypeError later."""
        saved = state.get("train_config") if isinstance(state, dict) else None
        step = state.get("step") if isinstance(state, dict) else None
        what = None
        if not isinstance(saved, dict):
            what = "no train_config (the run's settings)" if saved is None else f"a train_config that is a {type(saved).__name__}, not a table"
        elif isinstance(step, bool) or not isinstance(step, int) or step < 0:
            what = f"no valid step count (got {step!r})"
        else:
            try:
                config = cls.from_dict(saved)
            except (TypeError, ValueError) as exc:
                what = f"a malformed train_config ({exc})"
            else:
                for f in dataclasses.fields(cls):
                    value, default = getattr(config, f.name), f.default
                    kinds = ((bool,) if isinstance(default, bool) else (int,) if isinstance(default, int)
                             else (int, float) if isinstance(default, float) else (str,) if isinstance(default, str) else None)
                    if kinds and (not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))):
                        what = f"a malformed train_config ({f.name}={value!r})"
                        break
                else:
                    try:
                        config.validate()
                    except CganError as exc:
                        what = f"a train_config out of range ({exc})"
                    else:
                        return config
        raise CganError(f"{flag} {source}: the checkpoint has {what}; give a ckpt_*.pt that cgan-train wrote")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("data", "cache_dir", "out", "init_from"):
            if kw.get(key) is not None:
                kw[key] = Path(kw[key])
        return cls(**kw)


