"""The balance study's figures, intervals and verdict (numpy only).

Per arm and size: balanced accuracy, recall per stage and macro-F1 on the held-out subjects, the mean over
the repeats (each a new draw of training subjects and a new seed). Each has a 95% interval from a
two-level bootstrap: a replicate draws the repeats with replacement and resamples the held-out subjects
within their stage (:func:`.bootstrap.weights`), and averages the figure over the drawn repeats, so it
moves with other training subjects, other seeds and other test subjects. The replicates are shared by the
arms (the same repeats, the same test subjects), so the difference of two arms has its own, paired
interval.

The verdict asks whether topping up with generated images, (d) or (e), beats the best arm that needs no
generator, (a), (b) or (c), in balanced accuracy: **met** where the 95% interval of a top-up's difference
from it lies above zero; **not met** where every top-up's lies below zero; otherwise **inconclusive**
(the decision flips inside an interval).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .bootstrap import interval, weights

FREE = ("a", "b", "c")
GENERATED = ("d", "e")


def stratified_weights(y: np.ndarray, groups: Sequence[Any] | None, k: int, replicates: int,
                       rng: np.random.Generator) -> np.ndarray:
    """float64 ``[replicates, n]``: held-out images resampled by subject within their stage."""
    y = np.asarray(y)
    out = np.zeros((replicates, len(y)))
    g = None if groups is None else np.asarray(groups, dtype=object)
    for s in range(k):
        sel = np.flatnonzero(y == s)
        if len(sel):
            out[:, sel] = weights(None if g is None else g[sel], len(sel), replicates, rng)
    return out


def figures(w: np.ndarray, y: np.ndarray, pred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced accuracy ``[B]``, recall per stage ``[B, k]`` and macro-F1 ``[B]`` of ``pred`` against ``y``
    under each row of image weights ``w [B, n]``."""
    y1 = np.eye(k)[np.asarray(y, dtype=np.int64)]
    p1 = np.eye(k)[np.asarray(pred, dtype=np.int64)]
    actual, predicted, hit = w @ y1, w @ p1, w @ (y1 * p1)
    present = actual > 0
    recall = np.where(present, hit / np.maximum(actual, 1e-12), np.nan)
    f1 = np.where(present, 2 * hit / np.maximum(actual + predicted, 1e-12), np.nan)
    with np.errstate(invalid="ignore"):
        return np.nanmean(recall, axis=1), recall, np.nanmean(f1, axis=1)


def verdict(ci: Sequence[float]) -> str:
    """A top-up against the best free arm, from the interval of their difference."""
    lo, hi = ci
    if lo > 0:
        return "met"
    if hi < 0:
        return "not met"
    return "inconclusive"


def combined(verdicts: Sequence[str]) -> str:
    """Met if any top-up is; not met if every one is not; inconclusive otherwise."""
    if "met" in verdicts:
        return "met"
    if verdicts and all(v == "not met" for v in verdicts):
        return "not met"
    return "inconclusive"


def summarise(predictions: dict[str, list[np.ndarray]], y: np.ndarray, groups: Sequence[Any] | None, k: int, *,
              replicates: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per arm (``predictions[arm]``: one held-out prediction per repeat) every figure with its interval,
    the best arm, the best free arm, and each top-up's paired difference from it with its verdict."""
    arms = list(predictions)
    repeats = len(predictions[arms[0]])
    rng = np.random.default_rng([seed, 0xBA1A])
    w = stratified_weights(y, groups, k, replicates, rng)
    pick = rng.integers(0, repeats, size=(replicates, repeats))  # the repeats each replicate draws
    rows = np.arange(replicates)[:, None]
    ones = np.ones((1, len(y)))
    reps: dict[str, dict[str, np.ndarray]] = {}
    out: dict[str, Any] = {"repeats": repeats, "replicates": replicates, "arms": {}}
    for arm in arms:
        per = [figures(w, y, p, k) for p in predictions[arm]]
        point = [figures(ones, y, p, k) for p in predictions[arm]]
        bal = np.stack([f[0] for f in per])  # [R, B]
        rec = np.stack([f[1] for f in per])  # [R, B, k]
        f1 = np.stack([f[2] for f in per])
        reps[arm] = {"balanced_accuracy": bal[pick, rows].mean(axis=1), "macro_f1": f1[pick, rows].mean(axis=1),
                     "recall": rec[pick, rows].mean(axis=1)}
        out["arms"][arm] = {
            "balanced_accuracy": {"value": float(np.mean([p[0][0] for p in point])),
                                  "ci": interval(reps[arm]["balanced_accuracy"]),
                                  "per_repeat": [float(p[0][0]) for p in point]},
            "macro_f1": {"value": float(np.mean([p[2][0] for p in point])), "ci": interval(reps[arm]["macro_f1"])},
            "recall": {"value": np.mean([p[1][0] for p in point], axis=0).tolist(),
                       "ci": [interval(reps[arm]["recall"][:, s]) for s in range(k)]},
        }
    value = {a: out["arms"][a]["balanced_accuracy"]["value"] for a in arms}
    out["best"] = max(arms, key=lambda a: value[a])
    free = [a for a in FREE if a in arms]
    out["best_free"] = max(free, key=lambda a: value[a])
    versus = {}
    for arm in (a for a in GENERATED if a in arms):
        diff = reps[arm]["balanced_accuracy"] - reps[out["best_free"]]["balanced_accuracy"]
        ci = interval(diff)
        versus[arm] = {"difference": value[arm] - value[out["best_free"]], "ci": ci, "verdict": verdict(ci)}
    out["versus_best_free"] = versus
    out["verdict"] = combined([v["verdict"] for v in versus.values()])
    return out


MEANING = {"met": "met: a top-up beats it beyond the interval of the difference",
           "not met": "not met: every top-up falls short of it beyond the interval of the difference",
           "inconclusive": "inconclusive: no top-up beats it beyond the interval of the difference"}


def size_sentence(summary: dict[str, Any], arms: dict[str, str], subjects: Sequence[int]) -> str:
    """One plain sentence: the best arm, and whether the top-ups beat the best free arm (met / not met /
    inconclusive), with the figures that decide it."""
    best, free = summary["best"], summary["best_free"]
    b = summary["arms"][best]["balanced_accuracy"]
    diffs = ", ".join(f"({a}) {v['difference']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]"
                      for a, v in summary["versus_best_free"].items())
    return (f"With {sum(subjects)} training subjects ({'/'.join(str(int(c)) for c in subjects)} by stage) the best "
            f"arm is ({best}) {arms[best]} at {b['value']:.3f} [{b['ci'][0]:.3f}, {b['ci'][1]:.3f}] balanced accuracy; "
            f"against the best arm without generated images, ({free}) {arms[free]}, the top-ups differ by {diffs}: "
            f"{MEANING[summary['verdict']]}.")


def study_sentence(result: dict[str, Any]) -> str:
    """The size sentences of a study, largest size first."""
    return " ".join(size_sentence(s, result["arms"], size["subjects"])
                    for s, size in zip(result["per_size"], result["sizes"]))
