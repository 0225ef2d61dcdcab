"""Every judge-based figure of one judge: conditional accuracy and confusion, Fréchet distance beside its
real-vs-real baseline, KID and precision/recall per stage (each with its real-vs-real baseline),
feature diversity, and the calibration rows for all of them; 95% bootstrap intervals (:mod:`.bootstrap`)
for the per-stage held-out accuracy, conditional accuracy, precision and recall."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import bootstrap as bs
from .calibration import CALIBRATION, perturb
from .metrics import (
    PR_K,
    accuracy_summary,
    confusion,
    kid,
    matched_frechet,
    mean_pairwise_distance,
    precision_recall,
    precision_recall_indicators,
    ratio,
)

NAN = float("nan")


def _kid_pr(gen: Sequence[np.ndarray], base: Sequence[np.ndarray], ref: Sequence[np.ndarray], n: int,
            seed: int, *, indicators: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per stage: KID and precision/recall of ``gen`` against the reference, beside held-out real
    images against the same reference (the baseline). Precision/recall at matched sizes m; with
    ``indicators``, each stage also keeps the per-sample outcomes the intervals resample."""
    kids, prs = [], []
    for s in range(len(ref)):
        kids.append({"generated": kid(gen[s], ref[s], seed=seed + s), "baseline": kid(base[s], ref[s], seed=seed + s)})
        m = min(n, len(gen[s]), len(base[s]), len(ref[s]))
        row: dict[str, Any] = {"m": int(m)}
        if m > PR_K:
            pi, ri = precision_recall_indicators(ref[s][:m], gen[s][:m])
            row["generated"] = {"precision": float(pi.mean()), "recall": float(ri.mean()), "k": PR_K}
            row["baseline"] = precision_recall(ref[s][:m], base[s][:m])
            if indicators:
                row["_ind"] = (pi, ri)
        else:
            row["generated"] = row["baseline"] = {"precision": NAN, "recall": NAN, "k": PR_K}
        prs.append(row)
    return kids, prs


def _outcomes_from_confusion(matrix: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-image outcomes (1 right, 0 wrong) and stages rebuilt from a confusion matrix."""
    m = np.asarray(matrix)
    ok, st = [], []
    for s in range(len(m)):
        ok += [1.0] * int(m[s, s]) + [0.0] * int(m[s].sum() - m[s, s])
        st += [s] * int(m[s].sum())
    return np.asarray(ok), np.asarray(st, dtype=np.int64)


def held_out_intervals(judge: Any, k: int, held: tuple[np.ndarray, np.ndarray, Any] | None, seed: int) -> dict[str, Any]:
    """The judge's held-out accuracy per stage and balanced, with intervals over held-out subjects
    (``held`` = images, labels, subject of each image); without ``held``, image by image from its confusion."""
    if held is not None:
        images, labels, groups = held
        ok = (judge.predict(np.asarray(images)) == labels).astype(np.float64)
        stages = np.asarray(labels)
    else:
        ok, stages = _outcomes_from_confusion(judge.held_out["confusion"])
        groups = None
    reps = bs.per_stage_replicates(ok, stages, k, groups, seed=seed)
    point = [float(ok[stages == s].mean()) if (stages == s).any() else NAN for s in range(k)]
    return {"per_class": bs.summary(point, reps), "balanced_accuracy": float(np.nanmean(point)),
            "balanced_accuracy_ci": bs.interval(np.nanmean(reps, axis=1)),
            "by": "subject" if groups is not None else "image", "_reps": reps}


def _intervals(cond_ok: np.ndarray, intended: np.ndarray, prs: list[dict[str, Any]], ref_groups: Any, k: int,
               seed: int) -> dict[str, Any]:
    """Per-stage intervals of conditional accuracy, precision and recall (and their replicates)."""
    cond = bs.per_stage_replicates(cond_ok, intended, k, None, seed=seed + 1)
    prec = np.full((bs.REPLICATES, k), NAN)
    rec = np.full((bs.REPLICATES, k), NAN)
    for s, row in enumerate(prs):
        ind = row.pop("_ind", None)
        if ind is None:
            continue
        rng = np.random.default_rng([seed, 0xB17, s])
        prec[:, s] = bs.mean_replicates(ind[0], None, rng=rng)
        g = None if ref_groups is None or ref_groups[s] is None else np.asarray(ref_groups[s])[: len(ind[1])]
        rec[:, s] = bs.mean_replicates(ind[1], g, rng=rng)
    cond_overall = bs.mean_replicates(cond_ok, None, rng=np.random.default_rng([seed, 0xC0]))
    return {"conditional_accuracy": cond, "conditional_overall": cond_overall, "precision": prec, "recall": rec}


def judge_figures(judge: Any, gen_images: Sequence[np.ndarray], ref_images: Sequence[np.ndarray],
                  base_images: Sequence[np.ndarray], *, n: int, seed: int, calibrate: bool = True,
                  ref_groups: Sequence[Any] | None = None, held: tuple | None = None) -> dict[str, Any]:
    """All figures of ``judge`` for generated images (per stage) against real reference (train side) and
    held-out (baseline) images, per stage. ``base_images[s][:n]`` are the real side of diversity and calibration.
    ``ref_groups[s]``: the subject of each reference image (recall is resampled by subject); ``held``: the
    held-out images, labels and subjects (the judge's own accuracy is resampled by subject). The bootstrap
    replicates ride along under ``"_reps"`` for the verdict (:func:`strip_replicates` drops them)."""
    k = len(gen_images)
    gen = [judge.embed(g) for g in gen_images]
    ref_feats = [judge.embed(r)[1] for r in ref_images]
    base_feats = [judge.embed(b)[1] for b in base_images]
    intended = np.repeat(np.arange(k), [len(g) for g in gen_images])
    pred = np.concatenate([lg.argmax(axis=1) for lg, _ in gen])
    cond = accuracy_summary(confusion(intended, pred, k))
    gen_feats = [f for _, f in gen]
    fd = matched_frechet(gen_feats, base_feats, ref_feats)
    kids, prs = _kid_pr(gen_feats, base_feats, ref_feats, n, seed, indicators=True)
    reps = _intervals((pred == intended).astype(np.float64), intended, prs, ref_groups, k, seed)
    held_ci = held_out_intervals(judge, k, held, seed)
    reps["held_per_class"] = held_ci.pop("_reps")
    div_g = [mean_pairwise_distance(gen_feats[s]) for s in range(k)]
    div_r = [mean_pairwise_distance(base_feats[s][:n]) for s in range(k)]
    out: dict[str, Any] = {
        "judge": judge.name,
        "arch": judge.config.arch,
        "input_size": judge.config.size_for(judge.img_size),
        "held_out": judge.held_out,
        "held_out_ci": held_ci,
        "gate": judge.config.gate,
        "competent": judge.competent,
        "path": str(judge.path) if judge.path else None,
        "epochs": judge.metrics.get("fit", {}).get("epochs"),
        "train_seconds": judge.metrics.get("train_seconds"),
        "conditional_accuracy": {"overall": cond["accuracy"], "per_stage": cond["per_class"],
                                 "confusion": cond["confusion"], "overall_ci": bs.interval(reps["conditional_overall"]),
                                 "per_stage_ci": [bs.interval(reps["conditional_accuracy"][:, s]) for s in range(k)]},
        "frechet": fd,
        "kid": {"per_stage": kids, "overall": float(np.mean([x["generated"]["kid"] for x in kids])),
                "baseline": float(np.mean([x["baseline"]["kid"] for x in kids]))},
        "precision_recall": {"per_stage": prs, "k": PR_K,
                             "precision": float(np.nanmean([p["generated"]["precision"] for p in prs])),
                             "recall": float(np.nanmean([p["generated"]["recall"] for p in prs])),
                             "baseline_precision": float(np.nanmean([p["baseline"]["precision"] for p in prs])),
                             "baseline_recall": float(np.nanmean([p["baseline"]["recall"] for p in prs])),
                             "precision_ci": [bs.interval(reps["precision"][:, s]) for s in range(k)],
                             "recall_ci": [bs.interval(reps["recall"][:, s]) for s in range(k)]},
        "diversity": {"generated": div_g, "real": div_r, "ratio": [ratio(a, b) for a, b in zip(div_g, div_r)]},
        "calibration": [],
        "_reps": reps,
    }
    if calibrate:
        for kind, amount, what in CALIBRATION:
            feats = [judge.embed(perturb(np.asarray(base_images[s][:n]), kind, amount, seed=seed + s)) for s in range(k)]
            pred = np.concatenate([lg.argmax(axis=1) for lg, _ in feats])
            truth = np.repeat(np.arange(k), [len(f) for _, f in feats])
            cfd = matched_frechet([f for _, f in feats], base_feats, ref_feats)
            ckid, cpr = _kid_pr([f for _, f in feats], base_feats, ref_feats, n, seed)
            out["calibration"].append({
                "perturbation": what, "kind": kind, "amount": amount,
                "accuracy": accuracy_summary(confusion(truth, pred, k))["accuracy"],
                "fd_ratio": cfd["overall"]["ratio"], "fd_ratio_per_stage": [p["ratio"] for p in cfd["per_stage"]],
                "kid": float(np.mean([x["generated"]["kid"] for x in ckid])),
                "precision": float(np.nanmean([p["generated"]["precision"] for p in cpr])),
                "recall": float(np.nanmean([p["generated"]["recall"] for p in cpr])),
            })
    return out


def strip_replicates(figures: dict[str, Any]) -> dict[str, Any]:
    """The judge's figures without the bootstrap replicates (what the report keeps)."""
    return {key: v for key, v in figures.items() if key != "_reps"}
