"""The learning curve's one sentence (cgan.train.eval.augment.curve_sentence): what it counts and how it reads."""

from cgan.train.eval.augment import curve_sentence

NAMES = ["Non-demented", "Very mild", "Mild", "Moderate"]


def _row(fraction, ba, ba_sd, rr, rr_sd):
    return {"fraction": fraction, "balanced_accuracy_mean": ba, "balanced_accuracy_sd": ba_sd,
            "rare_recall_mean": rr, "rare_recall_sd": rr_sd}


def _aug(a_rows, b_rows, repeats=3):
    return {"settings": {"repeats": repeats, "rare_stage": 3},
            "per_judge": [{"judge": "small (64 px)", "curve": {"a": a_rows, "b": b_rows},
                           "c": {"balanced_accuracy_mean": 0.57}}]}


def test_sentence_names_where_generated_images_help_and_hurt_beyond_two_standard_errors():
    a = [_row(0.1, 0.70, 0.01, 0.60, 0.01), _row(1.0, 0.80, 0.01, 0.90, 0.01)]
    # 10%: +0.10 balanced accuracy (about 12 se), recall +0.001 (no clear difference); 100%: -0.05 (6 se)
    b = [_row(0.1, 0.80, 0.01, 0.601, 0.01), _row(1.0, 0.75, 0.01, 0.90, 0.01)]
    text = curve_sentence(_aug(a, b), NAMES)
    assert "they help balanced accuracy at 10% (+0.100)" in text
    assert "they hurt balanced accuracy at 100% (-0.050)" in text
    assert "Moderate recall" not in text
    assert "helps" not in text and "hurts" not in text  # plural subject: "they help", "they hurt"
    assert "generated images alone, balanced accuracy 0.570" in text


def test_sentence_says_so_when_no_difference_is_beyond_two_standard_errors():
    a = [_row(0.5, 0.70, 0.05, 0.60, 0.05)]
    b = [_row(0.5, 0.72, 0.05, 0.58, 0.05)]  # 2 points against a standard error of about 4
    assert "no difference beyond two standard errors at any fraction" in curve_sentence(_aug(a, b), NAMES)
    # one repeat has no spread to read a difference against
    b = [_row(0.5, 0.90, 0.0, 0.90, 0.0)]
    assert "no difference beyond" in curve_sentence(_aug(a, b, repeats=1), NAMES)
