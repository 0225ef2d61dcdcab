"""End to end: ``cgan-run --n 4096`` to PNG files against the bare session's throughput at the same batch size.

The whole process is timed (launch, model load, noise, inference, uint8 mapping, PNG encoding and
writing). The bare session figure is measured in the same test with the same SessionOptions, so
the share is a side-by-side ratio; the goal is >= 70%.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bench._helpers import Interleaved, python_env, record_throughput
from bench.test_bench_latency import cgan_run_args, cgan_run_exe

pytestmark = pytest.mark.bench_long  # run with --bench-long (bench/README.md)

N_IMAGES = 4096
BATCH = 64  # passed to cgan-run as --batch-size, so both sides run the same batches
GOAL_SHARE = 0.7


def test_cgan_run_4096(benchmark, bench_tmp, speed_model):
    from bench._ort import find_session, runner, runtime_generator

    model, source = speed_model
    benchmark.group = "end to end"
    out = bench_tmp / "e2e"
    cmd = [str(cgan_run_exe()), *cgan_run_args(model, out, N_IMAGES, ("--batch-size", str(BATCH)))]

    # The bare session first: same model, the runtime's own session, same batch size.
    sess = find_session(runtime_generator(model, "cpu"))
    bare = Interleaved({"bare": runner(sess, BATCH)})
    bare.warm()
    bare_ips = BATCH / bare.run_for(4.0, min_rounds=3)["bare"]
    del sess, bare

    def setup():
        shutil.rmtree(out, ignore_errors=True)
        return (), {}

    engine = []

    def run():
        done = subprocess.run(cmd, env=python_env(), capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"cgan-run exited {done.returncode}:\n{done.stderr[-2000:]}")
        engine[:] = [w.split()[0] for w in done.stderr.split("engine: ")[1:2]]  # the engine auto chose, as cgan-run printed it

    benchmark.pedantic(run, setup=setup, rounds=1, iterations=1)
    pngs = list(out.rglob("*.png"))
    assert len(pngs) == N_IMAGES, f"expected {N_IMAGES} PNGs under {out}, found {len(pngs)}"
    ips = record_throughput(
        benchmark, images=N_IMAGES, kind="e2e", device="cpu", engine="cgan-run", batch=BATCH, model=source,
        variant=f"cgan-run --n {N_IMAGES} --batch-size {BATCH} (to PNG)",
        bare_images_per_s=round(bare_ips, 2),
        note=f"whole process, engine {engine[0] if engine else '?'}; bare ONNX Runtime session measured in the same test",
    )
    benchmark.extra_info["share_of_bare_session"] = round(ips / bare_ips, 3)
    benchmark.extra_info["goal_met"] = ips / bare_ips >= GOAL_SHARE
    shutil.rmtree(out, ignore_errors=True)
