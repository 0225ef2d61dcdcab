"""The human-readable files of a training run: history CSV, loss curves, sample grids, config.json.

All are written atomically. Matplotlib is imported only when a plot is drawn, and through its
object API (``Figure`` + the Agg canvas), so no global backend is switched for the caller.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cgan.runtime.fileio import atomic_path, atomic_write_text

HISTORY_FILE = "training_history.csv"
LOSS_PLOT_FILE = "loss_curves.png"
CONFIG_FILE = "config.json"
SAMPLES_DIR = "samples"
# The original's columns (epoch, G loss, D loss, D real, D fake, epoch time), then steps and images/s.
HISTORY_COLUMNS = ("epoch", "g_loss", "d_loss", "d_real", "d_fake", "epoch_time_s", "steps", "images_per_s")


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
