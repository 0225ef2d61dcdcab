"""What the in-process training tests share: a tiny synthetic set (8 images per stage), narrow networks,
quiet logging, and torch's thread count put back after a run changed it. A test module takes the
fixtures by importing them (``from _train_setup import dataset, keep_torch_threads``)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

IMG = 32
BATCH = 8
N_IMAGES = 32  # 8 per stage: 4 steps per epoch at batch 8
WIDTH = 64  # a narrow generator keeps the steps cheap; the architecture is otherwise the original's
DISC_WIDTH = 16  # likewise for the discriminator


def quiet(_msg: str) -> None:
    pass


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """In-process runs set torch's thread count (--threads 1 here: tiny models on a shared machine); restore it."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tiny_training_set(root: Path):
    """(data folder, cache folder, ImageSet) of the tiny set, built under ``root``."""
    from cgan.train.data import load_image_set
    from cgan.train.synth import make_synthetic_set

    data = make_synthetic_set(root / "syn", n=N_IMAGES, seed=3, img_size=IMG, log=quiet)
    cache = root / "cache"
    return data, cache, load_image_set(data, img_size=IMG, cache_dir=cache, log=quiet)


# ---------------------------------------------------------------- fixtures and runs (import them into a test module)

@pytest.fixture(autouse=True)
def keep_torch_threads():
    with torch_threads_kept():
        yield


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The tiny set, built once per test module: (data folder, cache folder, ImageSet)."""
    return tiny_training_set(tmp_path_factory.mktemp("train_data"))


@pytest.fixture(scope="module")
def trained_checkpoint(dataset, tmp_path_factory):
    """The last checkpoint of a two-step run with the AC head: a trained G and D to fine-tune from."""
    from cgan.train.loop.run import TrainConfig, train

    data, cache, images = dataset
    out = tmp_path_factory.mktemp("trained") / "run"
    train(TrainConfig(out=out, data=data, cache_dir=cache, img_size=IMG, width=WIDTH, disc_width=DISC_WIDTH,
                      batch_size=BATCH, max_steps=2, checkpoint_every=2, quiet=True, device="cpu", threads=1,
                      aux_weight=0.5), image_set=images, log=quiet)
    return sorted((out / "checkpoints").glob("ckpt_*.pt"))[-1]


def make_run(images, **overrides):
    """A :class:`~cgan.train.loop.step.TrainingRun` of the narrow networks on ``images`` (an ImageSet), one
    thread, fp32 on the CPU, outside any process group; ``overrides``: TrainConfig fields."""
    import torch

    from cgan.train.loop import ddp
    from cgan.train.loop.run import TrainConfig, TrainingRun

    torch.set_num_threads(1)
    settings = dict(img_size=IMG, width=WIDTH, disc_width=DISC_WIDTH, batch_size=BATCH, device="cpu", quiet=True)
    config = TrainConfig(**{**settings, **overrides})
    config.validate()
    return TrainingRun(config, images, ddp.DistInfo(), torch.device("cpu"), "fp32", quiet)


def first_batch(run):
    """The run's first BATCH images and their stages, as the step takes them."""
    import numpy as np
    import torch

    from cgan.train.loop.batches import to_model_input

    idx = np.arange(BATCH)
    real = to_model_input(np.ascontiguousarray(run.images[idx]), torch.device("cpu"), run.config.channels_last)
    return real, torch.from_numpy(run.labels[idx])


def assert_refused_in_one_line(dataset, out: Path, extra: list[str], needle: str) -> None:
    """cgan-train on the tiny set with the flags ``extra``: exit 1, one line ``error: ...`` naming ``needle``,
    and nothing written at ``out``."""
    from typer.testing import CliRunner

    from cgan.train.cli import app

    data, cache, _ = dataset
    result = CliRunner().invoke(app, ["--data", str(data), "--cache-dir", str(cache), "--img-size", str(IMG),
                                      "--out", str(out), "--device", "cpu", *extra])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert not out.exists()


def kill_at_checkpoint(args: list[str], out: Path, step: int = 2) -> None:
    """Start ``cgan-train ARGS`` (whose --out is ``out``) in a process of its own and kill -9 it once the
    checkpoint of ``step`` is whole; asserts the run was still going and died of the kill."""
    import os
    import signal
    import subprocess
    import sys
    import time

    checkpoint = out / "checkpoints" / f"ckpt_{step:09d}.pt"
    proc = subprocess.Popen([sys.executable, "-m", "cgan.train.cli", *args], env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not checkpoint.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.exists()
