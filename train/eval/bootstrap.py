"""95% bootstrap intervals over held-out subjects (numpy only).

Every per-stage figure cgan-eval reports is a mean of per-image outcomes: a held-out image read right
(accuracy), a generated image read as its stage (conditional accuracy), a generated image inside the real
manifold (precision), a real image inside the generated one (recall). Slices of one subject are not
independent, so real images are resampled by subject, within their stage (a stratified cluster
bootstrap); generated images are independent draws and are resampled one by one. The interval is the
2.5-97.5 percentile of the replicates. Manifolds and the judge stay fixed: the interval says how much
the figure would move with other subjects and other noise, not with another judge.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

REPLICATES = 1000
LEVEL = 0.95


def weights(groups: Sequence[Any] | None, n: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """float64 ``[replicates, n]``: how often each item is drawn in each replicate, resampling whole
    groups (``groups[i]`` is item i's subject) with replacement; ``None``: every item its own group."""
    if n == 0:
        return np.zeros((replicates, 0))
    if groups is None:
        inv = np.arange(n)
        g = n
    else:
        _, inv = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
        g = int(inv.max()) + 1
    draws = rng.integers(0, g, size=(replicates, g))
    counts = np.zeros((replicates, g))
    np.add.at(counts, (np.repeat(np.arange(replicates), g), draws.ravel()), 1.0)
    return counts[:, inv]


def mean_replicates(values: np.ndarray, groups: Sequence[Any] | None = None, *, replicates: int = REPLICATES,
                    rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates ``[replicates]`` of the mean of ``values`` (per-item outcomes), by group."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return np.full(replicates, np.nan)
    w = weights(groups, len(v), replicates, rng)
    tot = w.sum(axis=1)
    return np.where(tot > 0, (w @ v) / np.maximum(tot, 1e-12), np.nan)


def interval(reps: np.ndarray, level: float = LEVEL) -> list[float]:
    """The percentile interval ``[lo, hi]`` of bootstrap replicates (NaN where there are none)."""
    r = np.asarray(reps, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return [float("nan"), float("nan")]
    a = (1.0 - level) / 2.0
    return [float(np.quantile(r, a)), float(np.quantile(r, 1.0 - a))]


def per_stage_replicates(correct: np.ndarray, stages: np.ndarray, k: int, groups: Sequence[Any] | None = None, *,
                         replicates: int = REPLICATES, seed: int = 0) -> np.ndarray:
    """``[replicates, k]``: per stage, the bootstrap replicates of the mean outcome of that stage's items
    (resampled by ``groups`` within the stage; ``None``: item by item)."""
    correct, stages = np.asarray(correct, dtype=np.float64), np.asarray(stages)
    g = None if groups is None else np.asarray(groups, dtype=object)
    out = np.empty((replicates, k))
    for s in range(k):
        sel = stages == s
        rng = np.random.default_rng([seed, 0xB007, s])
        out[:, s] = mean_replicates(correct[sel], None if g is None else g[sel], replicates=replicates, rng=rng)
    return out


def summary(point: Sequence[float], reps: np.ndarray) -> dict[str, Any]:
    """Per-stage figure with its interval: ``{"value": [...], "ci": [[lo, hi], ...]}``."""
    return {"value": [float(v) for v in point], "ci": [interval(reps[:, s]) for s in range(reps.shape[1])]}
