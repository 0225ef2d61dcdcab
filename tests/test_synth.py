"""The synthetic OASIS-like set: determinism, layout, stage proportions, monotone atrophy, cgan-data synth."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cgan.runtime.contract import OASIS_COUNTS, OASIS_FOLDERS
from cgan.runtime.errors import CganError
from cgan.train import synth
from cgan.train.data_cli import app

from conftest import run_script


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    a = synth.make_synthetic_set(tmp_path / "a", n=24, seed=7, img_size=32, log=lambda s: None)
    b = synth.make_synthetic_set(tmp_path / "b", n=24, seed=7, img_size=32, log=lambda s: None)
    c = synth.make_synthetic_set(tmp_path / "c", n=24, seed=8, img_size=32, log=lambda s: None)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert len(da) == 25  # 24 images + labels.csv
    assert da == db
    # a different seed: different images (file names carry the seed, so compare the pixel bytes)
    pix = lambda d: sorted(v for k, v in d.items() if k.endswith(".png"))  # noqa: E731
    assert not set(pix(da)) & set(pix(dc))


@pytest.mark.slow
def test_output_independent_of_worker_count(tmp_path):
    n = synth.POOL_MIN  # the smallest set that uses worker processes
    one = synth.make_synthetic_set(tmp_path / "one", n=n, seed=3, img_size=16, workers=1, log=lambda s: None)
    two = synth.make_synthetic_set(tmp_path / "two", n=n, seed=3, img_size=16, workers=2, log=lambda s: None)
    assert _digest(one) == _digest(two)
    images, labels = synth.render_set(n, seed=3, img_size=16, workers=2)
    first = np.asarray(Image.open(one / synth.image_relpath(int(labels[0]), 3, 0)))
    np.testing.assert_array_equal(images[0], first)


def test_layout_labels_and_proportions(tmp_path):
    out = synth.make_synthetic_set(tmp_path / "set", n=200, seed=1, img_size=32, log=lambda s: None)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(OASIS_FOLDERS)
    rows = synth.read_labels(out / synth.LABELS_CSV)
    assert len(rows) == 200
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
    # the parameters in labels.csv regenerate the images exactly
    row = rows[5]
    k = int(Path(row["path"]).stem.split("_")[-1])
    img, params = synth.synth_image(1, k, row["stage"], 32)
    assert params.ventricle_scale == pytest.approx(row["ventricle_scale"], rel=1e-5)
    np.testing.assert_array_equal(np.asarray(Image.open(out / row["path"])), img)


def test_stage_counts_follow_oasis_with_floor():
    share = np.asarray(OASIS_COUNTS, dtype=float) / sum(OASIS_COUNTS)
    for n in (4, 10, 57, 1000, 8000, 100_000):
        counts = synth.stage_counts(n)
        assert counts.sum() == n and len(counts) == 4
        floor = max(int(np.ceil(0.02 * n)), min(32, n // 4))
        assert counts.min() >= floor
        assert all(counts[0] >= c for c in counts[1:])
    big = synth.stage_counts(100_000)
    # stages above the floor keep the OASIS share; only the rarest is lifted (0.56% -> 2%)
    assert abs(big[1] - share[1] * 100_000) <= 1 and abs(big[2] - share[2] * 100_000) <= 1
    assert big[3] == 2000
    with pytest.raises(CganError):
        synth.stage_counts(3)


def _by_stage(values, stages):
    return [float(np.mean(values[stages == s])) for s in range(4)]


def test_ground_truth_atrophy_is_monotone_in_stage():
    rng = np.random.default_rng(0)
    params = [synth.sample_params(s, rng) for s in range(4) for _ in range(300)]
    stages = np.array([p.stage for p in params])
    for name, sign in (("severity", 1), ("ventricle_scale", 1), ("sulcal_width", 1), ("csf_gap", 1),
                       ("cortical_thickness", -1)):
        means = np.array(_by_stage(np.array([getattr(p, name) for p in params]), stages))
        assert np.all(np.diff(means) * sign > 0), (name, means)
    # each marker alone overlaps between neighbouring stages (individual anatomy), so the task is not
    # trivial; the extreme stages do not overlap in ventricle size
    for name in ("ventricle_scale", "sulcal_width"):
        v = np.array([getattr(p, name) for p in params])
        assert all(v[stages == s].max() > v[stages == s + 1].min() for s in range(3)), name
    vent = np.array([p.ventricle_scale for p in params])
    assert vent[stages == 0].max() < vent[stages == 3].min()
    with pytest.raises(ValueError):
        synth.sample_params(4, rng)


def test_estimate_markers_monotone_on_rendered_images():
    imgs, stages = [], []
    for s in range(4):
        for k in range(30):
            imgs.append(synth.synth_image(11, 1000 * s + k, s, 64)[0])
            stages.append(s)
    images, stages = np.stack(imgs), np.array(stages)
    markers = synth.estimate_markers(images)
    assert set(markers) == set(synth.MARKER_NAMES)
    assert all(v.shape == (120,) and np.isfinite(v).all() for v in markers.values())
    assert np.all(np.diff(_by_stage(markers["ventricle_fraction"], stages)) > 0)
    assert np.all(np.diff(_by_stage(markers["sulcal_fraction"], stages)) > 0)
    assert np.all(np.diff(_by_stage(markers["brain_fraction"], stages)) < 0)
    # per image, the measured ventricle fraction tracks the ground-truth ventricle scale
    truth = [synth.synth_image(11, 1000 * s + k, s, 64)[1].ventricle_scale for s in range(4) for k in range(30)]
    assert np.corrcoef(truth, markers["ventricle_fraction"])[0, 1] > 0.8
    # [N, 1, H, W] input (generator output layout) gives the same numbers
    again = synth.estimate_markers(images[:, None])
    np.testing.assert_allclose(again["sulcal_fraction"], markers["sulcal_fraction"])


def test_render_shape_noise_and_sizes():
    params = synth.sample_params(2, np.random.default_rng(5))
    a = synth.render(params, 64, np.random.default_rng(1))
    b = synth.render(params, 64, np.random.default_rng(2))
    assert a.shape == (64, 64) and a.dtype == np.uint8
    # the rng draws only noise: same anatomy, different noise
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() > 0 and diff.mean() < 12
    # a dark background, a bright head in the middle
    assert a[:3, :3].mean() < 40 and a[28:36, 16:24].mean() > 80
    assert synth.render(params, 128, np.random.default_rng(1)).shape == (128, 128)


def test_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(CganError, match="not empty"):
        synth.make_synthetic_set(out, n=8, seed=0, img_size=16, log=lambda s: None)
    assert (out / "keep.txt").exists()
    synth.make_synthetic_set(out, n=8, seed=0, img_size=16, log=lambda s: None, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / synth.LABELS_CSV).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_cli_synth_and_bad_input(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["synth", "--out", str(out), "--n", "12", "--seed", "4", "--img-size", "32"])
    assert result.exit_code == 0, result.output
    assert "wrote synthetic OASIS-like set" in result.output
    assert len(list(out.rglob("*.png"))) == 12
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
