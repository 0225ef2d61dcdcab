"""Dataset reading: layouts, image formats, bad data, the on-disk cache, the default synthetic set, cgan-data scan."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cgan.runtime.contract import OASIS_FOLDERS
from cgan.train import synth
from cgan.train.data import DataError, ImageSet, default_cache_dir, find_layout, load_image_set
from cgan.train.data_cli import app


def _img(seed: int, size=(40, 30)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = size
    return (np.linspace(0, 200, w)[None, :] + rng.integers(0, 50, (h, w))).astype(np.uint8)


def _make(root: Path, folders, per_class=(3, 2, 2, 1), ext=".png") -> Path:
    for i, (folder, n) in enumerate(zip(folders, per_class)):
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            Image.fromarray(_img(10 * i + k)).save(d / f"img_{k}{ext}")
    return root


class Logs(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self)


def _load(data, tmp_path, **kw) -> tuple[ImageSet, Logs]:
    logs = Logs()
    kw.setdefault("img_size", 16)
    return load_image_set(data, cache_dir=tmp_path / "cache", log=logs, **kw), logs


# ---------------------------------------------------------------- layouts

def test_kaggle_layout_data_folder_and_parent(tmp_path):
    _make(tmp_path / "kaggle" / "Data", OASIS_FOLDERS)
    for data in (tmp_path / "kaggle", tmp_path / "kaggle" / "Data"):
        images, logs = _load(data, tmp_path)
        assert images.class_names == list(OASIS_FOLDERS)
        assert images.class_counts().tolist() == [3, 2, 2, 1]
        assert images.labels.dtype == np.int64 and images.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 3]
        assert images.images.shape == (8, 16, 16) and images.images.dtype == np.uint8
        assert isinstance(images.images, np.memmap)
        assert "OASIS layout" in images.description and "8 images" in images.description
        assert "Moderate Dementia: 1" in logs.text  # per-stage counts are logged


def test_folder_names_match_case_insensitively(tmp_path):
    odd = ["NON DEMENTED", "very mild dementia", "Mild_Dementia", "moderate-dementia"]
    _make(tmp_path / "d", odd)
    images, _ = _load(tmp_path / "d", tmp_path)
    assert images.class_names == odd  # the folders on disk, in stage order
    assert images.class_counts().tolist() == [3, 2, 2, 1]


def test_stage_folders_layout(tmp_path):
    _make(tmp_path / "s", ["stage0", "Stage1", "stage2", "stage3"], per_class=(1, 2, 3, 4))
    images, _ = _load(tmp_path / "s", tmp_path)
    assert images.class_names == ["stage0", "Stage1", "stage2", "stage3"]
    assert images.class_counts().tolist() == [1, 2, 3, 4]
    assert "stage-folder layout" in images.description


def test_custom_classes_in_given_order(tmp_path):
    _make(tmp_path / "c", ["healthy", "early", "late"], per_class=(1, 2, 3))
    images, _ = _load(tmp_path / "c", tmp_path, classes=["late", "Healthy", "early"])
    assert images.class_names == ["late", "healthy", "early"]
    assert images.class_counts().tolist() == [3, 1, 2]
    # the first image of class 0 is late/img_0.png, decoded and resized
    expected = np.asarray(Image.fromarray(_img(20)).resize((16, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(images.images[0], expected)
    with pytest.raises(DataError, match=r"unknown class folder\(s\) 'mid'.*found: 'early', 'healthy', 'late'"):
        _load(tmp_path / "c", tmp_path, classes=["healthy", "mid"])


def test_mixed_modes_sizes_and_formats(tmp_path):
    root = tmp_path / "mixed"
    for f in OASIS_FOLDERS:
        (root / f).mkdir(parents=True)
    d0 = root / OASIS_FOLDERS[0]
    Image.new("RGB", (50, 20), (255, 0, 0)).save(d0 / "red.jpg", quality=100)  # RGB JPEG, wide
    Image.new("RGBA", (20, 60), (0, 255, 0, 255)).save(d0 / "green.png")  # RGBA PNG, tall
    Image.fromarray(_img(1, (33, 33))).save(d0 / "gray.bmp")  # L BMP
    ramp16 = np.repeat(np.linspace(0, 4000, 64)[:, None], 64, axis=1).astype(np.uint16)  # top 0 .. bottom 4000
    Image.fromarray(ramp16).save(root / OASIS_FOLDERS[1] / "deep.tif")  # 16-bit TIFF
    Image.fromarray(_img(2)).convert("P").save(root / OASIS_FOLDERS[2] / "pal.PNG")  # palette, upper-case suffix
    Image.fromarray(_img(3) > 100).save(root / OASIS_FOLDERS[3] / "bits.tiff")  # 1-bit
    images, _ = _load(root, tmp_path)
    assert images.class_counts().tolist() == [3, 1, 1, 1]
    assert images.images.shape == (6, 16, 16)
    names = sorted(["red.jpg", "green.png", "gray.bmp"])  # files are read sorted within a class
    red = images.images[names.index("red.jpg")]
    green = images.images[names.index("green.png")]
    assert abs(int(red.mean()) - round(0.299 * 255)) <= 2  # ITU-R 601 luma of pure red
    assert abs(int(green.mean()) - round(0.587 * 255)) <= 2
    deep = images.images[3]
    # the 16-bit range is stretched to 0..255 (clipping would make nearly all of it white)
    assert deep[0].mean() < 20 and deep[-1].mean() > 235 and abs(deep[8].mean() - 136) < 20
    bits = images.images[5]
    assert set(np.unique(bits)) <= set(range(256)) and bits.max() > 200 and bits.min() < 50


def test_non_image_files_ignored(tmp_path):
    root = _make(tmp_path / "d", OASIS_FOLDERS)
    (root / OASIS_FOLDERS[0] / "notes.txt").write_text("hello")
    (root / OASIS_FOLDERS[0] / ".DS_Store").write_bytes(b"\0\1")
    (root / OASIS_FOLDERS[1] / "img.png.txt").write_text("not an image")
    (root / OASIS_FOLDERS[1] / "labels.csv").write_text("a,b\n")
    (root / "README.md").write_text("readme")
    nested = root / OASIS_FOLDERS[2] / "sub"
    nested.mkdir()
    Image.fromarray(_img(9)).save(nested / "deeper.png")  # images in sub-folders count
    images, logs = _load(root, tmp_path)
    assert images.class_counts().tolist() == [3, 2, 3, 1]
    assert images.skipped == [] and "skipped" not in logs.text


def test_corrupt_images_skipped_and_counted_or_strict(tmp_path):
    root = _make(tmp_path / "d", OASIS_FOLDERS)
    (root / OASIS_FOLDERS[0] / "garbage.jpg").write_bytes(b"this is not a jpeg at all")
    good = (root / OASIS_FOLDERS[1] / "img_0.png").read_bytes()
    (root / OASIS_FOLDERS[1] / "truncated.png").write_bytes(good[: len(good) // 2])
    images, logs = _load(root, tmp_path)
    assert images.class_counts().tolist() == [3, 2, 2, 1]
    assert len(images.images) == 8
    assert len(images.skipped) == 2
    assert "skipped 2 unreadable image(s)" in logs.text
    assert f"{OASIS_FOLDERS[0]}/garbage.jpg" in logs.text and f"{OASIS_FOLDERS[1]}/truncated.png" in logs.text
    # the kept images are the good ones, in order: stage 1 starts with its img_0
    expected = np.asarray(Image.fromarray(_img(10)).resize((16, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(images.images[3], expected)
    with pytest.raises(DataError, match="garbage.jpg"):
        _load(root, tmp_path, strict=True)  # from the cache, strict still refuses


def test_strict_on_fresh_build(tmp_path):
    root = _make(tmp_path / "d", OASIS_FOLDERS)
    (root / OASIS_FOLDERS[3] / "bad.bmp").write_bytes(b"BMnope")
    with pytest.raises(DataError, match=r"unreadable image .*bad\.bmp"):
        _load(root, tmp_path, strict=True)


# ---------------------------------------------------------------- bad inputs

def test_missing_and_unrecognised_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _load(tmp_path / "nope", tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        _load(tmp_path / "file.txt", tmp_path)
    odd = tmp_path / "odd"
    (odd / "cats").mkdir(parents=True)
    (odd / "dogs").mkdir()
    with pytest.raises(DataError) as info:
        _load(odd, tmp_path)
    msg = str(info.value)
    assert "'Non Demented'" in msg and "stage0" in msg and "--classes" in msg
    assert "found: 'cats', 'dogs'" in msg
    with pytest.raises(DataError, match="no sub-folders"):
        (tmp_path / "empty").mkdir()
        _load(tmp_path / "empty", tmp_path)


def test_partial_layouts_name_what_is_missing(tmp_path):
    _make(tmp_path / "three", OASIS_FOLDERS[:3])
    with pytest.raises(DataError, match="lacks 'Moderate Dementia'"):
        _load(tmp_path / "three", tmp_path)
    _make(tmp_path / "gap", ["stage0", "stage1", "stage3"])
    with pytest.raises(DataError, match="lacks stage2"):
        _load(tmp_path / "gap", tmp_path)


def test_class_without_images(tmp_path):
    root = _make(tmp_path / "d", OASIS_FOLDERS, per_class=(2, 2, 2, 0))
    (root / OASIS_FOLDERS[3] / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="'Moderate Dementia'.*hold no images"):
        _load(root, tmp_path)
    # a class whose only images are all corrupt is refused as well
    (root / OASIS_FOLDERS[3] / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="no readable images.*'Moderate Dementia'"):
        _load(root, tmp_path)


# ---------------------------------------------------------------- cache

def test_cache_reused_then_rebuilt_on_change(tmp_path):
    root = _make(tmp_path / "d", OASIS_FOLDERS)
    first, logs = _load(root, tmp_path)
    assert first.rebuilt and first.cache_path.is_file()
    mtime = first.cache_path.stat().st_mtime_ns
    second, logs = _load(root, tmp_path)
    assert not second.rebuilt and second.cache_path == first.cache_path
    assert second.cache_path.stat().st_mtime_ns == mtime
    assert "using cached images" in logs.text
    np.testing.assert_array_equal(np.asarray(first.images), np.asarray(second.images))

    # modify one image (new content, new mtime): rebuilt, with the new pixels
    target = root / OASIS_FOLDERS[2] / "img_1.png"
    Image.fromarray(np.full((30, 40), 7, np.uint8)).save(target)
    os.utime(target, ns=(mtime + 10**9, mtime + 10**9))
    third, _ = _load(root, tmp_path)
    assert third.rebuilt and third.cache_path != first.cache_path
    assert not first.cache_path.exists()  # the stale cache is removed
    assert (np.asarray(third.images[6]) == 7).all()

    # only touching a file (same bytes, new mtime) also rebuilds; adding one changes the count
    os.utime(target, ns=(mtime + 2 * 10**9, mtime + 2 * 10**9))
    assert _load(root, tmp_path)[0].rebuilt
    Image.fromarray(_img(99)).save(root / OASIS_FOLDERS[3] / "new.png")
    fourth, _ = _load(root, tmp_path)
    assert fourth.rebuilt and fourth.class_counts().tolist() == [3, 2, 2, 2]

    # another image size is a separate cache; the first one stays valid
    other, _ = _load(root, tmp_path, img_size=8)
    assert other.rebuilt and other.images.shape[1:] == (8, 8)
    assert not _load(root, tmp_path)[0].rebuilt


def test_half_written_cache_is_never_used(tmp_path):
    root = _make(tmp_path / "d", OASIS_FOLDERS)
    first, _ = _load(root, tmp_path)
    entry = first.cache_path.parent
    # what a killed build leaves: a temporary file, and (worst case) a meta whose images file is gone
    dead = entry / ".images-dead.tmp.npy"
    dead.write_bytes(b"\x93NUMPY partial")
    os.utime(dead, (1, 1))  # killed long ago (recent temporary files may be another process's build)
    busy = entry / ".images-busy.tmp.npy"
    busy.write_bytes(b"\x93NUMPY in progress")
    first.cache_path.unlink()
    again, _ = _load(root, tmp_path)
    assert again.rebuilt and again.cache_path.is_file() and len(again.images) == 8
    assert not dead.exists() and busy.exists()
    assert sorted(p.name for p in entry.iterdir()) == sorted(["meta.json", again.cache_path.name, busy.name])


def test_default_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CGAN_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("CGAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "dementia-cgan"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "dementia-cgan"
    # load_image_set without cache_dir uses it
    monkeypatch.setenv("CGAN_CACHE", str(tmp_path / "env-cache"))
    root = _make(tmp_path / "d", OASIS_FOLDERS)
    images = load_image_set(root, img_size=8, log=lambda s: None)
    assert (tmp_path / "env-cache") in images.cache_path.parents


def test_reads_a_synthetic_set_written_by_cgan_data(tmp_path):
    out = synth.make_synthetic_set(tmp_path / "syn", n=20, seed=2, img_size=32, log=lambda s: None)
    images, _ = _load(out, tmp_path, img_size=32)
    assert images.class_names == list(OASIS_FOLDERS)
    assert images.class_counts().tolist() == synth.stage_counts(20).tolist()
    rows = synth.read_labels(out / synth.LABELS_CSV)
    first = sorted((r for r in rows if r["stage"] == 0), key=lambda r: r["path"])[0]
    np.testing.assert_array_equal(images.images[0], np.asarray(Image.open(out / first["path"])))


@pytest.mark.slow
def test_default_synthetic_set_built_once(tmp_path):
    images, logs = _load(None, tmp_path, img_size=32)
    assert images.rebuilt and "synthetic" in images.description and "n=8000" in images.description
    assert "no --data given" in logs.text and "synthetic" in logs.text
    assert images.class_names == list(OASIS_FOLDERS)
    assert images.class_counts().tolist() == synth.stage_counts(8000).tolist()
    assert images.images.shape == (8000, 32, 32)
    k = 123
    np.testing.assert_array_equal(images.images[k], synth.synth_image(0, k, 8000, 32)[0])
    again, logs = _load(None, tmp_path, img_size=32)
    assert not again.rebuilt and again.cache_path == images.cache_path
    assert "using the built-in synthetic" in logs.text


# ---------------------------------------------------------------- cgan-data scan

def test_cli_scan(tmp_path):
    root = _make(tmp_path / "d", ["stage0", "stage1", "stage2", "stage3"])
    (root / "stage1" / "broken.jpg").write_bytes(b"nope")
    runner = CliRunner()
    args = ["scan", "--data", str(root), "--img-size", "16", "--cache-dir", str(tmp_path / "c")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(l.split()[:4] == ["stage", "0", "stage0", "3"] for l in lines), result.output
    assert any(l.split()[:2] == ["total", "8"] for l in lines)
    assert "stage1/broken.jpg" in result.output and "cache (built)" in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "cache (up to date)" in again.output
    strict = runner.invoke(app, args + ["--strict"])
    assert strict.exit_code == 1 and "error: unreadable image" in strict.output and "broken.jpg" in strict.output
    custom = runner.invoke(app, ["scan", "--data", str(root), "--classes", "stage3,stage0", "--img-size", "16",
                                 "--cache-dir", str(tmp_path / "c")])
    assert custom.exit_code == 0 and "stage 0  stage3" in custom.output


def test_cli_scan_takes_the_folder_as_an_argument_like_the_other_commands(tmp_path):
    """`cgan-data scan Data/`, as `cgan-run --balance Data/`, `cgan-eval Data/` and `cgan-web build` take a folder."""
    root = _make(tmp_path / "d", ["stage0", "stage1", "stage2", "stage3"])
    runner = CliRunner()
    result = runner.invoke(app, ["scan", str(root), "--img-size", "16", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert any(l.split()[:2] == ["total", "8"] for l in result.output.splitlines()), result.output
    both = runner.invoke(app, ["scan", str(root), "--data", str(root), "--img-size", "16", "--cache-dir", str(tmp_path / "c")])
    assert both.exit_code == 0, both.output
    other = runner.invoke(app, ["scan", str(root), "--data", str(tmp_path / "e"), "--cache-dir", str(tmp_path / "c")])
    assert other.exit_code == 1
    assert other.output.strip().splitlines() == [f"error: two dataset folders given ({root} and --data {tmp_path / 'e'}); give one"]


def _without_root_file_access() -> None:
    """In the child, before exec: give up the capabilities that let root read any folder (CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH), so a folder with mode 000 is unreadable for root too, as for any user."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: not in the bounding set, so not after exec
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_cli_scan_an_unreadable_folder_in_a_class_is_an_error_not_a_smaller_class(tmp_path):
    """A class folder with a sub-folder the user cannot read stops the scan with one line naming it: skipping it
    silently would train and balance on a class smaller than the one on disk."""
    import subprocess
    import sys

    root = _make(tmp_path / "d", ["stage0", "stage1", "stage2", "stage3"])
    locked = root / "stage1" / "session2"
    locked.mkdir()
    Image.fromarray(_img(99)).save(locked / "img_9.png")
    locked.chmod(0)
    code = "import sys; from cgan.train.data_cli import main; sys.argv[0] = 'cgan-data'; main()"
    try:
        done = subprocess.run([sys.executable, "-c", code, "scan", str(root), "--img-size", "16",
                               "--cache-dir", str(tmp_path / "c")], capture_output=True, text=True, timeout=120,
                              preexec_fn=_without_root_file_access if os.geteuid() == 0 else None)
    finally:
        locked.chmod(0o755)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 1, done.stdout + done.stderr
    assert lines == [f"error: cannot read {locked} (Permission denied); make it readable or move it out of the dataset"]
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.npy"))  # no cache of the smaller set


def test_cli_scan_bad_input(tmp_path):
    result = CliRunner().invoke(app, ["scan", "--data", str(tmp_path / "missing"), "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: data folder {tmp_path / 'missing'} does not exist"]


def test_find_layout_prefers_exact_names(tmp_path):
    _make(tmp_path / "k" / "data", OASIS_FOLDERS)  # lower-case data/ parent
    layout = find_layout(tmp_path / "k")
    assert layout.kind == "oasis" and layout.root == tmp_path / "k" / "data"
