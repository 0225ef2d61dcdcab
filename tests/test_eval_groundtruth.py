"""The checks that need no judge, on real synthetic images of known severity (a tiny judge set at 64 px):
the severity estimator recovers known severities within its reported error and puts a stage-shuffled
generator out of order; the implausible-anatomy rate is near zero on real images and high on images
with pasted blobs, holes and torn specks. Also: the judge set shares no subject with the generator's set."""

from __future__ import annotations

import numpy as np
import pytest

from cgan.train.eval.artefacts import artefact_check, corrupt, flags, scores, thresholds
from cgan.train.eval.judge_set import FIRST_SUBJECT, HOLDOUT, JudgeSetSpec, files, load_judge_set, plan
from cgan.train.eval.severity import SeverityEstimator, severity_check
from cgan.train.eval.splits import make_split, split_image_set, subject_ids

K = 4


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """A tiny judge set (own seed): 4 stages x 24 subjects x 2 slices at 64 px, with each image's severity."""
    spec = JudgeSetSpec(subjects_per_stage=24, slices=2, img_size=64)
    return load_judge_set(spec, cache_dir=tmp_path_factory.mktemp("cache"), log=lambda _m: None, workers=1)


def test_the_judge_set_is_balanced_and_shares_no_subject_with_the_generators_set():
    from cgan.train.data import DEFAULT_SYNTH_N, DEFAULT_SYNTH_SEED
    from cgan.train.synth import make_subject, set_files, set_plan

    spec = JudgeSetSpec()
    p = plan(spec)
    assert np.bincount(p.stage).tolist() == [spec.subjects_per_stage * spec.slices] * K
    names = files(spec, p)
    groups, _ = subject_ids(names)
    gen_groups, _ = subject_ids(set_files(DEFAULT_SYNTH_N, DEFAULT_SYNTH_SEED))
    assert set(groups).isdisjoint(set(gen_groups))
    # not only the names: the subjects' anatomy is drawn from another seed
    assert spec.seed != DEFAULT_SYNTH_SEED
    gen_plan = set_plan(DEFAULT_SYNTH_N, DEFAULT_SYNTH_SEED)
    gen_sev = {round(make_subject(DEFAULT_SYNTH_SEED, int(n), int(s), 8)[0].severity, 9)
               for n, s in zip(gen_plan.subject[::8], gen_plan.stage[::8])}
    ours = {round(make_subject(spec.seed, int(n), int(s), spec.slices)[0].severity, 9)
            for n, s in zip(p.subject[:: spec.slices][:200], p.stage[:: spec.slices][:200])}
    assert ours.isdisjoint(gen_sev)
    # at least 60 subjects of every stage held out, none of them on the training side
    split = make_split(p.stage, groups, holdout=HOLDOUT, seed=0)
    held = [len(set(groups[split.held][p.stage[split.held] == s])) for s in range(K)]
    assert min(held) >= 60
    assert set(groups[split.held]).isdisjoint(set(groups[split.train]))
    assert p.subject.min() == FIRST_SUBJECT


def test_severity_estimate_recovers_known_severities_within_its_reported_error(known):
    split = split_image_set(known, holdout=0.34, seed=0)
    report = severity_check(known, split, [np.asarray(known.images[split.held][known.labels[split.held] == s])
                                           for s in range(K)], log=lambda _m: None)
    rmse = report["real_error"]["rmse"]
    assert 0 < rmse < 1.5  # per image, in stage spacings: a usable estimate, and an honest non-zero error
    # fresh subjects (another seed): their error is what was reported, and every stage's median is recovered
    fresh = load_judge_set(JudgeSetSpec(subjects_per_stage=12, slices=2, img_size=64, seed=77),
                           cache_dir=known.cache_path.parent.parent.parent, log=lambda _m: None, workers=1)
    est = SeverityEstimator.fit(np.asarray(known.images[split.fit]), known.severity[split.fit],
                                calibrate=(np.asarray(known.images[split.val]), known.severity[split.val]))
    pred = est.predict(np.asarray(fresh.images))
    spacing = report["spacing"]
    err = (pred - fresh.severity) / spacing
    assert np.sqrt(np.mean(err**2)) < 1.6 * rmse
    for s in range(K):
        at = fresh.labels == s
        assert abs(np.median(pred[at]) - np.median(fresh.severity[at])) / spacing < rmse
    # real images of each stage as the "generator": in order, offsets within the error
    assert report["in_order"] and report["real_in_order"]
    assert max(abs(v) for v in report["median_offset"]) < 1e-9


def test_a_stage_shuffled_generator_comes_out_of_order(known):
    split = split_image_set(known, holdout=0.34, seed=0)
    perm = [2, 0, 3, 1]
    gen = [np.asarray(known.images[split.held][known.labels[split.held] == perm[s]]) for s in range(K)]
    report = severity_check(known, split, gen, log=lambda _m: None)
    assert not report["in_order"] and report["real_in_order"]
    assert max(abs(v) for v in report["median_offset"]) > 0.5  # far from its stage


def test_artefact_rate_is_near_zero_on_real_images_and_high_on_corrupted_ones(known):
    images = np.asarray(known.images)
    ref, held = images[::2], images[1::2]
    limits = thresholds(scores(ref))
    assert flags(scores(held), limits).mean() <= 0.03
    bad = corrupt(held, seed=3)
    flagged = flags(scores(bad), limits)
    assert flagged.mean() >= 0.8
    for kind in range(3):  # blobs, holes and torn specks each
        assert flagged[kind::3].mean() >= 0.7, kind


def test_artefact_section_reports_generated_real_and_corrupted_rates(known):
    images, labels = np.asarray(known.images), known.labels
    per_stage = [images[labels == s] for s in range(K)]
    blobs = [corrupt(x, seed=1)[::3] for x in per_stage]  # every image with a pasted blob
    section, shown = artefact_check(blobs, [x[1::2] for x in per_stage], ["a", "b", "c", "d"],
                                    reference=[x[::2] for x in per_stage])
    assert min(section["per_stage"]["generated"]) >= 0.9 and section["rate"]["real_held_out"] <= 0.05
    assert section["rate"]["corrupted_real"] >= 0.7
    assert 0 < len(shown) <= 16
