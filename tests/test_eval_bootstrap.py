"""Bootstrap intervals over held-out subjects (cgan.train.eval.bootstrap) on a simulated judge whose
accuracy varies from subject to subject: the 95% interval covers the true accuracy about 95% of the
time when subjects are resampled, and too rarely when the slices of one subject are taken as independent."""

import numpy as np

from cgan.train.eval import bootstrap as bs

K, SUBJECTS, SLICES = 4, 64, 4
TRUE = (0.9, 0.8, 0.7, 0.85)  # population accuracy per stage


def _simulated_judge(rng: np.random.Generator):
    """Per image: right or wrong, stage, subject. Each subject has its own accuracy, Beta around the stage's."""
    ok, stages, groups = [], [], []
    for s, mean in enumerate(TRUE):
        conc = 2.0  # low concentration: subjects differ a lot, slices of one subject agree
        p = rng.beta(mean * conc, (1 - mean) * conc, size=SUBJECTS)
        for i, pi in enumerate(p):
            ok += list(rng.random(SLICES) < pi)
            stages += [s] * SLICES
            groups += [f"{s}-{i}"] * SLICES
    return np.asarray(ok, dtype=np.float64), np.asarray(stages), np.asarray(groups, dtype=object)


def _coverage(by_subject: bool, trials: int = 150) -> tuple[float, float]:
    rng = np.random.default_rng(7)
    stage_hits, bal_hits = 0, 0
    for t in range(trials):
        ok, stages, groups = _simulated_judge(rng)
        reps = bs.per_stage_replicates(ok, stages, K, groups if by_subject else None, replicates=400, seed=t)
        lo, hi = bs.interval(reps[:, 1])
        stage_hits += lo <= TRUE[1] <= hi
        lo, hi = bs.interval(reps.mean(axis=1))
        bal_hits += lo <= np.mean(TRUE) <= hi
    return stage_hits / trials, bal_hits / trials


def test_intervals_by_subject_cover_the_truth_at_about_the_stated_rate():
    stage, balanced = _coverage(by_subject=True)
    assert 0.88 <= stage <= 0.99, stage
    assert 0.88 <= balanced <= 0.99, balanced


def test_intervals_by_image_are_too_narrow_when_slices_of_a_subject_agree():
    stage, balanced = _coverage(by_subject=False)
    assert stage < 0.85 and balanced < 0.85, (stage, balanced)


def test_weights_resample_whole_groups():
    groups = np.array(["a", "a", "b", "c", "c", "c"], dtype=object)
    w = bs.weights(groups, 6, 50, np.random.default_rng(0))
    assert w.shape == (50, 6)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 3] == w[:, 5])  # one draw per subject
    assert np.all(w.reshape(50, 6)[:, [0, 2, 3]].sum(axis=1) == 3)  # three subjects drawn per replicate
