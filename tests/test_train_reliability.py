"""cgan-train and the data cache under faults: resume without repeating flags, safe changes on resume,
full disks, a second run into the same --out, a checkpoint that needs pickled code, --help's defaults."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import run_script, stderr_lines
from cgan.train.cli import app
from cgan.train.synth import make_synthetic_set

from _train_setup import IMG, dataset, kill_at_checkpoint, quiet  # noqa: F401 - the dataset fixture

LOCK_NAME = ".cgan.lock"  # cgan.runtime.outputs.LOCK_NAME, spelled out so these tests also run against older code
runner = CliRunner()


def args_for(dataset, out: Path, *extra: str) -> list[str]:
    data, cache, _ = dataset
    return ["--data", str(data), "--cache-dir", str(cache), "--img-size", str(IMG), "--batch-size", "8", "--width", "64",
            "--disc-width", "16", "--out", str(out), "--device", "cpu", "--threads", "1", *extra]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "cDCGAN_generator.pth", weights_only=True)["model"]


def history(out: Path) -> list[str]:
    return (out / "training_history.csv").read_text().splitlines()


# ---------------------------------------------------------------- resume as configured

@pytest.mark.slow
def test_killed_run_resumed_without_repeating_flags_is_bit_identical(dataset, tmp_path):
    """a run started with --epochs, killed, and resumed as `cgan-train --resume --out DIR` forgot --epochs."""
    run = ["--epochs", "3", "--checkpoint-every", "1", "--quiet"]  # 3 epochs of 4 steps: 12 steps, not the default 10 epochs
    whole = run_script("cgan-train", *args_for(dataset, tmp_path / "whole", *run))
    assert whole.returncode == 0, whole.stderr

    killed = tmp_path / "killed"
    kill_at_checkpoint(args_for(dataset, killed, *run), killed)
    lock_left = (killed / LOCK_NAME).exists()  # kill -9 leaves the lock file; the resume takes it over

    resumed = run_script("cgan-train", "--resume", "--out", str(killed))  # no flag repeated
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(tmp_path / "whole"), weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [",".join(r.split(",")[:5] + r.split(",")[6:7]) for r in rows]  # noqa: E731 - without the times
    assert strip(history(killed)) == strip(history(tmp_path / "whole")) and len(history(killed)) == 4
    config = json.loads((killed / "config.json").read_text())
    assert config["epochs"] == 3 and config["changes"] == [] and config["resolved"]["steps_per_epoch"] == 4
    assert lock_left and not (killed / LOCK_NAME).exists() and not list((killed / "checkpoints").glob(".*"))


@pytest.mark.slow
def test_resume_refuses_changed_settings_and_records_safe_ones(dataset, tmp_path):
    out = tmp_path / "run"
    first = runner.invoke(app, args_for(dataset, out, "--max-steps", "2", "--quiet"))
    assert first.exit_code == 0, first.output
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    # --batch-size 16 is the default, given explicitly: a change from the saved 8 all the same
    result = runner.invoke(app, ["--resume", "--out", str(out), "--batch-size", "16"])
    assert result.exit_code == 1
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("error: --resume continues") and "batch_size=8" in line and "--batch-size" in line
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing touched
    extended = runner.invoke(app, ["--resume", "--out", str(out), "--max-steps", "3", "--quiet"])
    assert extended.exit_code == 0, extended.output
    config = json.loads((out / "config.json").read_text())
    assert config["max_steps"] == 3 and config["batch_size"] == 8
    (change,) = config["changes"]
    assert change["step"] == 2 and change["set"] == {"max_steps": [2, 3]}
    below = runner.invoke(app, ["--resume", "--out", str(out), "--max-steps", "1"])
    assert below.exit_code == 1 and "--max-steps 1 is below the 3 steps" in below.stderr


def test_resume_refuses_a_checkpoint_that_needs_pickled_code(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    marker = tmp_path / "code_ran"
    torch.save({"format": "cgan-train-checkpoint", "x": _Payload(marker)}, out / "checkpoints" / "ckpt_000000001.pt")
    result = runner.invoke(app, ["--resume", "--out", str(out)])
    assert result.exit_code == 1
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert "refused: the file needs pickled code to load" in line and "never executed here" in line
    assert "corrupt" not in line and "weights_only" not in line and "Re-running" not in line
    assert not marker.exists()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_second_run_into_the_same_out_is_refused(dataset, tmp_path):
    out = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from cgan.runtime.outputs import FolderLock; "
         f"FolderLock({str(out)!r}, 'cgan-train').acquire(); print('ok', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        result = runner.invoke(app, args_for(dataset, out, "--max-steps", "1"))
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1 and f"in use by cgan-train (pid {holder.pid})" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_help_keeps_its_defaults():
    """rich read "[default: ...]" in three help texts as markup and dropped it."""
    result = run_script("cgan-train", "--help")
    text = " ".join(result.stdout.replace("│", " ").split())
    for default in ("(default: the built-in synthetic OASIS-like set", "(default: $CGAN_CACHE", "(default: torch's choice)"):
        assert default in text, result.stdout


# ---------------------------------------------------------------- full disks

def test_a_full_disk_at_checkpoint_time_is_one_line(dataset, small_disk):
    """a full disk when the checkpoint is written printed a traceback (inline_container.cc ... unexpected pos)."""
    out = small_disk / "run"
    result = run_script("cgan-train", *args_for(dataset, out, "--max-steps", "2", "--width", "128", "--quiet"))
    assert result.returncode == 1
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {out}") and "no space left" in lines[0], result.stderr
    assert not [p for p in out.rglob(".*")], "a temporary file or the lock was left behind"


def test_a_full_disk_while_building_the_cache_is_one_line(tmp_path, small_disk):
    """the data cache build died with SIGBUS (exit 135) on a full disk and left a hidden temp file."""
    data = make_synthetic_set(tmp_path / "syn", n=40, seed=1, img_size=64, log=quiet)
    result = run_script("cgan-data", "scan", "--data", str(data), "--img-size", "256", "--cache-dir", str(small_disk))
    assert result.returncode == 1, result.stderr
    (line,) = stderr_lines(result)[-1:]
    assert line.startswith("error: not enough space for") and "--cache-dir" in line, result.stderr
    leftovers = [p for p in small_disk.rglob("*") if p.is_file()]
    assert leftovers == [], leftovers
    shutil.rmtree(small_disk / "datasets", ignore_errors=True)
