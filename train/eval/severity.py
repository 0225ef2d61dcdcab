"""The ground-truth check on synthetic sets: does a generated stage carry its stage's atrophy severity?

No learned judge is involved. Each image's severity is estimated from what can be measured in it: the
atrophy markers of :func:`cgan.train.synth.estimate_markers` (head area, brain fraction, ventricle and
sulcal CSF fractions, tissue contrast) and their pairwise products, mapped to severity by a ridge
regression fitted on real images of known severity (the judge set's fit subjects), then calibrated
on the validation subjects (the regression's estimates, regressed on the truth, are inverted: a
regression alone pulls every estimate toward the mean severity, which would put the outer stages'
medians a stage inward). The estimator is checked first on real held-out subjects, and its error reported, in units of the stage spacing (the
distance between two stages' mean severities).

Per stage, the generated images' estimated severities are compared with those of real held-out images
of the same stage, read by the same estimator (so its bias cancels): the median offset and the
Wasserstein-1 distance between the two distributions, in stage spacings, and whether the medians of the
four generated stages come out in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

Log = Callable[[str], object]
RIDGE = 1e-3
FIT_MAX = 4000  # real images the estimator is fitted on (a seeded sample of the fit side)


def features(images: np.ndarray) -> np.ndarray:
    """``[N, F]``: the markers, their squares and pairwise products (float64)."""
    from cgan.train.synth import MARKER_NAMES, estimate_markers

    m = estimate_markers(np.asarray(images))
    x = np.stack([m[name] for name in MARKER_NAMES], axis=1)
    iu = np.triu_indices(x.shape[1])
    quad = (x[:, :, None] * x[:, None, :])[:, iu[0], iu[1]]
    return np.concatenate([x, quad], axis=1)


@dataclass
class SeverityEstimator:
    """A ridge regression of severity on standardised marker features, with a linear calibration."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    cal_a: float = 0.0  # raw estimate = cal_a + cal_b * severity on the calibration images
    cal_b: float = 1.0

    @classmethod
    def fit(cls, images: np.ndarray, severity: np.ndarray, *, calibrate: tuple[np.ndarray, np.ndarray] | None = None,
            ridge: float = RIDGE) -> "SeverityEstimator":
        x = features(images)
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-12
        z = (x - mean) / scale
        y = np.asarray(severity, dtype=np.float64)
        a = z.T @ z + ridge * len(z) * np.eye(z.shape[1])
        coef = np.linalg.solve(a, z.T @ (y - y.mean()))
        est = cls(mean=mean, scale=scale, coef=coef, intercept=float(y.mean()))
        if calibrate is not None and len(calibrate[1]) >= 4:
            raw = est.raw(calibrate[0])
            b, a0 = np.polyfit(np.asarray(calibrate[1], dtype=np.float64), raw, 1)
            if b > 0.1:  # an estimator that barely moves with severity is left as it is
                est.cal_a, est.cal_b = float(a0), float(b)
        return est

    def raw(self, images: np.ndarray) -> np.ndarray:
        return ((features(images) - self.mean) / self.scale) @ self.coef + self.intercept

    def predict(self, images: np.ndarray) -> np.ndarray:
        return (self.raw(images) - self.cal_a) / self.cal_b


def wasserstein1(a: np.ndarray, b: np.ndarray) -> float:
    """The Wasserstein-1 distance between two 1-D samples (the area between their quantile functions)."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))


def stage_spacing(severity: np.ndarray, labels: np.ndarray, k: int) -> float:
    """The mean distance between neighbouring stages' median severities (the unit of every figure here)."""
    med = [np.median(severity[labels == s]) for s in range(k)]
    return float(np.mean(np.diff(med)))


def compare(gen_est: Sequence[np.ndarray], real_est: Sequence[np.ndarray], spacing: float) -> dict[str, Any]:
    """Per stage: median offset and Wasserstein-1 (in stage spacings) of generated against real estimates,
    and whether the generated stages' medians come out in order."""
    med_g = [float(np.median(g)) for g in gen_est]
    med_r = [float(np.median(r)) for r in real_est]
    return {
        "generated_median": med_g, "real_median": med_r,
        "median_offset": [(g - r) / spacing for g, r in zip(med_g, med_r)],
        "wasserstein": [wasserstein1(g, r) / spacing for g, r in zip(gen_est, real_est)],
        "in_order": bool(all(b > a for a, b in zip(med_g, med_g[1:]))),
        "real_in_order": bool(all(b > a for a, b in zip(med_r, med_r[1:]))),
    }


def severity_check(image_set: Any, split: Any, gen_images: Sequence[np.ndarray], *, seed: int = 0,
                   log: Log = print) -> dict[str, Any]:
    """Fit the estimator on the fit side, report its error on held-out subjects, compare every stage."""
    severity = np.asarray(image_set.severity, dtype=np.float64)
    labels = np.asarray(image_set.labels, dtype=np.int64)
    k = len(gen_images)
    rng = np.random.default_rng([seed, 0x5E7])
    fit_idx = np.sort(split.fit if len(split.fit) <= FIT_MAX else rng.choice(split.fit, FIT_MAX, replace=False))
    val = np.sort(split.val)
    est = SeverityEstimator.fit(np.asarray(image_set.images[fit_idx]), severity[fit_idx],
                                calibrate=(np.asarray(image_set.images[val]), severity[val]))
    held = np.sort(split.held)
    pred = est.predict(np.asarray(image_set.images[held]))
    truth, held_labels = severity[held], labels[held]
    spacing = stage_spacing(severity, labels, k)
    err = pred - truth
    real_est = [pred[held_labels == s] for s in range(k)]
    gen_est = [est.predict(g) for g in gen_images]
    out = compare(gen_est, real_est, spacing)
    rmse = float(np.sqrt(np.mean(err**2)))
    out.update({
        "estimator": "ridge regression of severity on the image markers (cgan.train.synth.estimate_markers), "
                     f"their squares and products; fitted on {len(fit_idx):,} real fit-side images of known severity, "
                     f"calibrated on {len(val):,} validation images",
        "spacing": spacing,
        "real_error": {"rmse": rmse / spacing, "mae": float(np.mean(np.abs(err))) / spacing,
                       "bias": float(np.mean(err)) / spacing,
                       "median_error_per_stage": [float(np.median(real_est[s]) - np.median(truth[held_labels == s])) / spacing
                                                  for s in range(k)],
                       "correlation": float(np.corrcoef(pred, truth)[0, 1]), "n": int(len(held))},
        "units": "stage spacings (the mean distance between neighbouring stages' median severities)",
    })
    log(f"severity estimator on real held-out images: RMSE {out['real_error']['rmse']:.2f} stage spacings "
        f"(r = {out['real_error']['correlation']:.2f}); generated stages in order: {out['in_order']}")
    return out
