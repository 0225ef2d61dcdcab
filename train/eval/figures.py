"""Every judge-based figure of one judge: conditional accuracy and confusion, Fréchet distance beside its
real-vs-real baseline, KID and precision/recall per stage (each with its real-vs-real baseline),
feature diversity, and the calibration rows for all of them."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .calibration import CALIBRATION, perturb
from .metrics import (
    PR_K,
    accuracy_summary,
    confusion,
    kid,
    matched_frechet,
    mean_pairwise_distance,
    precision_recall,
    ratio,
)


def _kid_pr(gen: Sequence[np.ndarray], base: Sequence[np.ndarray], ref: Sequence[np.ndarray], n: int,
            seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per stage: KID and precision/recall of ``gen`` against the reference, beside held-out real
    images against the same reference (the baseline). Precision/recall at matched sizes m."""
    kids, prs = [], []
    for s in range(len(ref)):
        kids.append({"generated": kid(gen[s], ref[s], seed=seed + s), "baseline": kid(base[s], ref[s], seed=seed + s)})
        m = min(n, len(gen[s]), len(base[s]), len(ref[s]))
        if m > PR_K:
            g = precision_recall(ref[s][:m], gen[s][:m])
            b = precision_recall(ref[s][:m], base[s][:m])
        else:
            g = b = {"precision": float("nan"), "recall": float("nan"), "k": PR_K}
        prs.append({"generated": g, "baseline": b, "m": int(m)})
    return kids, prs


def judge_figures(judge: Any, gen_images: Sequence[np.ndarray], ref_images: Sequence[np.ndarray],
                  base_images: Sequence[np.ndarray], *, n: int, seed: int, calibrate: bool = True) -> dict[str, Any]:
    """All figures of ``judge`` for generated images (per stage) against real reference (train side) and
    held-out (baseline) images, per stage. ``base_images[s][:n]`` are the real side of diversity and calibration."""
    k = len(gen_images)
    gen = [judge.embed(g) for g in gen_images]
    ref_feats = [judge.embed(r)[1] for r in ref_images]
    base_feats = [judge.embed(b)[1] for b in base_images]
    intended = np.repeat(np.arange(k), [len(g) for g in gen_images])
    pred = np.concatenate([lg.argmax(axis=1) for lg, _ in gen])
    cond = accuracy_summary(confusion(intended, pred, k))
    gen_feats = [f for _, f in gen]
    fd = matched_frechet(gen_feats, base_feats, ref_feats)
    kids, prs = _kid_pr(gen_feats, base_feats, ref_feats, n, seed)
    div_g = [mean_pairwise_distance(gen_feats[s]) for s in range(k)]
    div_r = [mean_pairwise_distance(base_feats[s][:n]) for s in range(k)]
    out: dict[str, Any] = {
        "judge": judge.name,
        "arch": judge.config.arch,
        "input_size": judge.config.size_for(judge.img_size),
        "held_out": judge.held_out,
        "gate": judge.config.gate,
        "competent": judge.competent,
        "path": str(judge.path) if judge.path else None,
        "epochs": judge.metrics.get("fit", {}).get("epochs"),
        "train_seconds": judge.metrics.get("train_seconds"),
        "conditional_accuracy": {"overall": cond["accuracy"], "per_stage": cond["per_class"],
                                 "confusion": cond["confusion"]},
        "frechet": fd,
        "kid": {"per_stage": kids, "overall": float(np.mean([x["generated"]["kid"] for x in kids])),
                "baseline": float(np.mean([x["baseline"]["kid"] for x in kids]))},
        "precision_recall": {"per_stage": prs, "k": PR_K,
                             "precision": float(np.nanmean([p["generated"]["precision"] for p in prs])),
                             "recall": float(np.nanmean([p["generated"]["recall"] for p in prs])),
                             "baseline_precision": float(np.nanmean([p["baseline"]["precision"] for p in prs])),
                             "baseline_recall": float(np.nanmean([p["baseline"]["recall"] for p in prs]))},
        "diversity": {"generated": div_g, "real": div_r, "ratio": [ratio(a, b) for a, b in zip(div_g, div_r)]},
        "calibration": [],
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
