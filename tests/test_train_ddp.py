"""cgan-train under torchrun: 2 CPU processes on the gloo backend, DDP, only rank 0 writes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from cgan.train.models import Generator
from cgan.train.synth import make_synthetic_set


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_and_write_once(tmp_path):
    data = make_synthetic_set(tmp_path / "syn", n=32, seed=5, img_size=32, log=lambda _m: None)
    out = tmp_path / "run"
    # 32 images over 2 ranks at batch 8: 2 steps per epoch per rank; 3 steps = 1.5 epochs
    args = ["--data", str(data), "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--img-size", "32",
            "--width", "64", "--disc-width", "16", "--batch-size", "8", "--max-steps", "3", "--checkpoint-every", "1", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "cgan.train.cli", *args],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # one log, from rank 0: one epoch summary and one progress line per step shown
    assert result.stdout.count("epoch 1/2: D loss") == 1, result.stdout  # 3 steps reach epoch 2 of --epochs 10
    assert result.stdout.count("step 1/3 ") == 1, result.stdout
    assert result.stdout.count("config: ") == 1

    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["world_size"] == 2
    assert config["resolved"]["steps_per_epoch"] == 2
    with open(out / "training_history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["epoch"], r["steps"]) for r in rows] == [("1", "2"), ("2", "1")]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["epoch_001.png", "step_0000003.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt_000000002.pt", "ckpt_000000003.pt"]
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert not leftovers, leftovers  # no temporary files from a second writer

    ckpt = torch.load(out / "checkpoints" / "ckpt_000000003.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["noise_rng"]) == 2
    assert not torch.equal(ckpt["noise_rng"][0], ckpt["noise_rng"][1])  # each rank draws its own noise
    assert not any(k.startswith("module.") for k in ckpt["generator"])  # saved unwrapped

    payload = torch.load(out / "cDCGAN_generator.pth", weights_only=True)
    assert payload["provenance"]["world_size"] == "2"
    g = Generator(**payload["config"])
    g.load_state_dict(payload["model"], strict=True)
    for key, value in payload["model"].items():
        assert torch.equal(value, ckpt["generator"][key]), key
