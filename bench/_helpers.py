"""Small helpers shared by the benchmark modules: timing budgets, metrics, worker processes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(benchmark, fn: Callable[[], object], *, budget_s: float = 1.5, min_rounds: int = 3,
                  max_rounds: int = 200, warmup: int = 1):
    """Time ``fn`` with pytest-benchmark, choosing the rounds so a test costs about ``budget_s``.

    One untimed call estimates the cost (and warms caches, allocators and thread pools).
    """
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    rounds = int(min(max_rounds, max(min_rounds, budget_s / once)))
    return benchmark.pedantic(fn, rounds=rounds, warmup_rounds=max(0, warmup - 1), iterations=1)


def median_s(benchmark) -> float:
    return float(benchmark.stats.stats.median)


def record_throughput(benchmark, *, images: int, **info) -> float:
    """Store images/s (from the median round) and labels in ``benchmark.extra_info``; return images/s."""
    ips = images / median_s(benchmark)
    benchmark.extra_info.update(info)
    benchmark.extra_info["images"] = images
    benchmark.extra_info["images_per_s"] = round(ips, 2)
    return ips


def psnr(ref: np.ndarray, test: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: the repository on the path, and bytecode caching on.

    A shell with PYTHONDONTWRITEBYTECODE=1 (this development machine sets it) makes every fresh process
    compile our modules from source again (~35 ms of cgan-run's start here), while torch and numpy read
    the .pyc files pip wrote at install; an installed dementia-cgan has its .pyc too, so children run as
    an installed package does (the first, untimed round writes them)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if extra:
        env.update(extra)
    return env


class Worker:
    """A bench/_worker.py process running one torch mode; answers JSON requests (see that module)."""

    def __init__(self, mode: str, checkpoint: Path) -> None:
        self.mode = mode
        # stderr to a file: a pipe nobody reads would fill up with inductor's warnings and block the worker
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._worker", "--mode", mode, "--checkpoint", str(checkpoint)],
            cwd=REPO,
            env=python_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            self.stderr.seek(0)
            err = self.stderr.read()[-3000:]
            raise RuntimeError(f"worker for {self.mode!r} died:\n{err}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"worker for {self.mode!r}: {answer.get('error')}\n{answer.get('traceback', '')}")
        return answer

    def request(self, cmd: str, **kw) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request("quit")
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.stderr):
            f.close()


def cpu_peak_gflops() -> dict[str, float]:
    """fp32 peak of the cores this process may use: clock x 2 FMA units x lanes x 2 flops, AVX2 (8 lanes) and,
    where the CPU has it, AVX-512 (16 lanes)."""
    mhz, flags = 0.0, set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz") and not mhz:
            mhz = float(line.split(":")[1])
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":")[1].split())
    cores = len(os.sched_getaffinity(0))
    per_lane = mhz / 1e3 * 2 * 2 * cores  # GHz x 2 FMA units x 2 flops per FMA x cores
    out = {"clock_ghz": round(mhz / 1e3, 3), "cores": cores, "avx2_gflops": round(per_lane * 8, 1)}
    if "avx512f" in flags:
        out["avx512_gflops"] = round(per_lane * 16, 1)
    return out


def gflop_per_image(path: Path) -> float:
    """Multiply-adds x 2 of every (transposed) convolution of the fp32 generator, from its weights and shapes."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    inits = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    flops = 0
    for node in model.graph.node:
        if node.op_type == "ConvTranspose":
            cin, cout, kh, kw = inits[node.input[1]]
            h, w = shapes[node.input[0]][2:]
            flops += 2 * cin * cout * kh * kw * h * w
    return flops / 1e9
