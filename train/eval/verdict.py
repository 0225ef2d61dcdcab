"""The bar and its verdict over several judges: only judges that pass their competence gate count, each
criterion takes the worse of them, and a disagreement between judges larger than a margin is said in
one sentence a user can act on."""

from __future__ import annotations

from typing import Any

import numpy as np

# The bar a generator must clear (the project's, for the default model): every judge-based figure is read
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


def _q(reps: np.ndarray) -> list[float] | None:
    r = np.asarray(reps, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return None
    return [float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))]


def _intervals(j: dict[str, Any]) -> dict[str, list[float] | None]:
    """95% intervals of the criteria that have them: bootstrap replicates over held-out subjects and
    generated images (``j["_reps"]``, see :mod:`.figures`) and, for KID, its standard error (±1.96 se)."""
    out: dict[str, list[float] | None] = {}
    reps = j.get("_reps")
    if reps is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            held = np.nanmean(reps["held_per_class"], axis=1)
            out["conditional_accuracy_relative"] = _q(reps["conditional_overall"] / held)
            out["conditional_accuracy_min_stage"] = _q(np.min(reps["conditional_accuracy"], axis=1))
            out["precision_min_stage"] = _q(np.min(reps["precision"], axis=1))
            out["recall_min_stage"] = _q(np.min(reps["recall"], axis=1))
    blur = _blur1(j)
    per = j["kid"].get("per_stage") or []
    ses = [x["generated"].get("se", float("nan")) for x in per]
    if blur and blur["kid"] > 0 and ses and all(np.isfinite(ses)):
        se = float(np.sqrt(np.sum(np.square(ses)))) / len(ses)
        out["kid_over_blur1"] = [(j["kid"]["overall"] - 1.96 * se) / blur["kid"], (j["kid"]["overall"] + 1.96 * se) / blur["kid"]]
    return out


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


def _status(value: float, ci: list[float] | None, op: str, threshold: float) -> str:
    """"met" / "not met", or "inconclusive" when the decision flips inside the 95% interval."""
    met = _met(value, op, threshold)
    if ci is not None and all(np.isfinite(ci)):
        if {_met(ci[0], op, threshold), _met(ci[1], op, threshold), met} != {met}:
            return "inconclusive"
    return "met" if met else "not met"


RANK = {"not met": 0, "inconclusive": 1, "met": 2}


def passes_bar(judges: list[dict[str, Any]], *, n_per_stage: int, pixel_ratio_min: float,
               quick: bool = False) -> dict[str, Any]:
    """Each criterion with its value, 95% interval, threshold and status, over the judges.

    A criterion is "not met" if any competent judge puts it conclusively short, else "inconclusive" if
    its decision flips inside any judge's interval, else "met"; the value shown is the deciding judge's.
    The verdict: "no verdict" when a judge is below its competence gate (the figures are still given, the
    judge marked "below gate", but every status is "–": they decide nothing); otherwise "not met" if any
    criterion is not met, "inconclusive" if none is not met but one is inconclusive, else "met". ``quick``
    (a smoke check): never a verdict."""
    competent = [j for j in judges if j["competent"]]
    failed = [j for j in judges if not j["competent"]]
    counted = competent or judges
    decides = bool(competent) and not failed and not quick
    criteria = []
    for name, (op, threshold) in BAR.items():
        if name == "n_per_stage":
            value, ci, by = float(n_per_stage), None, "-"
            status = "met" if _met(value, op, threshold) else "not met"
        elif counted:
            rows = []
            for j in counted:
                v = _criteria(j, pixel_ratio_min)[name]
                ci = _intervals(j).get(name)
                rows.append((RANK[_status(v, ci, op, threshold)], -v if op == "<" else v, v, ci,
                             j["judge"] + ("" if j["competent"] else " (below gate)")))
            known = [r for r in rows if r[2] == r[2]] or rows
            rank, _, value, ci, by = min(known, key=lambda r: (r[0], r[1]))
            status = next(k for k, v in RANK.items() if v == rank)
        else:
            value, ci, by, status = float("nan"), None, "-", "not met"
        criteria.append({"name": name, "what": WHAT[name], "value": float(value), "ci": ci, "op": op,
                         "threshold": threshold, "status": status if decides else "–",
                         "met": bool(decides and status == "met"), "judge": by})
    statuses = [c["status"] for c in criteria]
    all_met = decides and all(st == "met" for st in statuses)
    if quick:
        verdict, reason = "no verdict", "--quick is a smoke check with small samples and briefly trained judges: never a verdict"
    elif failed:
        verdict = "no verdict"
        reason = "; ".join(f"judge {j['judge']} is below its competence gate (held-out balanced accuracy "
                           f"{j['held_out']['balanced_accuracy']:.3f} < {j['gate']:.2f})" for j in failed)
    elif not competent:
        verdict, reason = "no verdict", "no judge"
    elif "not met" in statuses:
        verdict, reason = "not met", "a criterion is short of its threshold beyond its 95% interval (worse judge)"
    elif "inconclusive" in statuses:
        verdict, reason = "inconclusive", "no criterion is conclusively short, but one flips inside its 95% interval"
    else:
        verdict, reason = "met", "every criterion met by every competent judge, beyond its 95% interval"
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
