"""The bar (cgan.train.eval.verdict): figures read against the judge's own held-out accuracy and the
1-px-blur calibration row, the worse judge counting, no verdict from a judge below its gate (its criteria
shown "–", never ticked), and "inconclusive" where a decision flips inside its 95% interval."""

import numpy as np

from cgan.train.eval.report import bar_lines
from cgan.train.eval.verdict import BAR, passes_bar


def _judge(name, *, held=0.8, cond=0.76, stage=(0.9, 0.8, 0.75, 0.72), prec=0.6, rec=0.55, kid=3.0, fd=2.0,
           blur_kid=4.0, blur_fd=2.5, competent=True):
    return {
        "judge": name, "competent": competent, "gate": 0.8,
        "held_out": {"balanced_accuracy": held, "per_class": [held] * 4},
        "conditional_accuracy": {"overall": cond, "per_stage": list(stage)},
        "precision_recall": {"per_stage": [{"generated": {"precision": prec, "recall": rec}}] * 4},
        "kid": {"overall": kid},
        "frechet": {"overall": {"ratio": fd}},
        "diversity": {"ratio": [0.9] * 4},
        "calibration": [{"kind": "blur", "amount": 0.5, "kid": 1.0, "fd_ratio": 1.0},
                        {"kind": "blur", "amount": 1.0, "kid": blur_kid, "fd_ratio": blur_fd}],
    }


def _by_name(bar):
    return {c["name"]: c for c in bar["criteria"]}


def test_a_generator_inside_every_limit_meets_the_bar():
    bar = passes_bar([_judge("small"), _judge("deep")], n_per_stage=256, pixel_ratio_min=0.9)
    assert bar["verdict"] == "met" and bar["all_met"]
    c = _by_name(bar)
    assert set(c) == set(BAR)
    assert abs(c["conditional_accuracy_relative"]["value"] - 0.76 / 0.8) < 1e-12
    assert abs(c["kid_over_blur1"]["value"] - 0.75) < 1e-12 and abs(c["fd_over_blur1"]["value"] - 0.8) < 1e-12


def test_each_limit_fails_on_its_own_and_the_worse_judge_counts():
    cases = {
        "conditional_accuracy_relative": dict(cond=0.70),  # 0.875 of the judge's own 0.8
        "conditional_accuracy_min_stage": dict(stage=(0.9, 0.8, 0.75, 0.69)),
        "precision_min_stage": dict(prec=0.49),
        "recall_min_stage": dict(rec=0.49),
        "kid_over_blur1": dict(kid=4.0),  # equal to the blur row is not below it
        "fd_over_blur1": dict(fd=2.6),
    }
    for name, bad in cases.items():
        bar = passes_bar([_judge("small"), _judge("deep", **bad)], n_per_stage=256, pixel_ratio_min=0.9)
        c = _by_name(bar)
        assert bar["verdict"] == "not met", name
        assert [k for k, v in c.items() if not v["met"]] == [name]
        assert c[name]["judge"] == "deep"


def test_a_judge_below_its_gate_gives_no_verdict_but_its_figures_are_shown():
    bar = passes_bar([_judge("small", competent=False), _judge("deep", competent=False, cond=0.5)],
                     n_per_stage=256, pixel_ratio_min=0.9)
    assert bar["verdict"] == "no verdict" and not bar["all_met"] and bar["judges_counted"] == []
    c = _by_name(bar)
    assert c["conditional_accuracy_relative"]["judge"] == "deep (below gate)"
    assert abs(c["conditional_accuracy_relative"]["value"] - 0.5 / 0.8) < 1e-12


def test_criteria_of_a_judge_below_its_gate_are_never_ticked():
    judges = [_judge("small", competent=False), _judge("deep", competent=False)]  # figures inside every limit
    bar = passes_bar(judges, n_per_stage=256, pixel_ratio_min=0.9)
    assert bar["verdict"] == "no verdict"
    assert all(c["status"] == "–" and not c["met"] for c in bar["criteria"])
    lines = bar_lines({"passes_bar": bar, "disagreement": {"flag": False}})
    assert not any(line.startswith("- [x]") for line in lines)
    assert sum(line.startswith("- [–]") for line in lines) == len(BAR)


def _reps(held=0.8, cond=0.76, spread=0.0, k=4, b=1000, seed=0):
    """Bootstrap replicates as cgan.train.eval.figures keeps them: normal around the figures, sd ``spread``."""
    rng = np.random.default_rng(seed)
    noise = lambda center: center + spread * rng.standard_normal((b, k))  # noqa: E731
    return {"held_per_class": noise(held), "conditional_accuracy": noise(0.9), "conditional_overall": noise(cond)[:, 0],
            "precision": noise(0.6), "recall": noise(0.55)}


def test_a_decision_that_flips_inside_its_interval_is_inconclusive_and_so_is_the_verdict():
    # conditional accuracy 0.73 / 0.8 = 0.9125: just above 0.9, but its interval reaches below
    tight = [dict(_judge(name, cond=0.73), _reps=_reps(cond=0.73, spread=0.001)) for name in ("small", "deep")]
    wide = [dict(_judge(name, cond=0.73), _reps=_reps(cond=0.73, spread=0.03)) for name in ("small", "deep")]
    assert passes_bar(tight, n_per_stage=256, pixel_ratio_min=0.9)["verdict"] == "met"
    bar = passes_bar(wide, n_per_stage=256, pixel_ratio_min=0.9)
    c = _by_name(bar)["conditional_accuracy_relative"]
    assert c["status"] == "inconclusive" and not c["met"] and c["ci"][0] < 0.9 < c["ci"][1]
    assert bar["verdict"] == "inconclusive"
    assert any(line.startswith("- [?] conditional_accuracy_relative") for line in
               bar_lines({"passes_bar": bar, "disagreement": {"flag": False}}))
    # a criterion conclusively short decides: not met, whatever else is inconclusive
    short = [dict(_judge(name, cond=0.73, prec=0.3), _reps=_reps(cond=0.73, spread=0.03)) for name in ("small", "deep")]
    for j in short:
        j["_reps"]["precision"] = j["_reps"]["precision"] * 0 + 0.3
    assert passes_bar(short, n_per_stage=256, pixel_ratio_min=0.9)["verdict"] == "not met"


def test_quick_never_gives_a_verdict():
    bar = passes_bar([_judge("small"), _judge("deep")], n_per_stage=256, pixel_ratio_min=0.9, quick=True)
    assert bar["verdict"] == "no verdict" and "never a verdict" in bar["reason"] and not bar["all_met"]
