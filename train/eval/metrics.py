"""The figures cgan-eval computes from features and predictions (numpy only).

- Fréchet distance of Gaussians fitted to two feature sets, and the matched-size comparison against
  a real-vs-real baseline (:func:`matched_frechet`);
- KID (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel
  ``k(x, y) = (x·y / d + 1)^3``, mean and standard error over random subsets (:func:`kid`); unlike the
  Fréchet distance it is unbiased, so it can be read at the small sample sizes of a rare stage;
- precision and recall of k-NN manifolds (Kynkäänniemi et al. 2019, k = 3): precision is the share
  of generated samples inside the real manifold (realism), recall the share of real samples inside the
  generated manifold (coverage; a collapsed generator has low recall) (:func:`precision_recall`);
- diversity (mean pairwise distance), accuracy summaries and confusion matrices.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

PIXEL_DIVERSITY_SIZE = 32
KID_SUBSETS = 20
KID_SUBSET_SIZE = 256
PR_K = 3


# ---------------------------------------------------------------- Fréchet distance

def moments(features: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of ``features [N, D]``; with ``weights``, of the weighted sample
    (weights need not be normalised; the covariance uses the unbiased weighted estimator)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 feature rows [N, D], got shape {x.shape}")
    if weights is None:
        return x.mean(axis=0), np.cov(x, rowvar=False)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu = w @ x
    d = x - mu
    cov = (d * w[:, None]).T @ d / (1.0 - np.sum(w * w))
    return mu, cov


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) * 0.5)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance of two Gaussians: ``|mu1-mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2))``.

    ``tr((C1 C2)^(1/2))`` is computed as ``tr((S C2 S)^(1/2))`` with ``S = C1^(1/2)``: the same
    eigenvalues, but of a symmetric positive semi-definite matrix (no general matrix square root).
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    c1, c2 = np.atleast_2d(np.asarray(cov1, dtype=np.float64)), np.atleast_2d(np.asarray(cov2, dtype=np.float64))
    s = _sqrt_psd(c1)
    m = s @ c2 @ s
    eig = np.linalg.eigvalsh((m + m.T) * 0.5)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * tr_sqrt), 0.0)


def frechet_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]`` and ``[M, D]``."""
    return frechet_distance(*moments(a), *moments(b))


def ratio(a: float, b: float) -> float:
    if b > 0:
        return float(a / b)
    return 0.0 if a == 0 else float("inf")


def _stage_balanced_weights(groups: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.full(len(g), 1.0 / len(g)) for g in groups])


def _chunks(x: np.ndarray, m: int) -> list[np.ndarray]:
    return [x[j * m : (j + 1) * m] for j in range(len(x) // m)]


def matched_frechet(gen: Sequence[np.ndarray], held: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> dict[str, Any]:
    """Fréchet distances of generated and of held-out features against the train reference, per stage,
    at matched sample sizes (lists are per stage, features ``[N, D]``).

    Per stage, with ``m = min(len(gen[s]), len(held[s]))``: the generated FD is the mean over the
    disjoint chunks of m generated features, the baseline the mean over the disjoint chunks of m
    held-out features, both against the same reference Gaussian, so the estimator's small-sample bias
    is the same on both sides. ``overall`` is the mean of the per-stage ratios; ``pooled`` (equal-weight
    stage mixtures) is for information only.
    """
    k = len(ref)
    m = [min(len(g), len(h)) for g, h in zip(gen, held)]
    ref_m = [moments(r) for r in ref]
    per_stage = []
    for s in range(k):
        g = float(np.mean([frechet_distance(*moments(c), *ref_m[s]) for c in _chunks(gen[s], m[s])]))
        b = float(np.mean([frechet_distance(*moments(c), *ref_m[s]) for c in _chunks(held[s], m[s])]))
        per_stage.append({"generated": g, "baseline": b, "ratio": ratio(g, b), "m": m[s],
                          "chunks_generated": len(gen[s]) // m[s], "chunks_baseline": len(held[s]) // m[s]})
    ratios = [p["ratio"] for p in per_stage]
    overall = {"ratio": float(np.mean(ratios)), "worst_stage_ratio": float(np.max(ratios)),
               "generated": float(np.mean([p["generated"] for p in per_stage])),
               "baseline": float(np.mean([p["baseline"] for p in per_stage])),
               "what": "mean over stages of the per-stage ratio (generated and baseline: mean per-stage FD)"}
    ref_all = moments(np.concatenate(ref), _stage_balanced_weights(ref))
    gen_parts = [g[: m[s]] for s, g in enumerate(gen)]
    held_parts = [h[: m[s]] for s, h in enumerate(held)]
    pg = frechet_distance(*moments(np.concatenate(gen_parts), _stage_balanced_weights(gen_parts)), *ref_all)
    pb = frechet_distance(*moments(np.concatenate(held_parts), _stage_balanced_weights(held_parts)), *ref_all)
    pooled = {"generated": pg, "baseline": pb, "ratio": ratio(pg, pb), "m": m,
              "what": "equal-weight stage mixtures, one chunk of m per stage; noisy, for information"}
    return {"overall": overall, "pooled": pooled, "per_stage": per_stage}


# ---------------------------------------------------------------- KID

def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² estimate between samples ``x [m, d]`` and ``y [n, d]`` (cubic polynomial kernel)."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid(x: np.ndarray, y: np.ndarray, *, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> dict[str, float]:
    """KID between feature sets ``x`` and ``y``: the unbiased MMD² averaged over ``subsets`` random
    subsets of ``min(subset_size, half the smaller side)`` rows of each side (drawn without replacement
    within a subset; half, so that the subsets of both sides vary). ``se`` is the standard error of the
    whole-sample estimate: the spread of the subset estimates scaled by sqrt(subset size / sample size)
    (the variance of this U-statistic falls as 1/m). Dividing by sqrt(subsets) instead would claim an
    accuracy the overlapping subsets of one sample do not have."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    size = min(subset_size, min(len(x), len(y)) // 2)
    if size < 2:
        raise ValueError(f"KID needs at least 4 rows on each side, got {len(x)} and {len(y)}")
    rng = np.random.default_rng([seed, 0x41D])
    vals = np.array([mmd2_unbiased(x[rng.choice(len(x), size, replace=False)],
                                   y[rng.choice(len(y), size, replace=False)]) for _ in range(subsets)])
    se = float(vals.std(ddof=1) * math.sqrt(size / min(len(x), len(y)))) if subsets > 1 else float("nan")
    return {"kid": float(vals.mean()), "se": se, "subset_size": int(size), "subsets": int(subsets)}


# ---------------------------------------------------------------- precision and recall (k-NN manifolds)

def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aa = np.einsum("ij,ij->i", a, a)
    bb = np.einsum("ij,ij->i", b, b)
    return np.clip(aa[:, None] + bb[None, :] - 2.0 * (a @ b.T), 0.0, None)


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    d = _sq_dists(x, x)
    np.fill_diagonal(d, np.inf)  # a sample is not its own neighbour
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def _inside(manifold: np.ndarray, radii: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """Whether each of ``probes`` lies within the k-NN ball of at least one row of ``manifold``."""
    return (_sq_dists(probes, manifold) <= radii[None, :]).any(axis=1)


def precision_recall_indicators(real: np.ndarray, gen: np.ndarray, *, k: int = PR_K) -> tuple[np.ndarray, np.ndarray]:
    """Per generated sample: inside the real manifold (its mean is precision); per real sample: inside the
    generated manifold (its mean is recall). What the bootstrap intervals resample."""
    real, gen = np.asarray(real, dtype=np.float64), np.asarray(gen, dtype=np.float64)
    if len(real) <= k or len(gen) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} rows per side, got {len(real)} and {len(gen)}")
    return _inside(real, _knn_radii(real, k), gen), _inside(gen, _knn_radii(gen, k), real)


def precision_recall(real: np.ndarray, gen: np.ndarray, *, k: int = PR_K) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``gen`` against ``real`` (features ``[N, D]``).

    Each sample's manifold ball has the radius of its k-th nearest neighbour within its own set.
    precision: generated samples inside the real manifold; recall: real samples inside the generated one.
    """
    p, r = precision_recall_indicators(real, gen, k=k)
    return {"precision": float(p.mean()), "recall": float(r.mean()), "k": int(k)}


# ---------------------------------------------------------------- diversity

def mean_pairwise_distance(x: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs i < j of the rows of ``x [N, D]`` (float64)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = len(x)
    if n < 2:
        return float("nan")
    d2 = _sq_dists(x, x)
    iu = np.triu_indices(n, k=1)
    return float(np.sqrt(d2[iu]).mean())


def pixel_vectors(images: np.ndarray, size: int = PIXEL_DIVERSITY_SIZE) -> np.ndarray:
    """uint8 ``[N, H, W]`` -> float64 ``[N, size*size]`` in [0, 1] scaled by ``1/size`` (so Euclidean
    distances are RMS pixel differences), area-averaged to ``size`` px when H is a multiple of it."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    n, h, w = x.shape
    if h != size or w != size:
        if h % size or w % size:
            raise ValueError(f"pixel diversity needs images whose size is a multiple of {size} px, got {h}x{w}")
        x = x.reshape(n, size, h // size, size, w // size).mean(axis=(2, 4))
    return x.reshape(n, -1) / size


# ---------------------------------------------------------------- predictions

def confusion(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 ``[K, K]``: row = true class, column = predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m


def accuracy_summary(matrix: np.ndarray) -> dict[str, Any]:
    """Accuracy (pooled), balanced accuracy (mean per-class recall) and per-class recall from a confusion matrix."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1)
    per_class = np.where(rows > 0, np.diag(matrix) / np.maximum(rows, 1), np.nan)
    return {
        "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
        "balanced_accuracy": float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan"),
        "per_class": [float(v) for v in per_class],
        "confusion": matrix.tolist(),
    }


def plain(obj: Any, *, json_safe: bool = False) -> Any:
    """Built-in types only (what ``weights_only`` loading and JSON accept); ``json_safe`` also turns
    non-finite floats into ``None`` (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): plain(v, json_safe=json_safe) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, json_safe=json_safe) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist(), json_safe=json_safe)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return None if json_safe and not math.isfinite(v) else v
    if isinstance(obj, Path):
        return str(obj)
    return obj
