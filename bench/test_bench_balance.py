"""``cgan-run --balance`` against ``cgan-run --n`` for the same 10,000 images, whole process, interleaved.

The dataset holds one tiny real image per stage; ``--target 2501`` plans 2,500 generated images for
each of the four stages, the same images ``cgan-run --n 2500`` writes (all stages, same seed, batch
and engine). Each round runs both commands one after the other into fresh folders (emptied untimed),
so a load change on the machine hits both. The goal: balancing costs at most 10% more time.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from bench._helpers import Interleaved, python_env
from bench.test_bench_latency import cgan_run_exe

pytestmark = pytest.mark.bench_long  # run with --bench-long (bench/README.md)

PER_STAGE = 2500
STAGES = 4
BATCH = 64
ROUNDS = 3
GOAL_RATIO = 1.10


def test_balance_vs_n_10000(benchmark, bench_tmp, speed_model):
    model, source = speed_model
    benchmark.group = "balance"
    root = bench_tmp / "balance"
    data = root / "data"
    for s in range(STAGES):
        (data / f"stage{s}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / f"stage{s}" / "real.png")
    common = ["--model", str(model), "--batch-size", str(BATCH), "--engine", "onnxruntime", "--seed", "0", "--quiet"]
    cmds = {
        "n": [str(cgan_run_exe()), "--n", str(PER_STAGE), "--out", str(root / "n"), *common],
        "balance": [str(cgan_run_exe()), "--balance", str(data), "--target", str(PER_STAGE + 1), "--out", str(root / "balance"), *common],
    }
    def once(name: str) -> None:
        done = subprocess.run(cmds[name], env=python_env(), capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(cmds[name][1:3])} exited {done.returncode}:\n{done.stderr[-2000:]}")

    # each round into fresh folders (emptied untimed), who goes first alternating round by round
    timing = Interleaved({name: (lambda name=name: once(name)) for name in cmds}, alternate=True,
                         prepare=lambda name: shutil.rmtree(root / name, ignore_errors=True))

    def interleaved():
        # untimed: the page cache and .pyc files both commands read (a one-image run is enough)
        subprocess.run([str(cgan_run_exe()), "--n", "1", "--out", str(root / "warm"), *common], env=python_env(), check=True, capture_output=True)
        timing.run(ROUNDS)

    benchmark.pedantic(interleaved, rounds=1, iterations=1)
    written = {name: sorted(p.relative_to(root / name).name for p in (root / name).rglob("*.png")) for name in cmds}
    assert len(written["n"]) == PER_STAGE * STAGES and written["balance"] == written["n"]
    times = timing.times
    med = timing.medians()
    ratio = med["balance"] / med["n"]
    benchmark.extra_info.update(
        kind="balance", model=source, images=PER_STAGE * STAGES, batch=BATCH, rounds=ROUNDS,
        variant=f"cgan-run --balance (--target {PER_STAGE + 1}, one real image per stage) vs cgan-run --n {PER_STAGE}, 4 stages",
        n_s=round(med["n"], 2), balance_s=round(med["balance"], 2),
        n_images_per_s=round(PER_STAGE * STAGES / med["n"], 1), balance_images_per_s=round(PER_STAGE * STAGES / med["balance"], 1),
        times_n=[round(t, 2) for t in times["n"]], times_balance=[round(t, 2) for t in times["balance"]],
        balance_over_n=round(ratio, 3), goal_ratio=GOAL_RATIO, goal_met=ratio <= GOAL_RATIO,
        note="whole process wall time, median of interleaved rounds",
    )
    shutil.rmtree(root, ignore_errors=True)
