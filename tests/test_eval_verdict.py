"""The bar (cgan.train.eval.verdict): figures read against the judge's own held-out accuracy and the
1-px-blur calibration row, the worse judge counting, and no verdict from a judge below its gate."""

from cgan.train.eval.verdict import BAR, passes_bar, rare_stage_recall


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


def test_rare_stage_recall_takes_the_stage_with_fewest_training_images():
    arms = {"a": {"recall_mean": [0.9, 0.8, 0.7, 0.4], "balanced_accuracy_mean": 0.7},
            "b": {"recall_mean": [0.9, 0.8, 0.7, 0.6], "balanced_accuracy_mean": 0.75}}
    rows = rare_stage_recall({"per_judge": [{"judge": "small", "arms": arms}]}, [4000, 800, 300, 100])
    assert rows == [{"judge": "small", "stage": 3, "recall_a": 0.4, "recall_b": 0.6, "balanced_a": 0.7, "balanced_b": 0.75}]
