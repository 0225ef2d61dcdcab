"""The bar and its verdict over several judges: only judges that pass their competence gate count, each
criterion takes the worse of them, and a disagreement between judges larger than a margin is said in
one sentence a user can act on."""

from __future__ import annotations

from typing import Any

# The bar a generator must clear (issue 15's, for the default model): every judge-based figure is read
# against the judge's own reading of real images or against a calibration row, not against a constant
# that depends on how hard the data is.
BAR = {
    "conditional_accuracy_relative": (">=", 0.90),
    "conditional_accuracy_min_stage": (">=", 0.70),
    "precision_min_stage": (">=", 0.50),
    "recall_min_stage": (">=", 0.50),
    "kid_over_blur1": ("<", 1.0),
    "fd_over_blur1": ("<", 1.0),
    "diversity_ratio_min": (">=", 0.5),
    "n_per_stage": (">=", 256),
}
BLUR1 = ("blur", 1.0)  # the calibration row the distances are read against: real held-out images, 1-px blur
DEFAULT_MARGIN = 0.10


def _blur1(j: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in j.get("calibration", []) if (r.get("kind"), r.get("amount")) == BLUR1), None)


def _criteria(j: dict[str, Any], pixel_ratio_min: float) -> dict[str, float]:
    nan = float("nan")
    pr = j["precision_recall"]["per_stage"]
    blur = _blur1(j)
    held = j["held_out"]["balanced_accuracy"]
    return {
        "conditional_accuracy_relative": j["conditional_accuracy"]["overall"] / held if held > 0 else nan,
        "conditional_accuracy_min_stage": min(j["conditional_accuracy"]["per_stage"]),
        "precision_min_stage": min(p["generated"]["precision"] for p in pr),
        "recall_min_stage": min(p["generated"]["recall"] for p in pr),
        "kid_over_blur1": j["kid"]["overall"] / blur["kid"] if blur and blur["kid"] > 0 else nan,
        "fd_over_blur1": j["frechet"]["overall"]["ratio"] / blur["fd_ratio"] if blur and blur["fd_ratio"] > 0 else nan,
        "diversity_ratio_min": min(min(j["diversity"]["ratio"]), pixel_ratio_min),
    }


WHAT = {
    "conditional_accuracy_relative": "conditional accuracy (all stages) / the judge's held-out balanced accuracy on real subjects",
    "conditional_accuracy_min_stage": "lowest per-stage conditional accuracy",
    "precision_min_stage": "lowest per-stage precision (3-NN realism)",
    "recall_min_stage": "lowest per-stage recall (3-NN coverage)",
    "kid_over_blur1": "mean per-stage KID / KID of real held-out images blurred by 1 px (calibration row)",
    "fd_over_blur1": "Fréchet ratio / that of real held-out images blurred by 1 px (calibration row)",
    "diversity_ratio_min": "lowest generated/real diversity ratio over stages, judge features and pixels",
    "n_per_stage": "generated images per stage",
}


def _met(value: float, op: str, threshold: float) -> bool:
    if value != value:  # NaN: nothing to judge by
        return False
    return bool(value < threshold) if op == "<" else bool(value >= threshold)


def passes_bar(judges: list[dict[str, Any]], *, n_per_stage: int, pixel_ratio_min: float) -> dict[str, Any]:
    """Each criterion with its value (the worse of the judges), threshold and whether it is met.

    ``verdict`` is "met", "not met", or "no verdict" when a judge failed its competence gate. Only judges
    that pass their gate count; when none does, the values are still given (the worse of all judges,
    marked "below gate") so a reader sees how far the generator is, but they decide nothing."""
    competent = [j for j in judges if j["competent"]]
    failed = [j for j in judges if not j["competent"]]
    counted = competent or judges
    criteria = []
    for name, (op, threshold) in BAR.items():
        if name == "n_per_stage":
            value, by = float(n_per_stage), "-"
        elif counted:
            vals = [(_criteria(j, pixel_ratio_min)[name], j["judge"] + ("" if j["competent"] else " (below gate)"))
                    for j in counted]
            known = [v for v in vals if v[0] == v[0]] or vals
            value, by = (max if op == "<" else min)(known)
        else:
            value, by = float("nan"), "-"
        criteria.append({"name": name, "what": WHAT[name], "value": float(value), "op": op, "threshold": threshold,
                         "met": _met(float(value), op, threshold), "judge": by})
    all_met = bool(competent) and not failed and all(c["met"] for c in criteria)
    if failed:
        verdict = "no verdict"
        reason = "; ".join(f"judge {j['judge']} is below its competence gate (held-out balanced accuracy "
                           f"{j['held_out']['balanced_accuracy']:.3f} < {j['gate']:.2f})" for j in failed)
    else:
        verdict = "met" if all_met else "not met"
        reason = "worse of the judges on every criterion"
    return {"criteria": criteria, "all_met": all_met, "verdict": verdict, "reason": reason,
            "judges_counted": [j["judge"] for j in competent]}


def rare_stage_recall(augment: dict[str, Any], counts: list[int]) -> list[dict[str, Any]]:
    """The rare stage's (fewest real training images) recall in arm (b) against arm (a), per judge."""
    rare = int(min(range(len(counts)), key=lambda s: counts[s]))
    out = []
    for j in augment["per_judge"]:
        a, b = j["arms"]["a"], j["arms"]["b"]
        out.append({"judge": j["judge"], "stage": rare, "recall_a": a["recall_mean"][rare], "recall_b": b["recall_mean"][rare],
                    "balanced_a": a["balanced_accuracy_mean"], "balanced_b": b["balanced_accuracy_mean"]})
    return out


def disagreement(judges: list[dict[str, Any]], stage_names: list[str], margin: float = DEFAULT_MARGIN) -> dict[str, Any]:
    """Whether the competent judges read the generated images' stages differently by more than ``margin``
    (conditional accuracy below each judge's own held-out accuracy on real images, overall or on any
    stage), with one sentence saying what to do about it."""
    competent = [j for j in judges if j["competent"]]
    out: dict[str, Any] = {"margin": margin, "flag": False, "sentence": "", "stages": []}
    if len(competent) < 2:
        return out
    a, b = competent[0], competent[1]
    ca, cb = a["conditional_accuracy"], b["conditional_accuracy"]
    # each judge's shortfall from its own reading of real held-out images (its ceiling), so two judges
    # that read real images differently do not count as disagreeing about the generator
    short_a = [h - c for h, c in zip(a["held_out"]["per_class"], ca["per_stage"])]
    short_b = [h - c for h, c in zip(b["held_out"]["per_class"], cb["per_stage"])]
    gaps = [abs(x - y) for x, y in zip(short_a, short_b)]
    stages = [s for s, g in enumerate(gaps) if g > margin]
    overall_gap = abs((a["held_out"]["balanced_accuracy"] - ca["overall"]) - (b["held_out"]["balanced_accuracy"] - cb["overall"]))
    out.update(overall_gap=overall_gap, per_stage_gap=gaps, stages=stages)
    if overall_gap <= margin and not stages:
        return out
    worse, better = (a, b) if sum(short_a) >= sum(short_b) else (b, a)
    named = ", ".join(f"{stage_names[s]} ({a['judge']} {ca['per_stage'][s]:.2f} vs {b['judge']} {cb['per_stage'][s]:.2f})"
                      for s in stages) or "no single stage"
    out["flag"] = True
    out["sentence"] = (
        f"The judges disagree by more than {margin:.2f}: {worse['judge']} reads conditional accuracy "
        f"{worse['conditional_accuracy']['overall']:.2f} and {better['judge']} {better['conditional_accuracy']['overall']:.2f}, "
        f"on {named}; the stage shows to one network design and not to the other (compare their calibration "
        f"rows to see which reacts to texture), so take the worse judge's figures before using these images "
        f"for those stages.")
    return out
