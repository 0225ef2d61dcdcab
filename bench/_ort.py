"""ONNX Runtime sessions and runners for the benchmarks, built outside the timed calls."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

from cgan.runtime.contract import INPUT_STAGE, INPUT_Z, OUTPUT_IMAGE, noise

CPU = ["CPUExecutionProvider"]
CUDA = [("CUDAExecutionProvider", {}), "CPUExecutionProvider"]


def feeds(batch: int, z_dim: int = 100, num_classes: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs by the runtime's noise contract; stages cycle through every class."""
    return {
        INPUT_Z: noise(seed, 0, batch, z_dim),
        INPUT_STAGE: (np.arange(batch) % num_classes).astype(np.int64),
    }


def default_session(path: Path, providers=None) -> ort.InferenceSession:
    """A session with onnxruntime's default SessionOptions."""
    return ort.InferenceSession(str(path), providers=providers or CPU)


def find_session(obj) -> ort.InferenceSession:
    """The InferenceSession held by a runtime generator object (whatever the attribute is called)."""
    seen = set()
    stack = [obj]
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ort.InferenceSession):
            return cur
        attrs = getattr(cur, "__dict__", None) or {}
        slots = [getattr(cur, s) for s in getattr(type(cur), "__slots__", ()) if hasattr(cur, s)]
        stack.extend(v for v in list(attrs.values()) + slots if not isinstance(v, (str, bytes, int, float, np.ndarray)))
    raise LookupError(f"no onnxruntime.InferenceSession inside {type(obj).__name__}")


def runtime_generator(path: Path, provider: str = "cpu", **options):
    """``cgan.runtime.load(path, provider=...)`` on ONNX Runtime (the rows these feed are ORT's; test_bench_peers.py
    times the engine choice itself); skips the benchmark when the runtime has no ``load`` yet."""
    try:
        from cgan.runtime import load
    except ImportError:
        try:
            from cgan.runtime.api import load
        except ImportError as exc:
            import pytest

            pytest.skip(f"cgan.runtime.load is not available: {exc}")
    options.setdefault("engine", "onnxruntime")
    return load(path, provider=provider, **options)


def runtime_session(path: Path, provider: str = "cpu") -> ort.InferenceSession:
    """The session cgan.runtime builds (its SessionOptions), for timing the bare session.run."""
    return find_session(runtime_generator(path, provider))


def session_options_summary(sess: ort.InferenceSession) -> dict[str, object]:
    so = sess.get_session_options()
    return {
        "graph_optimization_level": str(so.graph_optimization_level).split(".")[-1],
        "intra_op_num_threads": so.intra_op_num_threads,
        "inter_op_num_threads": so.inter_op_num_threads,
        "execution_mode": str(so.execution_mode).split(".")[-1],
        "enable_mem_pattern": so.enable_mem_pattern,
        "enable_cpu_mem_arena": so.enable_cpu_mem_arena,
        "providers": sess.get_providers(),
    }


def runner(sess: ort.InferenceSession, batch: int, seed: int = 0) -> Callable[[], object]:
    f = feeds(batch, seed=seed)
    out = [OUTPUT_IMAGE]
    return lambda: sess.run(out, f)


def iobinding_runner(sess: ort.InferenceSession, batch: int, seed: int = 0) -> Callable[[], object]:
    """CUDA: inputs copied to the device once, output allocated on the device; no host copies timed."""
    f = feeds(batch, seed=seed)
    binding = sess.io_binding()
    for name, value in f.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
    binding.bind_output(OUTPUT_IMAGE, "cuda", 0)

    def run():
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run


def profile_ops(path: Path, batch: int, rounds: int, out_dir: Path, options: ort.SessionOptions | None = None) -> dict:
    """Per-operator time with ORT's profiler: {op_type: share of node time}, plus the total per run."""
    so = options or ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(out_dir / f"ort_profile_b{batch}")
    sess = ort.InferenceSession(str(path), so, providers=CPU)
    run = runner(sess, batch)
    run()
    for _ in range(rounds):
        run()
    trace = json.loads(Path(sess.end_profiling()).read_text())
    by_op: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    model_run_us = []
    for ev in trace:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            by_op[op] += ev["dur"]
            by_node[ev["name"][: -len("_kernel_time")]] += ev["dur"]
        elif ev.get("cat") == "Session" and ev.get("name") == "model_run":
            model_run_us.append(ev["dur"])
    total = sum(by_op.values()) or 1.0
    runs = rounds + 1
    return {
        "op_share": {k: round(v / total, 4) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
        "top_nodes_ms_per_run": {
            k: round(v / runs / 1000, 3) for k, v in sorted(by_node.items(), key=lambda kv: -kv[1])[:8]
        },
        "node_ms_per_run": round(total / runs / 1000, 3),
        "model_run_ms": round(float(np.median(model_run_us)) / 1000, 3) if model_run_us else None,
    }
