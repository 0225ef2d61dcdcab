"""cgan-run end to end: in a child interpreter where torch cannot be imported, and in process for bad input."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _cli import call_main
from _models import TRAINING_DATA, gen, model, model_file  # noqa: F401 - fixtures
from cgan.runtime.cli import main
from cgan.runtime.contract import OASIS_FOLDERS, STAGE_NAMES
from conftest import run_script, stderr_lines, torch_loaded


def cgan_run(*args: str, **kwargs):
    """cgan-run in a fresh interpreter with torch blocked; asserts torch was never imported."""
    result = run_script("cgan-run", *args, block_torch=True, **kwargs)
    assert not torch_loaded(result), result.stderr
    return result


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L" and im.format == "PNG"
        return np.asarray(im)


# ---------------------------------------------------------------- happy paths (subprocess, no torch)

@pytest.mark.slow
def test_one_stage_writes_8bit_pngs_without_torch(tmp_path, model, gen):
    out = tmp_path / "gen"
    result = cgan_run("--stage", "0", "--n", "12", "--model", model, "--out", str(out), "--batch-size", "5")
    assert result.returncode == 0, result.stderr
    files = pngs(out)
    assert [f.name for f in files] == [f"stage0_seed0_{k:08d}.png" for k in range(12)]
    expected = gen.generate(stage=0, n=12, seed=0)
    for k, f in enumerate(files):
        np.testing.assert_array_equal(read_png(f), expected[k])
    # the model (path + training data) and the provider are named
    assert any(model in line and TRAINING_DATA in line and "CPUExecutionProvider" in line for line in stderr_lines(result))
    assert "wrote 12 PNG images" in result.stdout
    assert not list(out.glob(".*"))  # no temporary files left


@pytest.mark.slow
def test_quiet_still_names_model_and_provider(tmp_path, model):
    result = cgan_run("--stage", "moderate", "--n", "3", "--model", model, "--out", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    (line,) = stderr_lines(result)
    assert model in line and "CPUExecutionProvider" in line and TRAINING_DATA in line
    assert len(pngs(tmp_path)) == 3 and pngs(tmp_path)[0].name.startswith("stage3_")


@pytest.mark.slow
def test_oasis_layout_is_a_training_set(tmp_path, model):
    out = tmp_path / "Data"
    result = cgan_run("--stage", "all", "--n", "4", "--layout", "oasis", "--model", model, "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(OASIS_FOLDERS)
    for s, folder in enumerate(OASIS_FOLDERS):
        names = [p.name for p in pngs(out / folder)]
        assert names == [f"stage{s}_seed0_{k:08d}.png" for k in range(4)]
    # the trainer's loader reads it as an OASIS-layout set with the right labels
    from cgan.train.data import load_image_set

    images = load_image_set(out, img_size=32, cache_dir=tmp_path / "cache", log=lambda _m: None)
    assert images.class_counts().tolist() == [4, 4, 4, 4]
    assert len(images.images) == 16 and images.images.shape[1:] == (32, 32)


@pytest.mark.slow
def test_split_job_equals_one_run(tmp_path, model):
    one, split = tmp_path / "one", tmp_path / "split"
    common = ("--stage", "1,mild", "--seed", "7", "--model", model, "--quiet")
    assert cgan_run(*common, "--n", "10", "--out", str(one), "--batch-size", "10").returncode == 0
    assert cgan_run(*common, "--n", "4", "--out", str(split), "--batch-size", "3").returncode == 0
    assert cgan_run(*common, "--n", "6", "--start", "4", "--out", str(split), "--batch-size", "1").returncode == 0
    a, b = pngs(one), pngs(split)
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 20
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(read_png(pa), read_png(pb))


# ---------------------------------------------------------------- outputs (in process: faster)

def invoke(*args: str):
    return call_main(main, args)


def test_stage_lists_and_all(tmp_path, model):
    result = invoke("--stage", "Non-Demented,3", "--n", "2", "--model", model, "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert [p.name[:6] for p in pngs(tmp_path / "a")] == ["stage0"] * 2 + ["stage3"] * 2
    result = invoke("--stage", "all", "--n", "3", "--model", model, "--out", str(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert len(pngs(tmp_path / "b")) == 12


def test_npy_format_with_sidecar(tmp_path, model, gen):
    result = invoke("--stage", "2", "--n", "9", "--seed", "3", "--start", "5", "--format", "npy", "--model", model, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    stack = np.load(tmp_path / "stage2_seed3_00000005-00000013.npy")
    assert stack.dtype == np.float32 and stack.shape == (9, 1, 32, 32)
    np.testing.assert_allclose(stack, gen.generate_float(stage=2, n=9, seed=3, start=5), rtol=0, atol=1e-5)
    meta = json.loads((tmp_path / "stage2_seed3_00000005-00000013.json").read_text())
    assert (meta["stage"], meta["stage_name"], meta["seed"], meta["indices"]) == (2, STAGE_NAMES[2], 3, [5, 14])
    assert meta["model_info"]["img_size"] == 32 and meta["model_info"]["provenance"]["cgan.training_data"] == TRAINING_DATA
    assert not pngs(tmp_path)


def test_grid_is_a_labelled_sheet(tmp_path, model):
    result = invoke("--n", "3", "--grid", str(tmp_path / "sheet.png"), "--format", "none", "--model", model, "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    small = np.asarray(Image.open(tmp_path / "sheet.png"))
    invoke("--n", "6", "--grid", str(tmp_path / "sheet6.png"), "--format", "none", "--model", model)
    wide = np.asarray(Image.open(tmp_path / "sheet6.png"))
    # rows are the 4 stages (height fixed), columns the images (3 more columns -> wider)
    assert wide.shape[0] == small.shape[0] and wide.shape[1] > small.shape[1]
    assert small.shape[0] >= 4 * 64
    label_strip = small[:, : 20]
    assert label_strip.max() > 100  # text was drawn left of the images


def test_progression_sheet_has_a_row_per_sample(tmp_path, model):
    result = invoke("--progression", "--n", "2", "--format", "none", "--model", model, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    two = np.asarray(Image.open(tmp_path / "progression.png"))
    invoke("--progression", "--n", "5", "--format", "none", "--model", model, "--grid", str(tmp_path / "p5.png"))
    five = np.asarray(Image.open(tmp_path / "p5.png"))
    # 3 more rows of images (64 px each at least), the same 4 columns (labels may differ by a few px)
    assert five.shape[0] - two.shape[0] >= 3 * 64 and abs(five.shape[1] - two.shape[1]) < 16


def test_overwrite(tmp_path, model):
    args = ("--stage", "0", "--n", "3", "--model", model, "--out", str(tmp_path))
    assert invoke(*args).exit_code == 0
    target = tmp_path / "stage0_seed0_00000001.png"
    target.write_bytes(b"user data")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    refused = invoke(*args, "--n", "5")
    assert refused.exit_code == 1
    assert "3 files this run would write already exist" in refused.stderr and "--overwrite" in refused.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written, not even the new 3, 4
    assert invoke(*args, "--overwrite").exit_code == 0
    assert read_png(target).shape == (32, 32)


# ---------------------------------------------------------------- bad input: one line, exit 1, nothing written

BAD = [
    (["--stage", "4"], "stage 4 is out of range"),
    (["--stage", "severe"], "unknown stage 'severe'"),
    (["--stage", "0,9"], "out of range"),
    (["--n", "0"], "--n must be at least 1"),
    (["--n", "-2"], "--n must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--layout", "kaggle"], "unknown --layout"),
    (["--format", "jpg"], "unknown --format"),
    (["--provider", "nonsense"], "provider 'nonsense' is not available"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--start", "-5"], "--start must be >= 0"),
    (["--grid", "sheet.jpg"], "ending in .png"),
    (["--writers", "0"], "--writers must be at least 1"),
]


@pytest.mark.parametrize("args, words", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments(tmp_path, model, args, words):
    out = tmp_path / "out"
    result = invoke("--model", model, "--out", str(out), *args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


BAD_SYNTAX = [
    (["--n", "abc"], "argument --n/-n: expected a whole number, got 'abc'"),
    (["--seed", "1.5"], "argument --seed: expected a whole number, got '1.5'"),
    (["--n"], "argument --n/-n: expected one argument"),
    (["--colour", "red"], "unrecognized arguments: --colour red"),
    (["--ove"], "unrecognized arguments: --ove"),  # no silent prefix matching of --overwrite
]


@pytest.mark.parametrize("args, words", BAD_SYNTAX, ids=[" ".join(a) for a, _ in BAD_SYNTAX])
def test_malformed_command_lines_get_one_line_and_exit_2(tmp_path, model, args, words):
    out = tmp_path / "out"
    result = invoke("--model", model, "--out", str(out), *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and words in line and "cgan-run --help" in line, line
    assert not out.exists()


def test_help_and_version_exit_0_and_name_every_option():
    shown = invoke("--help")
    assert shown.exit_code == 0 and shown.stderr == ""
    for flag in ("--stage", "--n", "--out", "--layout", "--format", "--grid", "--progression", "--seed", "--start",
                 "--batch-size", "--model", "--provider", "--threads", "--writers", "--overwrite", "--noise-version", "--quiet"):
        assert flag in shown.stdout, flag
    assert "never for clinical" in shown.stdout.replace("\n", " ")
    from cgan.runtime import __version__

    version = invoke("--version")
    assert version.exit_code == 0 and version.stdout.strip() == f"cgan-run {__version__}"


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "does not exist"),
        ("not_onnx", "is not a readable ONNX model"),
        ("truncated", "is not a readable ONNX model"),
        ("no_metadata", "lacks the dementia-cgan metadata"),
        ("bad_inputs", "the contract needs exactly"),
    ],
)
def test_bad_models(tmp_path, kind, words):
    path = tmp_path / "missing.onnx" if kind == "missing" else model_file(kind)
    out = tmp_path / "out"
    result = invoke("--model", str(path), "--out", str(out), "--n", "2")
    assert result.exit_code == 1
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("error: ") and words in line
    assert not out.exists()


def test_unwritable_out(tmp_path, model):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        result = invoke("--model", model, "--out", str(out), "--n", "2")
        assert result.exit_code == 1
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(blocker) in errors[0] and "--out" in errors[0]
    assert blocker.read_text() == "x"


def test_malformed_hub_reference(tmp_path, model):
    # refused before anything is fetched
    result = invoke("--model", "hf:only-owner", "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "hf:OWNER/REPO" in result.stderr and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_bad_input_in_a_child_has_no_traceback(tmp_path):
    result = cgan_run("--model", str(model_file("truncated")), "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_reader_that_leaves_early_does_not_stop_the_run(tmp_path, model):
    """`cgan-run ... | head -1`: the pipe closes before the first line; images are still written, no traceback."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("cgan-run")
    if not exe.exists():
        pytest.skip("the cgan-run console script is not installed (pip install -e .)")
    out = tmp_path / "out"
    proc = subprocess.Popen([str(exe), "--model", model, "--n", "2", "--stage", "0,1", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the run prints anything to stdout
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    assert sorted(p.name for p in out.iterdir()) == [f"stage{s}_seed0_0000000{k}.png" for s in (0, 1) for k in (0, 1)]


# ---------------------------------------------------------------- Hugging Face Hub, through a cache the test builds

def build_hub_cache(cache: Path, repo_id: str, filename: str, data: bytes, commit: str = "a" * 40) -> Path:
    """The documented Hub cache layout: models--OWNER--REPO/{blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/main}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    link = repo / "snapshots" / commit / filename
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return link


@pytest.mark.slow
def test_hub_model_from_the_cache_offline(tmp_path, gen, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):  # they win over HF_HOME: keep outer ones out of the child
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "hf-home"
    build_hub_cache(home / "hub", "alice/dementia-cgan", "cDCGAN_generator.onnx", model_file("gen32").read_bytes())
    env = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "out"
    result = cgan_run("--model", "hf:alice/dementia-cgan", "--stage", "2", "--n", "3", "--out", str(out), "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    assert "hf:alice/dementia-cgan/cDCGAN_generator.onnx" in result.stderr and TRAINING_DATA in result.stderr
    expected = gen.generate(stage=2, n=3)
    for k, f in enumerate(pngs(out)):
        np.testing.assert_array_equal(read_png(f), expected[k])


@pytest.mark.slow
def test_hub_file_and_hf_hub_cache(tmp_path):
    cache = tmp_path / "hub-cache"
    build_hub_cache(cache, "bob/models", "gen/small.onnx", model_file("gen32").read_bytes(), commit="b" * 40)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "unused")}
    result = cgan_run("--model", "hf:bob/models/gen/small.onnx", "--n", "1", "--out", str(tmp_path / "o"), "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    assert len(pngs(tmp_path / "o")) == 4
    # the same repo without that file, offline: one clear line
    missing = cgan_run("--model", "hf:bob/other", "--n", "1", "--out", str(tmp_path / "p"), env=env)
    assert missing.returncode == 1
    (line,) = stderr_lines(missing)
    assert line.startswith("error: cannot get hf:bob/other/cDCGAN_generator.onnx") and "HF_HUB_OFFLINE" in line
    assert not (tmp_path / "p").exists()

