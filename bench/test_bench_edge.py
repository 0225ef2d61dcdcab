"""Edge use: the int8 model, one image, cold start -- each against the fp32 runtime and torch, side by side.

- int8: quality (PSNR over the output range, grey levels, every stage) and size against the fp32
  model, and images/s at batch 1 and 64 with torch eager fp32, ORT fp32 and ORT int8 alternating
  call by call (load on a shared machine hits all three alike).
- one image: batch-1 latency of the runtime's session settings against the other thread counts and
  spinning choices, fp32 and int8, interleaved; reported with the fraction of the fp32 peak.
- cold start: `cgan-run --n 1` (fp32 and int8 model) and bench/torch_generate.py alternating round by
  round, each a fresh process from launch to the written PNG.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench._helpers import REPO, Interleaved, cpu_peak_gflops, gflop_per_image, python_env

GOAL_ONE_IMAGE_MS = 3.0
GOAL_COLD_START_S = 0.35
GOAL_COLD_START_RATIO = 0.15
GOAL_INT8_MB = 4.5
COLD_ROUNDS = 5


@pytest.fixture(scope="module")
def int8_model(speed_model, bench_tmp):
    """The speed model quantized by `cgan-export --int8` (its library call, default size mode), with its report."""
    from cgan.export.int8_export import export_int8

    path, _ = speed_model
    return export_int8(path, bench_tmp / "edge" / "generator_int8.onnx", model_card=False)


def _interleave(contenders: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each contender, called one after another, ``rounds`` times (after one untimed call each)."""
    timing = Interleaved(contenders)
    timing.warm()
    return timing.run(rounds)


def test_int8_quality_and_size(benchmark, speed_model, int8_model):
    """The int8 model against fp32 on fresh noise of every stage (not the export's own validation set)."""
    from cgan.export.int8 import measure_fidelity, stage_feeds
    from cgan.runtime import load
    from bench._ort import find_session

    path, source = speed_model
    fp32, int8 = load(path, provider="cpu", engine="onnxruntime"), load(int8_model.path, provider="cpu", engine="onnxruntime")
    feeds = stage_feeds(fp32.info, 64, seed=12345)
    result: dict = {}
    benchmark.pedantic(lambda: result.update(f=measure_fidelity(find_session(fp32), find_session(int8), feeds, fp32.info.num_classes)),
                       rounds=1, iterations=1)
    fid = result["f"]
    benchmark.group = "int8"
    benchmark.extra_info.update(
        kind="int8_quality", model=source, variant="int8 against fp32, 64 fresh images per stage",
        fp32_mb=round(path.stat().st_size / 1e6, 2), int8_mb=round(int8_model.path.stat().st_size / 1e6, 2),
        psnr_db_worst=round(fid.worst_psnr_db, 2), mae_grey_worst=round(fid.worst_mae_grey, 3),
        max_grey_worst=fid.worst_max_grey, p999_grey_worst=fid.worst_p999_grey, mode=int8_model.mode, isa=int8_model.isa,
        psnr_db_per_stage=[round(v, 2) for v in fid.psnr_db], mae_grey_per_stage=[round(v, 3) for v in fid.mae_grey],
        fp32_layers=list(int8_model.fp32_layers),
        goal_met=fid.meets() and int8_model.path.stat().st_size <= GOAL_INT8_MB * 1e6,
    )


@pytest.mark.parametrize("batch", [1, 64])
def test_int8_speed_side_by_side(benchmark, torch_generator, speed_model, int8_model, batch):
    """torch eager fp32, ORT fp32 and ORT int8 (both with the runtime's session) alternating call by call."""
    from bench._ort import runner, runtime_session
    from bench._torch_modes import make_runner

    path, source = speed_model
    contenders = {
        "torch": make_runner(torch_generator, "eager fp32", batch),
        "fp32": runner(runtime_session(path, "cpu"), batch),
        "int8": runner(runtime_session(int8_model.path, "cpu"), batch),
    }
    result: dict = {}
    rounds = 40 if batch == 1 else 4
    benchmark.group = "int8"
    benchmark.pedantic(lambda: result.update(med=_interleave(contenders, rounds)), rounds=1, iterations=1)
    med = result["med"]
    benchmark.extra_info.update(
        kind="int8_speed", batch=batch, model=source, rounds_each=rounds,
        variant=f"torch eager fp32 / ORT fp32 / ORT int8, interleaved, batch {batch}",
        **{f"{k}_images_per_s": round(batch / v, 2) for k, v in med.items()},
        **{f"{k}_ms": round(v * 1e3, 3) for k, v in med.items()},
        int8_over_fp32=round(med["fp32"] / med["int8"], 3), int8_over_torch=round(med["torch"] / med["int8"], 3),
        fp32_over_torch=round(med["torch"] / med["fp32"], 3),
    )


def test_one_image_settings(benchmark, speed_model, int8_model):
    """Batch 1: intra-op threads x spinning, fp32 and int8, interleaved; the runtime's own choice beside them."""
    import onnxruntime as ort

    from bench._ort import find_session, runner, runtime_generator

    path, source = speed_model
    threads = sorted({1, len(os.sched_getaffinity(0))})
    contenders = {}
    for (name, model), n, spin in itertools.product((("fp32", path), ("int8", int8_model.path)), threads, (0, 1)):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = n, 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning", str(spin))
        so.log_severity_level = 3
        contenders[f"{name} threads={n} spin={spin}"] = runner(ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]), 1)
    for name, model in (("fp32", path), ("int8", int8_model.path)):
        gen = runtime_generator(model, "cpu")
        contenders[f"{name} runtime session"] = runner(find_session(gen), 1)
        contenders[f"{name} runtime generate()"] = (lambda g: lambda: g.generate(stage=2, n=1, seed=0))(gen)
    result: dict = {}
    benchmark.group = "one image"
    benchmark.pedantic(lambda: result.update(med=_interleave(contenders, 30)), rounds=1, iterations=1)
    ms = {k: round(v * 1e3, 3) for k, v in result["med"].items()}
    gflop = gflop_per_image(path)
    peak = cpu_peak_gflops()
    best = min(ms, key=ms.get)
    runtime_ms = ms["fp32 runtime session"]
    benchmark.extra_info.update(
        kind="one_image", model=source, variant="one image (batch 1), median ms, interleaved",
        median_ms=ms, best=best, gflop_per_image=round(gflop, 4), peak=peak,
        fp32_runtime_fraction_of_avx2_peak=round(gflop / (runtime_ms / 1e3) / peak["avx2_gflops"], 3),
        best_fraction_of_avx2_peak=round(gflop / (ms[best] / 1e3) / peak["avx2_gflops"], 3),
        goal_ms=GOAL_ONE_IMAGE_MS, goal_met=min(ms["fp32 runtime session"], ms["int8 runtime session"]) <= GOAL_ONE_IMAGE_MS,
    )


def _in_blocks(contenders: dict, rounds: int, block: int) -> dict[str, float]:
    """Median seconds per call of each contender: ``block`` calls in a row (its weights stay in cache, as
    in a program that makes one image after another), contenders taking turns block by block, ``rounds``
    times, so load on a shared machine falls on all of them alike."""
    timing = Interleaved(contenders, block=block)
    timing.warm(5)
    return timing.run(rounds)


def test_one_image_latency_mode(benchmark, speed_model, int8_model):
    """Batch 1 as an interactive program makes it: the runtime's default session against ``load(latency=True)``
    (worker threads spin between calls), fp32 and int8, generate() end to end, in turns of 50 calls."""
    from bench._ort import runtime_generator

    path, source = speed_model
    contenders = {}
    for name, model in (("fp32", path), ("int8", int8_model.path)):
        for mode, latency in (("default", False), ("latency", True)):
            gen = runtime_generator(model, "cpu", latency=latency)
            contenders[f"{name} {mode}"] = (lambda g: lambda: g.generate(stage=2, n=1, seed=0))(gen)
    result: dict = {}
    benchmark.group = "one image"
    benchmark.pedantic(lambda: result.update(med=_in_blocks(contenders, 6, 50)), rounds=1, iterations=1)
    ms = {k: round(v * 1e3, 3) for k, v in result["med"].items()}
    gflop = gflop_per_image(path)
    peak = cpu_peak_gflops()
    benchmark.extra_info.update(
        kind="one_image_mode", model=source, variant="one image (batch 1), generate(), median ms, turns of 50 calls",
        median_ms=ms, gflop_per_image=round(gflop, 4), peak=peak,
        fraction_of_avx2_peak={k: round(gflop / (v / 1e3) / peak["avx2_gflops"], 3) for k, v in ms.items()},
        latency_over_default={p: round(ms[f"{p} default"] / ms[f"{p} latency"], 3) for p in ("fp32", "int8")},
        goal_ms=GOAL_ONE_IMAGE_MS, goal_met=ms["fp32 latency"] <= GOAL_ONE_IMAGE_MS,
    )


def _cgan_run(model: Path, out: Path) -> list[str]:
    exe = Path(sys.executable).with_name("cgan-run")
    if not exe.exists():
        pytest.skip("the cgan-run console script is not installed (pip install -e .)")
    return [str(exe), "--model", str(model), "--n", "1", "--stage", "2", "--seed", "0", "--out", str(out)]


def test_cold_start_side_by_side(benchmark, bench_tmp, speed_model, int8_model, checkpoint):
    """Fresh processes, launch to PNG on disk: cgan-run fp32, cgan-run int8, the torch script, round by round."""
    path, source = speed_model
    root = bench_tmp / "edge_cold"
    cmds = {
        "cgan-run fp32": (_cgan_run(path, root / "fp32"), root / "fp32"),
        "cgan-run int8": (_cgan_run(int8_model.path, root / "int8"), root / "int8"),
        "torch script": ([sys.executable, str(REPO / "bench" / "torch_generate.py"), str(checkpoint), str(root / "torch" / "t.png")],
                         root / "torch"),
    }

    def launcher(cmd: list[str], out: Path):
        def run():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            done = subprocess.run(cmd, cwd=root, env=python_env(), capture_output=True, text=True)
            if done.returncode != 0 or not any(out.rglob("*.png")):
                raise AssertionError(f"{cmd[:2]} exited {done.returncode} without a PNG:\n{done.stderr[-2000:]}")
        return run

    root.mkdir(parents=True, exist_ok=True)
    contenders = {k: launcher(*v) for k, v in cmds.items()}  # the untimed first call warms the page cache
    result: dict = {}
    benchmark.group = "cold start"
    benchmark.pedantic(lambda: result.update(med=_interleave(contenders, COLD_ROUNDS)), rounds=1, iterations=1)
    med = result["med"]
    benchmark.extra_info.update(
        kind="cold_side_by_side", model=source, rounds_each=COLD_ROUNDS,
        variant="fresh process to PNG (rmtree and mkdir of the out dir included), interleaved round by round",
        seconds={k: round(v, 3) for k, v in med.items()},
        fp32_over_torch=round(med["cgan-run fp32"] / med["torch script"], 3),
        int8_over_torch=round(med["cgan-run int8"] / med["torch script"], 3),
        goal_s=GOAL_COLD_START_S, goal_ratio=GOAL_COLD_START_RATIO,
        goal_met=med["cgan-run fp32"] <= GOAL_COLD_START_S and med["cgan-run fp32"] / med["torch script"] <= GOAL_COLD_START_RATIO,
    )
