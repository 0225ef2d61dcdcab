"""The synthetic set is learnable, but not trivially: the reference classifier, held out by subject."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from cgan.runtime.contract import OASIS_FOLDERS  # noqa: E402
from cgan.train import synth  # noqa: E402
from cgan.train.classifier import ClassifierConfig, accuracy_summary, confusion, train_classifier  # noqa: E402
from cgan.train.data import ImageSet  # noqa: E402


def subject_split(stages: np.ndarray, subjects: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of the held-out images: ``fraction`` of every stage's subjects, all their slices."""
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for s in np.unique(stages):
        pool = np.unique(subjects[stages == s])
        held += rng.choice(pool, max(1, round(fraction * len(pool))), replace=False).tolist()
    return np.isin(subjects, held)


@pytest.mark.slow
def test_reference_classifier_with_a_subject_split_is_good_but_not_perfect():
    n, seed = 1600, 21
    images, stages = synth.render_set(n, seed=seed, img_size=64)
    subjects = synth.set_plan(n, seed).subject
    held = subject_split(stages, subjects, 0.25, seed=0)
    assert not set(subjects[held]) & set(subjects[~held])  # no subject on both sides
    train = ImageSet(images=images[~held], labels=stages[~held], class_names=list(OASIS_FOLDERS),
                     description="synthetic set, training subjects (test)")
    clf = train_classifier(train, ClassifierConfig(input_size=64, epochs=5, holdout=0.1), device="cpu",
                           log=lambda _m: None)
    summary = accuracy_summary(confusion(stages[held], clf.predict(images[held]), 4))
    # the band is roughly 80-95% (reached on the 8,000-image set); this small set (1,200 training
    # images, a few Moderate subjects) and short run sit a little lower: measured 0.75 (balanced 0.48)
    assert 0.70 <= summary["accuracy"] <= 0.97, summary
    assert summary["balanced_accuracy"] > 0.4, summary  # chance is 0.25
