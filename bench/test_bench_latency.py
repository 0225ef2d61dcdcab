"""Latency of one image, cold start to the first PNG, and where that time goes.

- one image: batch 1 through the bare ORT session (runtime options) and through ``gen.generate``.
- cold start: a fresh process from launch to its exit with the PNG on disk (the PNG is the last thing
  either program does, so this bounds "launch to first PNG" from above): ``cgan-run --n 1`` against
  bench/torch_generate.py (import torch, load the .pth, build the Generator, generate, save a PNG).
- profiles: python -X importtime of both commands, a phase breakdown of a fresh runtime process, and
  onnxruntime's per-operator profile at batch 1 and 64.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench._helpers import REPO, median_s, python_env, record_throughput, run_benchmark

GOAL_ONE_IMAGE_MS = 3.0  # one image, warm session
GOAL_COLD_START_S = 0.35  # cgan-run --n 1, start to exit
COLD_ROUNDS = {"cgan-run": 5, "torch script": 3}  # the torch baseline is slow and steady


def cgan_run_exe() -> Path:
    exe = Path(sys.executable).with_name("cgan-run")
    if not exe.exists():
        pytest.skip("the cgan-run console script is not installed (pip install -e .)")
    return exe


def cgan_run_args(model: Path, out: Path, n: int, extra: tuple[str, ...] = ()) -> list[str]:
    return ["--model", str(model), "--n", str(n), "--stage", "2", "--seed", "0", "--out", str(out), *extra]


@pytest.mark.parametrize("path", ["session.run", "generate"])
def test_one_image(benchmark, speed_model, path):
    """One image, batch 1: the bare session (runtime options) and the runtime's generate (noise + uint8)."""
    from bench._ort import find_session, runner, runtime_generator

    model, source = speed_model
    benchmark.group = "one image"
    gen = runtime_generator(model, "cpu")
    if path == "session.run":
        fn = runner(find_session(gen), 1)
    else:
        fn = lambda: gen.generate(stage=2, n=1, seed=0)  # noqa: E731
    run_benchmark(benchmark, fn, budget_s=1.0, max_rounds=500, warmup=20)
    ms = median_s(benchmark) * 1e3
    record_throughput(
        benchmark, images=1, kind="latency", device="cpu", engine="onnxruntime", batch=1, model=source,
        variant=f"ORT one image, {'bare session.run' if path == 'session.run' else 'runtime generate()'}",
        goal_ms=GOAL_ONE_IMAGE_MS, goal_met=ms <= GOAL_ONE_IMAGE_MS,
    )


def _run_child(cmd: list[str], png: Path) -> None:
    done = subprocess.run(cmd, cwd=png.parent, env=python_env(), capture_output=True, text=True)
    if done.returncode != 0 or not _first_png(png):
        raise AssertionError(f"{cmd[:2]} exited {done.returncode} without a PNG under {png}:\n{done.stderr[-2000:]}")


def _first_png(path: Path) -> Path | None:
    if path.suffix == ".png":
        return path if path.is_file() else None
    return next(iter(sorted(path.rglob("*.png"))), None)


@pytest.mark.parametrize("program", ["cgan-run", "torch script"])
def test_cold_start(benchmark, bench_tmp, speed_model, checkpoint, program):
    """Launch to PNG on disk in a fresh process; the out dir is emptied before each round (not timed)."""
    import shutil

    model, source = speed_model
    benchmark.group = "cold start"
    root = bench_tmp / f"cold_{program.replace(' ', '_')}"
    if program == "cgan-run":
        target = root / "out"
        cmd = [str(cgan_run_exe()), *cgan_run_args(model, target, 1)]
        variant = "cgan-run --n 1 (fresh process to PNG)"
    else:
        target = root / "out" / "torch.png"
        cmd = [sys.executable, str(REPO / "bench" / "torch_generate.py"), str(checkpoint), str(target)]
        variant = "torch script: import torch, load .pth, generate, save PNG"

    def setup():
        shutil.rmtree(root / "out", ignore_errors=True)
        (root / "out").mkdir(parents=True)
        return (), {}

    root.mkdir(parents=True, exist_ok=True)
    setup()
    _run_child(cmd, target)  # warm the page cache once, like any second launch
    benchmark.pedantic(lambda: _run_child(cmd, target), setup=setup, rounds=COLD_ROUNDS[program], iterations=1)
    s = median_s(benchmark)
    record_throughput(
        benchmark, images=1, kind="cold_start", device="cpu", engine=program, variant=variant, model=source,
        goal_s=GOAL_COLD_START_S if program == "cgan-run" else None,
        note="whole process wall time (launch to exit, PNG written last)",
    )
    if program == "cgan-run":
        benchmark.extra_info["goal_met"] = s <= GOAL_COLD_START_S


# ---------------------------------------------------------------- profiles

_IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def import_profile(stderr: str, top: int = 10) -> tuple[dict[str, float], float]:
    """Top-level imports by cumulative ms from ``python -X importtime`` output, and their total."""
    tops: dict[str, float] = {}
    for line in stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m and len(m.group(3)) == 1:  # one space: imported by the script itself, not nested
            tops[m.group(4)] = tops.get(m.group(4), 0.0) + int(m.group(2)) / 1000
    total = sum(tops.values())
    best = dict(sorted(tops.items(), key=lambda kv: -kv[1])[:top])
    return {k: round(v, 1) for k, v in best.items()}, round(total, 1)


@pytest.mark.parametrize("program", ["cgan-run", "torch script"])
def test_profile_cold_start_imports(benchmark, bench_tmp, speed_model, checkpoint, program):
    """python -X importtime of the cold-start commands: which imports cost what (ms, cumulative)."""
    model, _ = speed_model
    benchmark.group = "profile"
    out = bench_tmp / f"importtime_{program.replace(' ', '_')}"
    out.mkdir(exist_ok=True)
    if program == "cgan-run":
        cmd = [sys.executable, "-X", "importtime", str(cgan_run_exe()), *cgan_run_args(model, out / "png", 1)]
    else:
        cmd = [sys.executable, "-X", "importtime", str(REPO / "bench" / "torch_generate.py"), str(checkpoint), str(out / "t.png")]
    result: dict[str, subprocess.CompletedProcess] = {}

    def run():
        result["done"] = subprocess.run(cmd, cwd=out, env=python_env(), capture_output=True, text=True)

    benchmark.pedantic(run, rounds=1, iterations=1)
    done = result["done"]
    assert done.returncode == 0, done.stderr[-2000:]
    tops, total = import_profile(done.stderr)
    benchmark.extra_info.update(
        kind="profile", variant=f"{program}: python -X importtime, top-level imports (ms, cumulative)",
        import_total_ms=total, process_s=round(median_s(benchmark), 3), top_imports_ms=tops,
    )


_PHASES = r"""
import sys, time, json
t_start = time.time()
marks = {}
def mark(name):
    marks[name] = time.time()
import numpy
mark("import numpy")
import onnxruntime
mark("import onnxruntime")
from cgan.runtime.cli import build_parser
mark("import cgan.runtime and its CLI")
args = build_parser().parse_args(["--n", "1", "--stage", "2", "--model", sys.argv[1]])
mark("parse the command line")
from cgan.runtime import load
gen = load(args.model, provider="cpu", prepack="auto", images=1)  # as cgan-run --n 1
mark("load (session created)")
images = gen.generate(stage=2, n=1, seed=0)
mark("generate 1 image")
from cgan.runtime.writers import png_bytes
with open(sys.argv[2], "wb") as f:
    f.write(png_bytes(images[0]))
mark("encode and write the PNG")
print(json.dumps({"start": t_start, "marks": marks}))
"""


def test_profile_cold_start_phases(benchmark, bench_tmp, speed_model):
    """A fresh process doing what `cgan-run --n 1` does, step by step: ms per phase."""
    model, _ = speed_model
    benchmark.group = "profile"
    png = bench_tmp / "phases.png"
    result: dict[str, object] = {}

    def run():
        launched = time.time()
        done = subprocess.run([sys.executable, "-c", _PHASES, str(model), str(png)], env=python_env(),
                              capture_output=True, text=True)
        result["launched"], result["done"], result["ended"] = launched, done, time.time()

    benchmark.pedantic(run, rounds=1, iterations=1)
    done = result["done"]
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
    times = json.loads(done.stdout.strip().splitlines()[-1])
    phases = {"interpreter start": (times["start"] - result["launched"]) * 1e3}
    prev = times["start"]
    for name, t in times["marks"].items():
        phases[name] = (t - prev) * 1e3
        prev = t
    phases["interpreter exit"] = (result["ended"] - prev) * 1e3
    benchmark.extra_info.update(
        kind="profile", variant="runtime cold start by phase, as cgan-run --n 1 (ms)",
        phases_ms={k: round(v, 1) for k, v in phases.items()},
    )


@pytest.mark.parametrize("batch", [1, 64])
def test_profile_ort_ops(benchmark, bench_tmp, speed_model, batch):
    """onnxruntime's profiler with the runtime's SessionOptions: share of kernel time per operator type."""
    from bench._ort import profile_ops, runtime_session

    model, _ = speed_model
    benchmark.group = "profile"
    options = runtime_session(model, "cpu").get_session_options()
    result: dict[str, dict] = {}
    rounds = 20 if batch == 1 else 3

    def run():
        result["p"] = profile_ops(model, batch, rounds, bench_tmp, options)

    benchmark.pedantic(run, rounds=1, iterations=1)
    p = result["p"]
    gflop = 0.27 * batch  # the Generator: ~0.27 GFLOP per image
    achieved = gflop / (p["node_ms_per_run"] / 1e3) if p["node_ms_per_run"] else None
    benchmark.extra_info.update(
        kind="profile", variant=f"ORT per-operator profile, batch {batch} (runtime session options)",
        op_share=p["op_share"], top_nodes_ms_per_run=p["top_nodes_ms_per_run"],
        kernel_ms_per_run=p["node_ms_per_run"], model_run_ms=p["model_run_ms"],
        achieved_gflop_per_s=round(achieved, 1) if achieved else None,
    )
