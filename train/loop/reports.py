"""What a training run writes about itself (rank 0): the generator file with its provenance, the
fixed-noise sample grids, the history CSV, the loss curves and config.json.

:class:`RunReports` is built once per run from the facts that do not change while it trains (its
settings, classes, data, device); :class:`~cgan.train.loop.step.TrainingRun` holds one and hands it what
does change (the weights, the step, the history) when it asks for a file. The functions below it write
the files themselves, atomically. Matplotlib is imported only when a plot is drawn, and through its
object API (``Figure`` + the Agg canvas), so no global backend is switched for the caller.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cgan.runtime import __version__
from cgan.runtime.contract import GENERATOR_FILE, noise, to_uint8
from cgan.runtime.fileio import atomic_path, atomic_write_text
from cgan.runtime.noise import NOISE_VERSION

from ..model_config import GeneratorConfig
from ..options import TrainConfig
from ..store import write as ckpt

HISTORY_FILE = "training_history.csv"
LOSS_PLOT_FILE = "loss_curves.png"
CONFIG_FILE = "config.json"
SAMPLES_DIR = "samples"
# The original's columns (epoch, G loss, D loss, D real, D fake, epoch time), then steps and images/s.
HISTORY_COLUMNS = ("epoch", "g_loss", "d_loss", "d_real", "d_fake", "epoch_time_s", "steps", "images_per_s")
SAMPLE_COLUMNS = 8  # fixed-noise samples per stage in each grid


@dataclass
class TrainedSoFar:
    """Where a run stands when a file is written: what the provenance says about its training so far."""

    steps: int
    epochs_done: float
    run_started: str  # ISO time the run (its first part, when resumed) started
    init_source: str = ""  # what --init-from started it from ("" when fresh)


@dataclass
class RunReports:
    """The writers of one run (see the module docstring): every fact here is fixed when the run is built."""

    config: TrainConfig
    gen_config: GeneratorConfig
    class_names: list[str]
    description: str  # the training data, in words
    device: torch.device
    precision: str
    world_size: int
    augment_policy: tuple[str, ...]
    ema: bool  # the generator file holds the EMA weights
    reader: str = ""  # the frozen stage reader of --reader-weight, in words ("" without one)

    def provenance(self, so_far: TrainedSoFar) -> dict[str, str]:
        done = so_far.epochs_done
        return {
            "training_data": self.description,
            "epochs": f"{done:g}" if done == int(done) else f"{done:.3f}",
            "steps": str(so_far.steps),
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "run_started": so_far.run_started,
            "tool_version": __version__,
            "seed": str(self.config.seed),
            "discriminator": f"{self.config.disc} (width {self.config.disc_width}"
                             f"{', minibatch std' if self.config.minibatch_std else ''})",
            "precision": self.precision,
            "train_device": self.device_name(),
            "lr": f"G {self.config.lr_g:g}, D {self.config.lr_d:g}",
            "batch_size": str(self.config.batch_size),
            "world_size": str(self.world_size),
            "ema": f"true (decay {self.config.ema_decay}; 'model' holds the EMA weights)" if self.ema else "false",
            **({"init_from": so_far.init_source} if so_far.init_source else {}),
            **({"d_warmup": f"{self.config.d_warmup} steps of D alone"} if self.config.d_warmup else {}),
            **({"tune": self.tuned()} if self.config.tune == "stage" else {}),
            **({"freeze_bn": "the generator's BatchNorm on its running statistics (not each batch's)"}
               if self.config.freeze_bn and self.config.tune != "stage" else {}),
            **({"freeze_d": f"the discriminator's first {self.config.freeze_d} of "
                            f"{self.config.D_BLOCKS} conv blocks frozen at the --init-from checkpoint's weights"}
               if self.config.freeze_d else {}),
            **({"sampling": f"image weight 1/count^{self.config.balance_power:g} (stage shares proportional to "
                            f"count^{1 - self.config.balance_power:g})"} if self.config.balance_power != 1 else {}),
            **({"batches": "stage-balanced (every batch holds the stages in equal shares)"}
               if self.config.balanced_batches else {}),
            "generator": self.gen_config.arch + (" (conditional BatchNorm: stage-dependent scale and shift in every block)"
                                                 if self.gen_config.arch == "cbn" else " (the original's layers)"),
            "objective": self.objective(),
            **({"stage_reader": self.reader} if self.reader else {}),
        }

    def tuned(self) -> str:
        """What ``--tune stage`` trained, in words."""
        n = self.config.tune_blocks
        if n == 0:
            return ("stage code only (the embedding table and any per-stage gains and shifts; the rest frozen, "
                    "BatchNorm on its running statistics)")
        return (f"stage code and the generator's first {n} of {self.gen_config.n_blocks} blocks (their transposed "
                "convs and BatchNorm gains and shifts; the later blocks and the output layer frozen, BatchNorm on its "
                "running statistics)")

    def device_name(self) -> str:
        """``cpu`` or ``cuda (NVIDIA H200)``: where the weights were trained (GPU runs are not bit-exact)."""
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return self.device.type

    def objective(self) -> str:
        """The recipe's objective in one line, e.g. ``bce; R1 gamma 1 every 16 steps; DiffAugment color``
        (an AC-GAN stage classifier, ``--aux-weight``, then a frozen stage reader, ``--reader-weight``, named last)."""
        c = self.config
        parts = [c.loss]
        if c.r1 > 0:
            parts.append(f"R1 gamma {c.r1:g} every {c.r1_every} step{'s' if c.r1_every > 1 else ''}")
        if self.augment_policy:
            parts.append("DiffAugment " + ",".join(self.augment_policy))
        if c.aux_weight > 0:
            head = {"twin": "twin (real and generated stages apart)", "real": "real-only (fitted on real images)",
                    "matched": "matched (fitted on real images; G read as the real stage is)"}.get(
                c.aux_head, "AC-GAN")
            parts.append(f"{head} stage classifier weight {c.aux_weight:g}")
        if c.reader_weight > 0:
            parts.append(f"frozen stage reader (G read as held-out real images of its stage are) weight {c.reader_weight:g}")
        return "; ".join(parts)

    def write_generator(self, model: nn.Module, so_far: TrainedSoFar) -> Path:
        """The generator file: ``model`` (the EMA copy when kept, else G) with the run's provenance."""
        path = Path(self.config.out) / GENERATOR_FILE
        payload = ckpt.generator_payload(model.state_dict(), self.gen_config.to_dict(), self.provenance(so_far),
                                         ema=self.ema, class_names=self.class_names)
        return ckpt.save_generator(path, payload)

    @torch.no_grad()
    def write_samples(self, model: nn.Module, name: str) -> Path:
        """A grid of ``model``'s fixed-noise samples: one row per stage, the same noise in every column."""
        was_training = model.training
        model.eval()
        z = torch.from_numpy(noise(self.config.seed, 0, SAMPLE_COLUMNS, self.gen_config.z_dim)).to(self.device)
        rows = []
        for stage in range(self.gen_config.num_classes):
            labels = torch.full((SAMPLE_COLUMNS,), stage, dtype=torch.long, device=self.device)
            rows.append(to_uint8(model(z, labels).float().cpu().numpy())[:, 0])
        model.train(was_training)
        folder = Path(self.config.out) / SAMPLES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        text = {"cgan.seed": str(self.config.seed), "cgan.noise_version": str(NOISE_VERSION),
                "cgan.noise": f"columns: images 0..{SAMPLE_COLUMNS - 1} of contract.noise(seed)"}
        save_png(path, sample_grid(np.stack(rows), self.class_names), text)
        return path

    def write_reports(self, rows: list[dict[str, Any]]) -> None:
        out = Path(self.config.out)
        write_history(out / HISTORY_FILE, rows)
        if rows:
            plot_losses(out / LOSS_PLOT_FILE, rows)


# ---------------------------------------------------------------- the files


def write_history(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row[k]) for k in HISTORY_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_config(path: Path, config: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(config, indent=2, default=str) + "\n")


def plot_losses(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Generator/discriminator losses and D's mean outputs per epoch, two panels, PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = [float(r["epoch"]) for r in rows]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    style = dict(marker="o", markersize=3)
    ax1.plot(x, [r["g_loss"] for r in rows], label="G loss", **style)
    ax1.plot(x, [r["d_loss"] for r in rows], label="D loss", **style)
    ax1.set(xlabel="epoch", ylabel="BCE loss", title="Losses")
    ax2.plot(x, [r["d_real"] for r in rows], label="D(real)", **style)
    ax2.plot(x, [r["d_fake"] for r in rows], label="D(G(z))", **style)
    ax2.set(xlabel="epoch", ylabel="mean sigmoid output", title="Discriminator outputs", ylim=(0, 1))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def sample_grid(images: np.ndarray, row_names: Sequence[str], *, pad: int = 2) -> "Image.Image":  # noqa: F821
    """uint8 ``[rows, cols, H, W]`` as one grayscale image, a row per stage with its name on the left."""
    from PIL import Image, ImageDraw

    rows, cols, h, w = images.shape
    label_w = 8 + 7 * max((len(n) for n in row_names), default=0)
    grid = np.zeros((pad + rows * (h + pad), label_w + pad + cols * (w + pad)), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (h + pad), label_w + pad + c * (w + pad)
            grid[y : y + h, x : x + w] = images[r, c]
    picture = Image.fromarray(grid, mode="L")
    draw = ImageDraw.Draw(picture)
    for r, name in enumerate(row_names):
        draw.text((4, pad + r * (h + pad) + max(0, h // 2 - 6)), name, fill=255)
    return picture


def save_png(path: Path, picture: "Image.Image", text: dict[str, str] | None = None) -> None:  # noqa: F821
    """Save atomically, with optional PNG text chunks."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG", pnginfo=info)
