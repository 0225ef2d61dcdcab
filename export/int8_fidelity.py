"""How far an int8 model is from its fp32 source, per stage: the mean (PSNR, MAE) and the worst case
(largest and 99.9th-percentile per-pixel difference of the written 8-bit images).

A mean bar alone lets a few pixels per image be far off: on an AVX2 CPU without VNNI a static int8
model of the default generator had 40 dB and 0.8 grey levels of mean error while its worst pixel over
256 images was 118-134 levels off. So every int8 model is checked on at least
:data:`VALIDATION_PER_STAGE` images per stage against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cgan.runtime.contract import INPUT_STAGE, INPUT_Z, OUTPUT_IMAGE, OUTPUT_RANGE, ModelInfo, noise, to_uint8

from .errors import ValidationError

# The bar an int8 model must meet against its fp32 source, on every stage.
MIN_PSNR_DB = 40.0  # over the output range (peak-to-peak 2 for [-1, 1])
MAX_MAE_GREY = 1.5  # mean absolute difference of the written 8-bit pixels
MAX_GREY = 16  # no pixel of any validation image further off than this many grey levels
MAX_P999_GREY = 4  # 99.9 % of the pixels within this many grey levels
VALIDATION_PER_STAGE = 256  # fresh images per stage the bar is checked on
SCREEN_PER_STAGE = 32  # images per stage for ranking layers (the final check uses the full set)

Feeds = Sequence[tuple[np.ndarray, np.ndarray]]  # (z [n, z_dim] float32, stage [n] int64) batches


@dataclass(frozen=True)
class Bar:
    min_psnr_db: float = MIN_PSNR_DB
    max_mae_grey: float = MAX_MAE_GREY
    max_grey: int = MAX_GREY
    max_p999_grey: int = MAX_P999_GREY

    def as_dict(self) -> dict:
        return {"min_psnr_db": self.min_psnr_db, "max_mae_grey": self.max_mae_grey, "max_grey": self.max_grey, "max_p999_grey": self.max_p999_grey}

    def line(self) -> str:
        return (f"max <= {self.max_grey} and 99.9th percentile <= {self.max_p999_grey} grey levels, PSNR >= {self.min_psnr_db:g} dB, "
                f"MAE <= {self.max_mae_grey:g} on every stage")  # fmt: skip


@dataclass(frozen=True)
class Fidelity:
    """A model against the fp32 reference, per stage."""

    psnr_db: tuple[float, ...]  # over the output range
    mae_grey: tuple[float, ...]  # mean |difference| of the uint8 pixels
    mse: float  # over all stages (for ranking)
    max_grey: tuple[int, ...] = ()  # largest |difference| of any uint8 pixel
    p999_grey: tuple[int, ...] = ()  # 99.9th percentile of |difference| of the uint8 pixels
    images_per_stage: int = 0

    @property
    def worst_psnr_db(self) -> float:
        return min(self.psnr_db)

    @property
    def worst_mae_grey(self) -> float:
        return max(self.mae_grey)

    @property
    def worst_max_grey(self) -> int:
        return max(self.max_grey) if self.max_grey else 0

    @property
    def worst_p999_grey(self) -> int:
        return max(self.p999_grey) if self.p999_grey else 0

    def meets(self, bar: Bar | None = None) -> bool:
        bar = bar or Bar()
        return (self.worst_psnr_db >= bar.min_psnr_db and self.worst_mae_grey <= bar.max_mae_grey
                and self.worst_max_grey <= bar.max_grey and self.worst_p999_grey <= bar.max_p999_grey)  # fmt: skip

    def rank(self) -> tuple:
        """Worse first when sorted descending: the worst case, then the mean."""
        return (self.worst_max_grey, self.worst_p999_grey, self.mse)

    def line(self) -> str:
        return (f"max {self.worst_max_grey} and 99.9th percentile {self.worst_p999_grey} grey levels, PSNR {self.worst_psnr_db:.2f} dB, "
                f"MAE {self.worst_mae_grey:.2f} grey levels (worst stage, {self.images_per_stage} images per stage)")  # fmt: skip


def stage_feeds(info: ModelInfo, per_stage: int, seed: int, *, batch: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches of one stage each, every stage, noise from the runtime's seed contract."""
    feeds = []
    for s in range(info.num_classes):
        for k0 in range(0, per_stage, batch):
            b = min(batch, per_stage - k0)
            feeds.append((noise(seed, k0, b, info.z_dim), np.full(b, s, dtype=np.int64)))
    return feeds


class Reference:
    """The fp32 model's outputs on a fixed set of feeds, computed once and compared against many candidates."""

    def __init__(self, session: Any, feeds: Feeds, num_classes: int) -> None:
        self.feeds = [(np.ascontiguousarray(z, dtype=np.float32), np.asarray(s, dtype=np.int64)) for z, s in feeds]
        self.num_classes = num_classes
        self.outputs = [session.run([OUTPUT_IMAGE], {INPUT_Z: z, INPUT_STAGE: s})[0] for z, s in self.feeds]
        self.pixels = [to_uint8(out).astype(np.int16) for out in self.outputs]

    def subset(self, per_stage: int) -> "Reference":
        """The first ``per_stage`` images of each stage (already computed)."""
        sub = object.__new__(Reference)
        sub.num_classes = self.num_classes
        sub.feeds, sub.outputs, sub.pixels = [], [], []
        taken = np.zeros(self.num_classes, dtype=int)
        for feed, out, pix in zip(self.feeds, self.outputs, self.pixels):
            s = int(feed[1][0])
            if (feed[1] == s).all() and taken[s] < per_stage:
                sub.feeds.append(feed), sub.outputs.append(out), sub.pixels.append(pix)
                taken[s] += len(feed[1])
        return sub if sub.feeds else self

    def measure(self, candidate: Any) -> Fidelity:
        """``candidate`` (an onnxruntime session) against the reference outputs, per stage."""
        lo, hi = OUTPUT_RANGE
        k = self.num_classes
        sq, ab, count, images = np.zeros(k), np.zeros(k), np.zeros(k), np.zeros(k, dtype=int)
        hist = np.zeros((k, 256), dtype=np.int64)  # grey-level differences are integers 0..255: exact percentiles
        for (z, stages), want, want_px in zip(self.feeds, self.outputs, self.pixels):
            (got,) = candidate.run([OUTPUT_IMAGE], {INPUT_Z: z, INPUT_STAGE: stages})
            if not np.isfinite(got).all():
                raise ValidationError("the int8 model gives non-finite values")
            diff = got.astype(np.float64) - want
            grey = np.abs(to_uint8(got).astype(np.int16) - want_px)
            for s in np.unique(stages):
                rows = stages == s
                sq[s] += float((diff[rows] ** 2).sum())
                ab[s] += float(grey[rows].sum())
                count[s] += diff[rows].size
                images[s] += int(rows.sum())
                hist[s] += np.bincount(grey[rows].ravel(), minlength=256)[:256]
        seen = count > 0
        mse = sq[seen] / count[seen]
        psnr = 10 * np.log10((hi - lo) ** 2 / np.maximum(mse, 1e-30))
        worst = [int(np.flatnonzero(h)[-1]) for h in hist[seen]]
        p999 = [int(np.searchsorted(np.cumsum(h), 0.999 * h.sum())) for h in hist[seen]]
        return Fidelity(
            tuple(float(p) for p in psnr), tuple(float(a) for a in ab[seen] / count[seen]), float(sq.sum() / count.sum()),
            tuple(worst), tuple(p999), int(images[seen].min()),
        )  # fmt: skip


def measure_fidelity(reference: Any, candidate: Any, feeds: Feeds, num_classes: int) -> Fidelity:
    """``candidate`` against ``reference`` (onnxruntime sessions) on ``feeds``, per stage."""
    return Reference(reference, feeds, num_classes).measure(candidate)
