"""The report command on a small pytest-benchmark JSON (runs in plain `pytest`; no benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys

from bench._helpers import REPO, python_env


def _bench(name: str, median: float, **extra) -> dict:
    return {
        "name": name, "fullname": f"bench/test_bench_throughput.py::{name}",
        "stats": {"median": median, "min": median * 0.9, "rounds": 5}, "extra_info": extra,
    }


def _data() -> dict:
    tp = dict(kind="throughput", device="cpu")
    return {
        "machine_info": {"system": "Linux", "release": "x", "cgan": {
            "cpu_model": "Test CPU 9000", "usable_cores": 2, "torch": "9.9", "onnxruntime": "8.8",
            "numpy": "7.7", "python_version": "3.99", "date": "2030-01-02T03:04:05+00:00"}},
        "commit_info": {"id": "abcdef1234567890", "dirty": False},
        "benchmarks": [
            _bench("t64", 0.5, **tp, engine="torch", variant="eager fp32", batch=64, images=64, images_per_s=128.0),
            _bench("o64", 0.2, **tp, engine="onnxruntime", variant="ORT fp32, runtime session", batch=64, images=64, images_per_s=320.0),
            _bench("o1", 0.004, kind="latency", variant="ORT one image, bare session.run", batch=1, images=1),
            _bench("bal", 100.0, kind="balance", images=10000, goal_ratio=1.1, balance_over_n=1.046, balance_s=23.0, n_s=22.0),
            {"name": "test_train_step", "fullname": "bench/test_bench_train.py::test_train_step",
             "stats": {"median": 2.0, "min": 1.9, "rounds": 3}, "extra_info": {"images_per_s": 32.0}},
        ],
    }


def test_report_ratios_goals_and_file(tmp_path):
    src = tmp_path / "b.json"
    src.write_text(json.dumps(_data()))
    out = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, "-m", "bench.report", "--json", str(src), "--out", str(out)],
                          cwd=REPO, env=python_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text == done.stdout
    assert "Test CPU 9000, 2 cores" in text and "torch 9.9" in text and "onnxruntime 8.8" in text
    assert "numpy 7.7" in text and "Python 3.99" in text and "2030-01-02" in text
    # 320 / 128 images/s = 2.50x against torch eager at batch 64, which meets the 1.2x goal
    assert "| ORT fp32, runtime session | 320 (2.50×) |" in text
    assert "2.50× (320 vs 128 images/s) | met |" in text
    # 4 ms for one image misses the 3 ms goal
    assert "4.00 ms" in text and "**not met**" in text
    assert "Training throughput" in text and "test_train_step" in text
    # --balance at 23.0 s against --n at 22.0 s for 10,000 PNGs: 1.046x, within the 1.10x goal
    assert "for the same 10,000 PNGs, whole process, interleaved | 1.046× (23.00 s vs 22.00 s) | met |" in text


def test_report_grades_the_training_step_and_shows_its_work(tmp_path):
    data = _data()
    # cgan-train 30 img/s against 20 (present) and 12 (original): 1.50x and 2.50x, both goals met at batch 16;
    # at batch 32 1.40x the present step misses its 1.5x
    for batch, present, speedup_present in ((16, 20.0, 1.5), (32, 21.43, 1.4)):
        data["benchmarks"].append({
            "name": f"test_train_interleaved_ratio[{batch}]", "fullname": f"bench/test_bench_train.py::test_train_interleaved_ratio[{batch}]",
            "stats": {"median": 3.0, "min": 2.9, "rounds": 3},
            "extra_info": dict(kind="train_ratio", batch=batch, original_images_per_s=12.0, present_images_per_s=present,
                               cgan_train_images_per_s=30.0, speedup_vs_present=speedup_present, speedup_vs_original=2.5,
                               original_gflop_per_image=8.0, present_gflop_per_image=6.0, cgan_train_gflop_per_image=4.0,
                               original_gflops=96.0, present_gflops=120.0, cgan_train_gflops=120.0,
                               original_fraction_of_avx512_peak=0.4, present_fraction_of_avx512_peak=0.5,
                               cgan_train_fraction_of_avx512_peak=0.5, work_ratio_present=1.5, work_ratio_original=2.0)})
    src = tmp_path / "b.json"
    src.write_text(json.dumps(data))
    done = subprocess.run([sys.executable, "-m", "bench.report", "--json", str(src), "--no-write"],
                          cwd=REPO, env=python_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "| training step ≥ 1.5× the present step, CPU fp32 eager, batch 16, interleaved | 1.50×, same arithmetic speed would give 1.50× | met |" in text
    assert "| training step ≥ 2× the original loop, CPU fp32 eager, batch 16, interleaved | 2.50×, same arithmetic speed would give 2.00× | met |" in text
    assert "| training step ≥ 1.5× the present step, CPU fp32 eager, batch 32, interleaved | 1.40×, same arithmetic speed would give 1.50× | **not met** |" in text
    assert "| 16 | present step | 6.00 | 20.0 | 120 | 50% | 1.50× | 1.50× | met |" in text
    assert "| 32 | cgan-train | 4.00 | 30.0 | 120 | 50% |  |  |  |" in text


def test_report_missing_json_is_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.report", "--json", str(tmp_path / "none.json"), "--no-write"],
                          cwd=REPO, env=python_env(), capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "pytest --benchmark-only" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_report_shows_the_peers_with_the_fraction_of_peak_the_isa_and_grades_the_runtime(tmp_path):
    data = _data()
    data["machine_info"]["cgan"]["isa"] = {"class": "avx2", "flags": "avx fma avx2"}
    runtime = "runtime generate(), engine auto (openvino)"
    # batch 64: runtime 400 ms, OpenVINO 500 ms, torch.compile 380 ms, torch eager 800 ms; 0.25 GFLOP per image, 100 GFLOP/s peak:
    # the runtime does 64 x 0.25 / 0.4 = 40 GFLOP/s = 40.0% of peak and beats OpenVINO but not torch.compile
    ms = {"torch eager fp32": 800.0, "torch.compile fp32 (freezing)": 380.0, "OpenVINO compile_model, defaults": 500.0, runtime: 400.0}
    data["benchmarks"].append({
        "name": "test_cpu_peers_interleaved[64]", "fullname": "bench/test_bench_peers.py::test_cpu_peers_interleaved[64]",
        "stats": {"median": 3.0, "min": 2.9, "rounds": 5},
        "extra_info": dict(kind="peers", device="cpu", batch=64, rounds_each=6, median_ms=ms,
                           images_per_s={k: 64 / (v / 1e3) for k, v in ms.items()},
                           fraction_of_fp32_peak={k: 64 * 0.25 / (v / 1e3) / 100.0 for k, v in ms.items()},
                           gflop_per_image=0.25, peak={"clock_ghz": 3.125, "cores": 2, "avx2_gflops": 100.0}, fp32_peak_gflops=100.0,
                           isa="avx fma avx2", isa_class="avx2", skipped={})})
    src = tmp_path / "b.json"
    src.write_text(json.dumps(data))
    done = subprocess.run([sys.executable, "-m", "bench.report", "--json", str(src), "--no-write"],
                          cwd=REPO, env=python_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "- CPU instructions: avx fma avx2 (class avx2" in text
    assert f"| {runtime} | 400.00 / 160 / 40.0% / 2.00× |" in text
    assert "| runtime (openvino) ≤ OpenVINO compile_model, defaults, batch 64, interleaved | 400.00 vs 500.00 ms (1.25× the peer's speed) | met |" in text
    assert "| runtime (openvino) ≤ torch.compile fp32 (freezing), batch 64, interleaved | 400.00 vs 380.00 ms (0.95× the peer's speed) | **not met** |" in text
