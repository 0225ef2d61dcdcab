"""Throughput (images/s) of the Generator: torch's CPU modes against ONNX Runtime, then the same on CUDA.

Every benchmark records ``extra_info``: engine, device, variant, batch, images_per_s (batch / median
round). ``python -m bench.report`` turns them into ratios against torch eager fp32 at each batch size.
"""

from __future__ import annotations

import os

import pytest

from bench._helpers import Interleaved, record_throughput, run_benchmark
from bench._torch_modes import CPU_COMPILED_MODES, CPU_EAGER_MODES, CUDA_MODES, EAGER, cpu_has_native_bf16, make_runner
from bench.conftest import cuda_available

BATCHES = (1, 16, 64, 256)
# Seconds of timed rounds per benchmark: enough rounds for a median on a shared machine, and the quick
# `pytest --benchmark-only` under 5 minutes on two cores.
BUDGET_S = float(os.environ.get("CGAN_BENCH_BUDGET_S", "1.0"))
LONG = pytest.mark.bench_long  # torch's modes beyond the original's eager fp32: with --bench-long


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("mode", [m if m == EAGER else pytest.param(m, marks=LONG) for m in CPU_EAGER_MODES])
def test_cpu_torch(benchmark, torch_generator, mode, batch):
    import torch

    emulated_bf16 = "bf16" in mode and not cpu_has_native_bf16()
    if emulated_bf16 and batch > 64:
        pytest.skip("no native bf16 on this CPU: emulated bf16 at batch 256 costs a minute and shows nothing new")
    benchmark.group = f"cpu throughput, batch {batch}"
    run = make_runner(torch_generator, mode, batch)
    run_benchmark(benchmark, run, budget_s=BUDGET_S)
    info = {"kind": "throughput", "device": "cpu", "engine": "torch", "variant": mode, "batch": batch,
            "threads": torch.get_num_threads()}
    if emulated_bf16:
        info["note"] = "no native bf16 on this CPU (emulated)"
    record_throughput(benchmark, images=batch, **info)


@LONG  # the compiled rows of the quick set are test_bench_peers.py's, at batch 1 and 64
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("mode", CPU_COMPILED_MODES)
def test_cpu_torch_compiled(benchmark, worker_factory, mode, batch):
    """torch.compile(freezing=True) in a worker process per mode; compiling happens before the timed calls."""
    if "bf16" in mode and not cpu_has_native_bf16():
        pytest.skip("no native bf16 on this CPU (AVX512-BF16/AMX): a compiled bf16 variant would only measure emulation")
    benchmark.group = f"cpu throughput, batch {batch}"
    worker = worker_factory(mode)
    prep = worker.request("prepare", batch=batch)
    run_benchmark(benchmark, lambda: worker.request("run", batch=batch), budget_s=BUDGET_S)
    inside = worker.request("time", batch=batch, rounds=3)["times"]
    record_throughput(
        benchmark, images=batch, kind="throughput", device="cpu", engine="torch", variant=mode, batch=batch,
        threads=worker.hello["threads"], compile_s=round(prep["first_call_s"], 2),
        worker_images_per_s=round(batch / sorted(inside)[len(inside) // 2], 2),
        note="timed through a pipe round trip to its worker process",
    )


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("options", ["default", "runtime"])
def test_cpu_ort(benchmark, speed_model, options, batch):
    """Bare session.run: default SessionOptions, and the session cgan.runtime builds."""
    from bench._ort import default_session, runner, runtime_session, session_options_summary

    path, source = speed_model
    benchmark.group = f"cpu throughput, batch {batch}"
    sess = default_session(path) if options == "default" else runtime_session(path, "cpu")
    run_benchmark(benchmark, runner(sess, batch), budget_s=BUDGET_S)
    record_throughput(
        benchmark, images=batch, kind="throughput", device="cpu", engine="onnxruntime",
        variant=f"ORT fp32, {options} session", batch=batch, model=source,
        session_options=session_options_summary(sess),
    )


# ---------------------------------------------------------------- CUDA (skipped without a GPU)

needs_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA GPU with torch CUDA and onnxruntime-gpu")


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("mode", CUDA_MODES)
def test_cuda_torch(benchmark, torch_generator, mode, batch):
    import torch

    benchmark.group = f"cuda throughput, batch {batch}"
    run = make_runner(torch_generator, mode, batch)  # synchronises after each batch
    run_benchmark(benchmark, run, budget_s=BUDGET_S, warmup=3)
    record_throughput(benchmark, images=batch, kind="throughput", device="cuda", engine="torch",
                      variant=mode, batch=batch, gpu=torch.cuda.get_device_name(0))


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_ort_iobinding(benchmark, request, precision, batch):
    from bench._ort import CUDA, default_session, iobinding_runner

    benchmark.group = f"cuda throughput, batch {batch}"
    report = request.getfixturevalue(f"onnx_{precision}")
    sess = default_session(report.path, providers=CUDA)
    assert sess.get_providers()[0] == "CUDAExecutionProvider", sess.get_providers()
    run_benchmark(benchmark, iobinding_runner(sess, batch), budget_s=BUDGET_S, warmup=3)
    record_throughput(benchmark, images=batch, kind="throughput", device="cuda", engine="onnxruntime",
                      variant=f"ORT CUDA {precision}, IO binding", batch=batch)


SETTLE_S = 0.1  # pause before each timed call of the interleaved ratio (see test_cpu_interleaved_ratio)


@pytest.mark.parametrize("batch", BATCHES)
def test_cpu_interleaved_ratio(benchmark, torch_generator, speed_model, batch):
    """torch eager fp32, ORT (default session) and ORT (runtime session) alternating call by call: ratios
    that load changes on a shared machine cannot skew (they hit all sides alike). Timed: one call of each."""
    from bench._ort import default_session, runner, runtime_session

    path, source = speed_model
    benchmark.group = "cpu interleaved ratio"
    contenders = {
        "torch": make_runner(torch_generator, "eager fp32", batch),
        "ort_default": runner(default_session(path), batch),
        "ort_runtime": runner(runtime_session(path, "cpu"), batch),
    }
    # Each call after a pause: ORT's default pool keeps spinning for tens of ms after a call returns, and a
    # pool spinning on both cores slowed the next engine's call by up to 25% (batch 16; 20 ms of pause were
    # not enough, 100 ms were: measured) -- a cost no program running one engine pays. Untimed.
    timing = Interleaved(contenders, settle_s=SETTLE_S)
    run_benchmark(benchmark, timing.round, budget_s=2 * BUDGET_S, min_rounds=5 if batch <= 64 else 3)
    med = timing.medians(skip=1)  # the first round: run_benchmark's untimed estimate
    benchmark.extra_info.update(
        kind="ratio", device="cpu", batch=batch, model=source,
        variant=f"torch eager fp32 / ORT default / ORT runtime session, interleaved, batch {batch}",
        torch_images_per_s=round(batch / med["torch"], 2),
        ort_default_images_per_s=round(batch / med["ort_default"], 2),
        ort_images_per_s=round(batch / med["ort_runtime"], 2),
        ort_over_torch=round(med["torch"] / med["ort_runtime"], 3),
        ort_default_over_torch=round(med["torch"] / med["ort_default"], 3),
        rounds_each=timing.rounds_each(skip=1),
    )
