"""The synthetic OASIS-like set built from the MNI template: determinism, subjects, layout, proportions,
monotone atrophy, stage overlap, one-to-one deformations, cgan-data synth."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cgan.runtime.contract import OASIS_COUNTS, OASIS_FOLDERS
from cgan.runtime.errors import CganError
from cgan.train import synth
from cgan.train.synth import anatomy as synth_anatomy
from cgan.train.synth import subject as synth_subject
from cgan.train.data_cli import app

from conftest import run_script


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _quiet(msg: str) -> None:
    pass


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    a = synth.make_synthetic_set(tmp_path / "a", n=24, seed=7, img_size=32, log=_quiet)
    b = synth.make_synthetic_set(tmp_path / "b", n=24, seed=7, img_size=32, log=_quiet)
    c = synth.make_synthetic_set(tmp_path / "c", n=24, seed=8, img_size=32, log=_quiet)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert len(da) == 26  # 24 images + labels.csv + README.md
    assert da == db
    pix = lambda d: sorted(v for k, v in d.items() if k.endswith(".png"))  # noqa: E731
    assert not set(pix(da)) & set(pix(dc))


@pytest.mark.slow
def test_output_independent_of_worker_count(tmp_path):
    n = synth.POOL_MIN  # the smallest set that uses worker processes
    one = synth.make_synthetic_set(tmp_path / "one", n=n, seed=3, img_size=16, workers=1, log=_quiet)
    two = synth.make_synthetic_set(tmp_path / "two", n=n, seed=3, img_size=16, workers=2, log=_quiet)
    assert _digest(one) == _digest(two)
    images, labels = synth.render_set(n, seed=3, img_size=16, workers=2)
    first = synth.read_labels(one / synth.LABELS_CSV)[0]
    assert first["index"] == 0 and first["stage"] == labels[0]
    np.testing.assert_array_equal(images[0], np.asarray(Image.open(one / first["path"])))


def test_layout_labels_readme_and_proportions(tmp_path):
    out = synth.make_synthetic_set(tmp_path / "set", n=200, seed=1, img_size=32, log=_quiet)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(OASIS_FOLDERS)
    rows = synth.read_labels(out / synth.LABELS_CSV)
    assert len(rows) == 200 and [r["index"] for r in rows] == list(range(200))
    assert list(rows[0]) == synth.LABEL_FIELDS
    for row in rows:
        path = out / row["path"]
        assert path.is_file()
        assert path.parent.name == OASIS_FOLDERS[row["stage"]]
        with Image.open(path) as im:
            assert im.mode == "L" and im.size == (32, 32)
    counts = np.bincount([r["stage"] for r in rows], minlength=4)
    # 200 * OASIS share would give the rarest stage 1 image; the floor lifts every stage to min(32, 200 // 4)
    assert counts.tolist() == synth.stage_counts(200).tolist()
    assert counts.min() >= 32 and counts[0] == counts.max()
    # a row's index regenerates its image and its row exactly
    row = rows[57]
    img, again = synth.synth_image(1, row["index"], 200, 32)
    np.testing.assert_array_equal(np.asarray(Image.open(out / row["path"])), img)
    assert again["path"] == row["path"] and again["severity"] == pytest.approx(row["severity"], rel=1e-5)
    assert again["ventricle_fraction"] == pytest.approx(row["ventricle_fraction"], rel=1e-5)
    readme = (out / synth.README_NAME).read_text()
    for needed in ("ICBM152 2009", "Fonov", "Collins", "Copyright (C) 1993-2009 Louis Collins", "OAS1_",
                   "never for", "labels.csv"):
        assert needed.lower() in readme.lower(), needed


def test_subjects_in_oasis_names(tmp_path):
    out = synth.make_synthetic_set(tmp_path / "set", n=150, seed=2, img_size=16, log=_quiet)
    rows = synth.read_labels(out / synth.LABELS_CSV)
    by_subject: dict[str, list[dict]] = {}
    for row in rows:
        name = Path(row["path"]).name
        assert synth.oasis_subject(name) == row["subject"], name  # the file name carries the subject
        assert name == f"{row['subject']}_MR1_mpr-1_{row['level']}.png"
        by_subject.setdefault(row["subject"], []).append(row)
    assert len(by_subject) < len(rows) / 4
    for subject, its in by_subject.items():
        assert len({r["stage"] for r in its}) == 1  # one stage and one severity per subject
        assert len({r["severity"] for r in its}) == 1
        levels = [r["level"] for r in its]
        assert len(set(levels)) == len(levels) >= 2  # several distinct slices
        assert all(synth_anatomy.LEVEL_MIN <= lv <= synth_anatomy.LEVEL_MAX for lv in levels)
    full = [its for its in by_subject.values() if len(its) == synth.SLICES_PER_SUBJECT]
    assert len(full) > len(by_subject) / 2
    # a full subject spans the range, from the temporal horns to above the ventricles
    levels = sorted(r["level"] for r in full[0])
    assert levels[0] < synth_anatomy.LEVEL_MIN + 8 and levels[-1] > synth_anatomy.LEVEL_MAX - 8
    assert synth.oasis_subject("OAS1_0042_MR1_mpr-1_100.jpg") == "OAS1_0042"
    assert synth.oasis_subject("synth_s0_000001.png") is None


def test_set_files_name_every_image_as_written_and_the_built_in_set_carries_them(tmp_path):
    """The built-in set (rendered straight into the cache) names its images as cgan-data synth writes
    them, so cgan-eval can split it by subject."""
    from cgan.train.data import _synthetic_set
    from cgan.train.eval.splits import split_image_set

    out = synth.make_synthetic_set(tmp_path / "set", n=150, seed=2, img_size=16, log=_quiet)
    assert synth.set_files(150, 2) == [r["path"] for r in synth.read_labels(out / synth.LABELS_CSV)]
    builtin = _synthetic_set(16, tmp_path / "cache", _quiet, n=150, seed=2)
    assert builtin.files == synth.set_files(150, 2)
    assert split_image_set(builtin).kind == "subject"


def test_set_plan_whole_subjects_and_seeded_order():
    plan = synth.set_plan(1000, 0)
    assert np.bincount(plan.stage, minlength=4).tolist() == synth.stage_counts(1000).tolist()
    for number in np.unique(plan.subject):
        idx = np.flatnonzero(plan.subject == number)
        assert np.all(np.diff(idx) == 1)  # a subject's images are consecutive
        assert len(set(plan.stage[idx].tolist())) == 1
        assert plan.slot[idx].tolist() == list(range(len(idx))) and set(plan.slices[idx].tolist()) == {len(idx)}
        assert 1 <= len(idx) <= synth.SLICES_PER_SUBJECT
    assert np.array_equal(plan.subject[:-1] <= plan.subject[1:], np.ones(999, bool))
    other = synth.set_plan(1000, 1)
    assert not np.array_equal(plan.stage, other.stage)  # stages are shuffled by subject with the seed
    single = synth.set_plan(1000, 0, 1)  # one slice per subject: independent images
    assert single.subjects == 1000 and set(single.slices.tolist()) == {1}
    with pytest.raises(CganError, match="at least 1"):
        synth.set_plan(10, 0, 0)


def test_stage_counts_follow_oasis_with_floor():
    share = np.asarray(OASIS_COUNTS, dtype=float) / sum(OASIS_COUNTS)
    for n in (4, 10, 57, 1000, 8000, 100_000):
        counts = synth.stage_counts(n)
        assert counts.sum() == n and len(counts) == 4
        floor = max(int(np.ceil(0.02 * n)), min(32, n // 4))
        assert counts.min() >= floor
        assert all(counts[0] >= c for c in counts[1:])
    big = synth.stage_counts(100_000)
    assert abs(big[1] - share[1] * 100_000) <= 1 and abs(big[2] - share[2] * 100_000) <= 1
    assert big[3] == 2000
    with pytest.raises(CganError):
        synth.stage_counts(3)


def test_severity_of_neighbouring_stages_overlaps():
    sev = {s: np.array([synth.make_subject(0, k, s, 8)[0].severity for k in range(1, 400)]) for s in range(4)}
    means = [sev[s].mean() for s in range(4)]
    assert np.all(np.diff(means) > 0.2)
    for s in range(3):  # neighbours overlap ...
        assert sev[s].max() > sev[s + 1].min(), s
        assert np.mean(sev[s] > np.percentile(sev[s + 1], 5)) > 0.005
    assert sev[0].max() < sev[3].min()  # ... the extremes do not


def _subject(severity: float) -> synth_subject.Subject:
    base = synth.make_subject(5, 3, 2, 8)[0]
    return replace(base, severity=severity, ventricle_base=0.0, cortex_base=0.0, mtl_base=0.0)


@pytest.mark.parametrize("level", [64, 80, 96])
def test_atrophy_is_monotone_in_severity_on_a_fixed_subject_and_slice(level):
    rows, images = [], []
    for sev in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25):
        img, info = synth_subject.render(_subject(sev), level, 64, np.random.default_rng(0))
        rows.append(info)
        images.append(img)
    for name, sign in (("ventricle_fraction", 1), ("sulcal_fraction", 1), ("brain_fraction", -1)):
        values = np.array([r[name] for r in rows])
        assert np.all(np.diff(values) * sign > 0), (name, values)
    # the image shows it: more dark pixels inside the brain as severity grows
    dark = [float(((im > 0) & (im < 60)).mean()) for im in images]
    assert dark[-1] > dark[0] * 1.3, dark


def test_markers_from_images_follow_the_stage():
    images, stages = synth.render_set(240, seed=11, img_size=64, workers=1)
    markers = synth.estimate_markers(images)
    assert set(markers) == set(synth.MARKER_NAMES)
    assert all(v.shape == (240,) and np.isfinite(v).all() for v in markers.values())
    means = lambda v: [float(np.mean(v[stages == s])) for s in range(4)]  # noqa: E731
    assert means(markers["ventricle_fraction"])[3] > means(markers["ventricle_fraction"])[0]
    assert means(markers["brain_fraction"])[3] < means(markers["brain_fraction"])[0]


def test_deformations_are_one_to_one():
    worst = _subject(1.0)
    worst = replace(worst, ventricle_base=0.4, head_scale=0.9)  # beyond the largest enlargement drawn
    assert worst.ventricle_mm == pytest.approx(1.4 * synth_subject.VENTRICLE_MM)
    for level in range(synth_anatomy.LEVEL_MIN, synth_anatomy.LEVEL_MAX + 1, 5):
        py, px, qy, qx = synth_subject.coordinates(worst, level, 64, 7.0, 3.0, -2.0)
        for y, x in ((py, px), (qy, qx)):
            yy, yx = np.gradient(y)
            xy, xx = np.gradient(x)
            det = yy * xx - yx * xy
            assert det.min() > 0, (level, float(det.min()))  # orientation kept everywhere: no folding


def test_render_looks_like_a_skull_stripped_slice():
    subj = synth.make_subject(0, 1, 0, 8)[0]
    a, _ = synth_subject.render(subj, 90, 64, np.random.default_rng(1))
    b, _ = synth_subject.render(subj, 90, 64, np.random.default_rng(2))
    assert a.shape == (64, 64) and a.dtype == np.uint8
    diff = np.abs(a.astype(int) - b.astype(int))  # the rng draws only noise and a small pose jitter
    assert diff.max() > 0 and np.median(diff) < 10
    # black background (masked, no skull, no noise outside the brain), a bright brain in the middle
    assert a[:4].max() == 0 and a[:, :3].max() == 0 and (a == 0).mean() > 0.2
    assert a[24:40, 24:40].mean() > 80
    # grey matter darker than white matter: the cortex ring against the deep white matter
    wm = synth_anatomy.level_maps(90)
    assert wm.t1.max() > 0.9 and subj.gm_level < subj.wm_level
    assert synth_subject.render(subj, 90, 128, np.random.default_rng(1))[0].shape == (128, 128)


def test_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(CganError, match="not empty"):
        synth.make_synthetic_set(out, n=8, seed=0, img_size=16, log=_quiet)
    assert (out / "keep.txt").exists()
    synth.make_synthetic_set(out, n=12, seed=0, img_size=16, log=_quiet, overwrite=True)
    first = set(synth.set_files(12, 0))
    synth.make_synthetic_set(out, n=8, seed=0, img_size=16, log=_quiet, overwrite=True)
    # the set's files are replaced, the user's file stays, and the older set's extra images are gone
    assert (out / "keep.txt").read_text() == "x" and (out / synth.LABELS_CSV).is_file()
    images = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert images == set(synth.set_files(8, 0)) and first - images
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cli_synth_and_bad_input(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["synth", "--out", str(out), "--n", "12", "--seed", "4", "--img-size", "32"])
    assert result.exit_code == 0, result.output
    assert "wrote synthetic OASIS-like set" in result.output and "images/s" in result.output
    assert len(list(out.rglob("*.png"))) == 12 and (out / "README.md").is_file()
    bad = runner.invoke(app, ["synth", "--out", str(tmp_path / "bad"), "--n", "0"])
    assert bad.exit_code == 1
    assert "error: --n must be at least 1" in bad.output
    assert "Traceback" not in bad.output
    assert not (tmp_path / "bad").exists()
    again = runner.invoke(app, ["synth", "--out", str(out), "--n", "12"])
    assert again.exit_code == 1 and "not empty" in again.output


def test_cli_entry_point_subprocess(tmp_path):
    result = run_script("cgan-data", "synth", "--out", str(tmp_path / "s"), "--n", "8", "--img-size", "16")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "s").rglob("*.png"))) == 8
    helps = run_script("cgan-data", "synth", "--help")
    assert helps.returncode == 0 and "research" in helps.stdout.lower()
