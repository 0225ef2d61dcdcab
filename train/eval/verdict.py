"""The bar and its verdict over several judges: only judges that pass their competence gate count, each
criterion takes the worse of them, and a disagreement between judges larger than a margin is said in
one sentence a user can act on."""

from __future__ import annotations

from typing import Any

BAR = {
    "real_held_out_accuracy": 0.90,
    "conditional_accuracy_overall": 0.80,
    "conditional_accuracy_min_stage": 0.60,
    "fd_ratio_overall": 3.0,
    "diversity_ratio_min": 0.5,
    "n_per_stage": 256,
}
DEFAULT_MARGIN = 0.10


def _criteria(j: dict[str, Any], pixel_ratio_min: float) -> dict[str, float]:
    return {
        "real_held_out_accuracy": j["held_out"]["balanced_accuracy"],
        "conditional_accuracy_overall": j["conditional_accuracy"]["overall"],
        "conditional_accuracy_min_stage": min(j["conditional_accuracy"]["per_stage"]),
        "fd_ratio_overall": j["frechet"]["overall"]["ratio"],
        "diversity_ratio_min": min(min(j["diversity"]["ratio"]), pixel_ratio_min),
    }


WHAT = {
    "real_held_out_accuracy": "judge's held-out balanced accuracy on real images (the ceiling)",
    "conditional_accuracy_overall": "judge's accuracy on generated images, all stages",
    "conditional_accuracy_min_stage": "lowest per-stage conditional accuracy",
    "fd_ratio_overall": "Fréchet distance / real-vs-real baseline, mean of the per-stage ratios",
    "diversity_ratio_min": "lowest generated/real diversity ratio over stages, judge features and pixels",
    "n_per_stage": "generated images per stage",
}


def passes_bar(judges: list[dict[str, Any]], *, n_per_stage: int, pixel_ratio_min: float) -> dict[str, Any]:
    """Each criterion with its value (the worse of the competent judges), threshold and whether it is met.

    ``verdict`` is "met", "not met", or "no verdict" when a judge failed its competence gate (its
    figures are shown but give no verdict; with no competent judge there is no value to judge by)."""
    competent = [j for j in judges if j["competent"]]
    failed = [j for j in judges if not j["competent"]]
    criteria = []
    for name, threshold in BAR.items():
        op = "<=" if name == "fd_ratio_overall" else ">="
        if name == "n_per_stage":
            value, by = float(n_per_stage), "-"
        elif competent:
            vals = [(_criteria(j, pixel_ratio_min)[name], j["judge"]) for j in competent]
            value, by = (max if op == "<=" else min)(vals)
        else:
            value, by = float("nan"), "-"
        met = bool(value <= threshold) if op == "<=" else bool(value >= threshold)
        criteria.append({"name": name, "what": WHAT[name], "value": float(value), "op": op, "threshold": threshold,
                         "met": met, "judge": by})
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
