"""Benchmark fixtures and the rules that keep plain ``pytest`` fast and ``pytest --benchmark-only`` quick.

Benchmark tests under bench/ run only with ``pytest --benchmark-only``; a plain ``pytest`` skips
them (they take minutes). ``pytest --benchmark-only`` alone runs the quick set, every headline
figure (parity, throughput against torch and the peers, one image, cold start, int8); the long
benchmarks (marked ``bench_long``: balancing, training, the web page, end to end, torch's whole mode
sweep) run only with ``--bench-long`` as well. With ``--benchmark-only`` and no ``--benchmark-json``,
the results are also written to ``.benchmarks/latest.json`` for ``python -m bench.report``.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_JSON = REPO / ".benchmarks" / "latest.json"


def _benchmark_only(config) -> bool:
    try:
        return bool(config.getoption("benchmark_only"))
    except ValueError:  # pytest-benchmark not installed
        return False


def pytest_addoption(parser):
    parser.addoption("--bench-long", action="store_true", default=False,
                     help="with --benchmark-only: also run the long benchmarks (marked bench_long; see bench/README.md)")


def long_benchmarks(config) -> bool:
    """Whether this run includes the long benchmarks (``--bench-long``)."""
    try:
        return bool(config.getoption("bench_long"))
    except ValueError:  # the option is registered by this file, which pytest did not load first
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "bench_long: a long benchmark, run only with --benchmark-only --bench-long")
    if _benchmark_only(config) and not config.getoption("benchmark_json", None):
        DEFAULT_JSON.parent.mkdir(exist_ok=True)
        config.option.benchmark_json = DEFAULT_JSON
        session = getattr(config, "_benchmarksession", None)
        if session is not None:  # this conftest was loaded after the plugin read its options
            session.json = DEFAULT_JSON


def pytest_collection_modifyitems(config, items):
    if _benchmark_only(config):
        if not long_benchmarks(config):
            skip_long = pytest.mark.skip(reason="long benchmark: runs with `pytest --benchmark-only --bench-long` (see bench/README.md)")
            for item in items:
                if item.get_closest_marker("bench_long") is not None:
                    item.add_marker(skip_long)
        return
    skip = pytest.mark.skip(reason="benchmark: runs only with `pytest --benchmark-only` (see bench/README.md)")
    for item in items:
        if BENCH_DIR in Path(str(item.fspath)).resolve().parents and "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _isa() -> dict[str, str]:
    """The vector and int8 instructions every speed figure depends on (AVX2 / AVX-512 / VNNI / AMX flags)."""
    from cgan.runtime.cpu import isa_class, isa_summary

    return {"class": isa_class(), "flags": isa_summary()}


def pytest_benchmark_update_machine_info(config, machine_info):
    """Versions and CPU for the report (pytest-benchmark's own machine info lacks the libraries)."""
    import numpy
    import onnxruntime

    info = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__,
        "ort_providers": onnxruntime.get_available_providers(),
        "isa": _isa(),
        "python_version": platform.python_version(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import openvino

        info["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:
        pass
    machine_info["cgan"] = info


@pytest.fixture(scope="session")
def bench_long(request) -> bool:
    """True with ``--bench-long``: benchmarks with a time budget take their long one."""
    return long_benchmarks(request.config)


# ---------------------------------------------------------------- models

@pytest.fixture(scope="session")
def bench_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="session")
def torch_generator():
    """The seed-size Generator (128 px, 3.64 M parameters), briefly trained, BatchNorm statistics re-estimated."""
    pytest.importorskip("torch")
    from bench._models import briefly_trained_generator

    return briefly_trained_generator()


@pytest.fixture(scope="session")
def checkpoint(torch_generator, bench_tmp) -> Path:
    """``torch_generator`` as the original project's ``cDCGAN_generator.pth``."""
    from bench._models import save_seed_checkpoint

    return save_seed_checkpoint(torch_generator, bench_tmp / "cDCGAN_generator.pth")


def _exporter():
    try:
        from cgan.export import api
    except ImportError as exc:
        pytest.skip(f"the exporter (cgan.export.api) is not available: {exc}")
    return api


@pytest.fixture(scope="session")
def onnx_fp32(torch_generator, bench_tmp):
    """ExportReport of ``torch_generator`` exported to fp32 ONNX by cgan.export."""
    _exporter()
    from bench._models import export_onnx

    return export_onnx(torch_generator, bench_tmp / "generator_fp32.onnx")


@pytest.fixture(scope="session")
def onnx_fp16(torch_generator, bench_tmp):
    """ExportReport of the fp16 export, or a skip when the exporter does not offer fp16."""
    import inspect

    api = _exporter()
    if "fp16" not in inspect.signature(api.export_generator).parameters:
        pytest.skip("the exporter has no fp16 option")
    from bench._models import export_onnx

    return export_onnx(torch_generator, bench_tmp / "generator_fp16.onnx", fp16=True)


@pytest.fixture(scope="session")
def speed_model(onnx_fp32) -> tuple[Path, str]:
    """The ONNX file the speed benchmarks run: the embedded default model when present, else the fresh export."""
    from bench._models import EMBEDDED_DEFAULT

    if EMBEDDED_DEFAULT.is_file():
        from cgan.runtime.contract import read_metadata

        info = read_metadata(EMBEDDED_DEFAULT)
        if info.precision == "fp32" and info.img_size == 128:
            return EMBEDDED_DEFAULT, "embedded default"
    return onnx_fp32.path, "fresh export of the briefly trained seed-size Generator"


@pytest.fixture(scope="session")
def worker_factory(checkpoint):
    """``worker_factory(mode)``: one bench/_worker.py process per torch mode, kept for the session."""
    from bench._helpers import Worker

    workers: dict[str, Worker] = {}

    def get(mode: str) -> Worker:
        if mode not in workers:
            workers[mode] = Worker(mode, checkpoint)
        return workers[mode]

    yield get
    for w in workers.values():
        w.close()


def cuda_available() -> bool:
    try:
        import onnxruntime
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
