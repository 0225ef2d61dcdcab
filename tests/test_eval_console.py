"""What cgan-eval prints: tables and prose that fit a 100-column terminal, and the figures said in plain words
(whether the judges could judge at all, what they read, the verdict); report.md keeps the full tables."""

from __future__ import annotations

import pytest

from cgan.train.eval.report import CONSOLE_COLUMNS, summary
from cgan.train.eval.verdict import passes_bar

NAMES = ["Non-demented", "Very mild", "Mild", "Moderate"]


def _judge(name: str, *, competent: bool, held: float, cond: float) -> dict:
    per_stage = [{"generated": {"precision": 0.61, "recall": 0.55}, "baseline": {"precision": 0.8, "recall": 0.8}}] * 4
    return {
        "judge": name, "competent": competent, "gate": 0.70,
        "held_out": {"balanced_accuracy": held, "per_class": [held] * 4},
        "conditional_accuracy": {"overall": cond, "per_stage": [cond] * 4, "per_stage_ci": [[cond - 0.05, cond + 0.05]] * 4},
        "frechet": {"overall": {"ratio": 3.25}, "per_stage": [{"ratio": 3.1, "generated": 31.0, "baseline": 10.0, "m": 64}] * 4},
        "kid": {"overall": 0.0123, "baseline": 0.001,
                "per_stage": [{"generated": {"kid": 0.012, "se": 0.001}, "baseline": {"kid": 0.001, "se": 0.0005}}] * 4},
        "precision_recall": {"per_stage": per_stage, "precision": 0.61, "recall": 0.55, "baseline_precision": 0.8,
                             "baseline_recall": 0.8, "precision_ci": [[0.5, 0.7]] * 4, "recall_ci": [[0.45, 0.65]] * 4},
        "diversity": {"ratio": [0.93] * 4},
        "calibration": [{"kind": "blur", "amount": 1.0, "kid": 0.004, "fd_ratio": 2.5}],
    }


def _report(*, competent: bool, quick: bool = False) -> dict:
    judges = [_judge("small (64 px)", competent=competent, held=0.82 if competent else 0.41, cond=0.66),
              _judge("deep (128 px)", competent=competent, held=0.85 if competent else 0.38, cond=0.62)]
    return {"model": {"stage_names": NAMES}, "judges": judges, "settings": {"quick": quick},
            "passes_bar": passes_bar(judges, n_per_stage=64 if quick else 256, pixel_ratio_min=0.9, quick=quick),
            "disagreement": {"flag": False}, "pixel_diversity": {"ratio": [0.9] * 4}}


@pytest.mark.parametrize("competent", [True, False])
def test_the_printed_summary_fits_100_columns_and_ends_in_plain_words(competent):
    text = summary(_report(competent=competent))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= CONSOLE_COLUMNS, max(lines, key=len)
    short = text[text.index("in short:"):]
    assert "Verdict: " in short and "report.md" in short
    if competent:
        assert "Judge small (64 px) reads 66% of the generated images as the stage they were asked for" in " ".join(short.split())
    else:
        words = " ".join(short.split())
        assert "No judge passed its competence gate" in words and "0.41 and 0.38" in words
        assert "the judges' shortfall, not the images'" in words


def test_quick_says_it_is_a_smoke_check():
    words = " ".join(summary(_report(competent=False, quick=True)).split())
    assert "--quick is a smoke check of the chain" in words


def test_the_samples_figure_labels_stay_readable_at_page_width(tmp_path):
    """samples.png (and the README's figure made from it) is ~2,400 px wide and shown at ~800: its stage labels
    must be at least 1/100 of its width tall, about 8 screen pixels there (the bitmap font was 1/220)."""
    import numpy as np
    from PIL import Image

    from cgan.train.eval.report import write_figure

    tiles = [np.full((8, 128, 128), 128, np.uint8) for _ in NAMES]
    path = write_figure(tmp_path / "samples.png", tiles, tiles, NAMES)
    img = np.asarray(Image.open(path))
    first_tile = int(np.flatnonzero(img[img.shape[0] // 2] == 128)[0])  # where the grey tiles start
    rows = np.flatnonzero((img[:, :first_tile] < 100).any(axis=1))  # the stage labels' ink, left of the tiles
    label_h = rows[rows < rows.min() + 100]  # the first label (the next one is a 130-px row further down)
    assert label_h.max() - label_h.min() + 1 >= img.shape[1] / 100, (label_h.max() - label_h.min() + 1, img.shape)
