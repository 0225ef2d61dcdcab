"""Small helpers shared by the benchmark modules: timing budgets, the interleaved timing loop, metrics, worker processes."""

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


class Interleaved:
    """Contenders called one after another, each call timed on its own: the one timing loop of the benchmarks.

    ``contenders`` maps a name to a callable doing one unit of work (models, sessions and inputs built
    beforehand). A round calls each contender in turn, ``block`` times in a row, after a pause of
    ``settle_s`` (untimed) before each call, and ``prepare(name)`` (untimed) where given; with
    ``alternate`` every other round runs them in reverse order, so none always goes first. A load change
    on a shared machine then falls on all of them alike, which is what makes their ratios robust.
    ``times`` holds every call's seconds.
    """

    def __init__(self, contenders: dict[str, Callable[[], object]], *, settle_s: float = 0.0, block: int = 1,
                 alternate: bool = False, prepare: Callable[[str], object] | None = None) -> None:
        self.contenders = dict(contenders)
        self.settle_s = settle_s
        self.block = block
        self.alternate = alternate
        self.prepare = prepare
        self.rounds = 0
        self.times: dict[str, list[float]] = {name: [] for name in self.contenders}

    def warm(self, calls: int = 1) -> None:
        """``calls`` untimed calls of each contender (caches, allocators, thread pools, compiles)."""
        for fn in self.contenders.values():
            for _ in range(calls):
                fn()

    def round(self) -> None:
        """One timed turn of every contender."""
        order = list(self.contenders.items())
        if self.alternate and self.rounds % 2:
            order.reverse()
        self.rounds += 1
        for name, fn in order:
            for _ in range(self.block):
                if self.prepare is not None:
                    self.prepare(name)
                if self.settle_s:
                    time.sleep(self.settle_s)
                t0 = time.perf_counter()
                fn()
                self.times[name].append(time.perf_counter() - t0)

    def run(self, rounds: int) -> dict[str, float]:
        """``rounds`` rounds; the median seconds per call of each contender."""
        for _ in range(rounds):
            self.round()
        return self.medians()

    def run_for(self, seconds: float, *, min_rounds: int = 3) -> dict[str, float]:
        """Rounds until ``seconds`` have passed and at least ``min_rounds`` were made; the medians."""
        deadline = time.perf_counter() + seconds
        made = 0
        while made < min_rounds or time.perf_counter() < deadline:
            self.round()
            made += 1
        return self.medians()

    def medians(self, *, skip: int = 0) -> dict[str, float]:
        """Median seconds per call of each contender, leaving out its first ``skip`` calls when more remain."""
        return {name: float(np.median(v[skip:] if len(v) > skip else v)) for name, v in self.times.items()}

    def rounds_each(self, *, skip: int = 0) -> int:
        return min(len(v) for v in self.times.values()) - skip


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
