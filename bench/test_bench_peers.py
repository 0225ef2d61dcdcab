"""The runtime against the engines a user would pick instead, interleaved call by call, batch 1 and 64.

Contenders (every one fed the same batch; models and compiled graphs built before timing):

- torch eager fp32 (the original's path) and ``torch.compile`` (inductor, ``freezing=True``, in a worker
  process; skipped, with the reason recorded, where there is no C++ compiler for inductor);
- the bare ONNX Runtime session, with default SessionOptions and with the runtime's;
- OpenVINO (``[openvino]`` extra) as a user would call it: ``core.compile_model(path, "CPU")``, defaults;
- the runtime itself, ``load(...).generate()`` (uint8 images, noise drawn by the contract), with
  ``engine="onnxruntime"`` and with ``engine="auto"`` (what ``load()`` does with nothing said).

Each call follows a pause (untimed) so that the previous engine's idle threads have gone quiet, as in
test_bench_throughput.py's interleaved ratio. Every row is also read as a fraction of the CPU's fp32
peak (clock x FMA units x lanes x cores; AVX-512 lanes where the CPU has them).
"""

from __future__ import annotations

import os
import shutil

import pytest

from bench._helpers import Interleaved, cpu_peak_gflops, gflop_per_image, run_benchmark
from bench._torch_modes import EAGER, make_runner

SETTLE_S = 0.1
BUDGET_S = float(os.environ.get("CGAN_BENCH_BUDGET_S", "1.0"))  # scales the seconds of timed rounds (quick trial runs)
COMPILED = "compile fp32 (freezing)"


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on CPU, or None (then the torch.compile row is skipped)."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _openvino_runner(path, batch: int):
    import openvino as ov

    from bench._ort import feeds

    compiled = ov.Core().compile_model(str(path), "CPU")
    request = compiled.create_infer_request()
    f = feeds(batch)
    return lambda: request.infer(f)


@pytest.mark.parametrize("batch", [1, 64])
def test_cpu_peers_interleaved(benchmark, torch_generator, worker_factory, speed_model, bench_long, batch):
    from bench._ort import default_session, runner, runtime_session
    from cgan.runtime import load
    from cgan.runtime.cpu import isa_class, isa_summary
    from cgan.runtime.engines import openvino_installed

    path, source = speed_model
    skipped: dict[str, str] = {}
    contenders = {"torch eager fp32": make_runner(torch_generator, EAGER, batch)}
    if cxx_compiler():
        worker = worker_factory(COMPILED)
        worker.request("prepare", batch=batch)
        contenders["torch.compile fp32 (freezing)"] = lambda: worker.request("run", batch=batch)
    else:
        skipped["torch.compile fp32 (freezing)"] = "no C++ compiler (g++/c++/clang++) for inductor on this machine"
    contenders["ORT session, default options"] = runner(default_session(path), batch)
    contenders["ORT session, runtime options"] = runner(runtime_session(path, "cpu"), batch)
    if openvino_installed():
        contenders["OpenVINO compile_model, defaults"] = _openvino_runner(path, batch)
    else:
        skipped["OpenVINO compile_model, defaults"] = "openvino is not installed (pip install 'dementia-cgan[openvino]')"
    gen_ort = load(path, provider="cpu", engine="onnxruntime")
    gen_auto = load(path, provider="cpu")
    contenders["runtime generate(), engine onnxruntime"] = lambda: gen_ort.generate(stage=1, n=batch, seed=0)
    contenders[f"runtime generate(), engine auto ({gen_auto.engine})"] = lambda: gen_auto.generate(stage=1, n=batch, seed=0)
    timing = Interleaved(contenders, settle_s=SETTLE_S)
    timing.warm(2)  # and, for OpenVINO's runtime engine, the static-shape compile of this batch

    benchmark.group = "cpu peers, interleaved"
    budget_s = (30.0 if batch == 1 else 45.0) if bench_long else (8.0 if batch == 1 else 12.0)  # quick by default
    run_benchmark(benchmark, timing.round, budget_s=budget_s * BUDGET_S, min_rounds=5)
    med = timing.medians(skip=1)  # the first round: run_benchmark's untimed estimate
    gflop = gflop_per_image(path)
    peak = cpu_peak_gflops()
    fp32_peak = peak.get("avx512_gflops") or peak["avx2_gflops"]
    benchmark.extra_info.update(
        kind="peers", device="cpu", batch=batch, model=source, rounds_each=timing.rounds_each(skip=1),
        variant=f"torch eager / torch.compile / ORT / OpenVINO / runtime, interleaved, batch {batch}",
        median_ms={k: round(v * 1e3, 3) for k, v in med.items()},
        images_per_s={k: round(batch / v, 2) for k, v in med.items()},
        fraction_of_fp32_peak={k: round(gflop * batch / v / fp32_peak, 4) for k, v in med.items()},
        gflop_per_image=round(gflop, 4), peak=peak, fp32_peak_gflops=fp32_peak,
        isa=isa_summary(), isa_class=isa_class(), runtime_engine=gen_auto.engine, skipped=skipped,
    )
