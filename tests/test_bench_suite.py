"""The benchmark suite's shape: ``pytest --benchmark-only`` is the quick set of every headline figure, the long
benchmarks wait for ``--bench-long``, and every side-by-side timing goes through one loop (bench/_helpers.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
import time

from conftest import REPO

sys.path.insert(0, str(REPO))
from bench._helpers import Interleaved  # noqa: E402

LONG_FILES = {"test_bench_balance.py", "test_bench_train.py", "test_bench_web.py", "test_bench_e2e.py"}
# the headline figures: parity, throughput against torch and the peers, one image, cold start, int8
HEADLINES = (
    "test_bench_parity.py::test_parity",
    "test_bench_throughput.py::test_cpu_interleaved_ratio",
    "test_bench_throughput.py::test_cpu_torch[eager fp32",
    "test_bench_throughput.py::test_cpu_ort",
    "test_bench_peers.py::test_cpu_peers_interleaved",
    "test_bench_latency.py::test_one_image",
    "test_bench_latency.py::test_cold_start",
    "test_bench_edge.py::test_int8_quality_and_size",
    "test_bench_edge.py::test_int8_speed_side_by_side",
)


def _collect(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "--benchmark-only", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if line.startswith("bench/")]


def test_the_quick_set_has_every_headline_figure_and_no_long_benchmark():
    quick = _collect("bench", "-m", "not bench_long")
    long = _collect("bench", "-m", "bench_long")
    for headline in HEADLINES:
        assert any(headline in node for node in quick), f"{headline} is not in the quick set"
    assert not [n for n in quick if n.split("::")[0].split("/")[-1] in LONG_FILES]
    assert {n.split("::")[0].split("/")[-1] for n in long} >= LONG_FILES
    assert any("test_cpu_torch_compiled" in n for n in long) and not any("test_cpu_torch_compiled" in n for n in quick)


def test_long_benchmarks_are_skipped_without_bench_long():
    done = subprocess.run([sys.executable, "-m", "pytest", "--benchmark-only", "-q", "-rs", "-p", "no:cacheprovider",
                           "bench/test_bench_e2e.py", "bench/test_bench_balance.py"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "2 skipped" in done.stdout and "--bench-long" in done.stdout, done.stdout[-2000:]


def test_interleaved_alternates_blocks_and_keeps_preparation_untimed():
    calls: list[str] = []
    prepared: list[str] = []

    def slow():
        calls.append("slow")
        time.sleep(0.02)

    def fast():
        calls.append("fast")

    def prepare(name: str):
        prepared.append(name)
        time.sleep(0.03)  # never counted in the contender's time

    timing = Interleaved({"slow": slow, "fast": fast}, block=2, alternate=True, prepare=prepare)
    med = timing.run(2)
    assert calls == ["slow", "slow", "fast", "fast", "fast", "fast", "slow", "slow"]
    assert prepared == calls
    assert [len(v) for v in timing.times.values()] == [4, 4] and timing.rounds_each() == 4
    assert med["slow"] >= 0.02 and med["fast"] < 0.015


def test_interleaved_run_for_and_medians_skip():
    timing = Interleaved({"a": lambda: None})
    timing.run_for(0.0, min_rounds=3)
    assert timing.rounds_each() == 3
    timing.times["a"] = [10.0, 1.0, 2.0, 3.0]
    assert timing.medians(skip=1)["a"] == 2.0 and timing.medians()["a"] == 2.5


def test_bench_times_side_by_side_calls_in_one_place():
    """No benchmark module times calls with a loop of its own: time.perf_counter appears in bench/_helpers.py
    (and in the web page's milestones, which the browser reports), nowhere else."""
    offenders = []
    for path in sorted((REPO / "bench").glob("*.py")):
        if path.name in ("_helpers.py", "test_bench_web.py", "_worker.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "perf_counter":
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, f"timing loops outside bench/_helpers.py: {offenders}"
