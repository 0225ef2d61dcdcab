"""cgan-web: the size of the built site with the default model, and the time to the first image in
headless Chromium (Debian's, through playwright). Reported, not asserted: a browser page has no
goal of its own here, and the figures depend on the browser and the machine.

Each round opens the page in a fresh browser context (empty cache) on cgan-web's own localhost
server and waits for the first grid (4 images per stage) the page draws on load. The page reports
its milestones (performance.now(), ms since navigation): model loaded, first batch out of the
session, first grid drawn.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _browser import CHROMIUM, CHROMIUM_ARGS, missing, ort_dist, serving  # noqa: E402

from bench._helpers import Interleaved  # noqa: E402

pytestmark = pytest.mark.bench_long  # run with --bench-long (bench/README.md)

ROUNDS = 3


def _python_ms_per_image(cwd: Path) -> float:
    """The same model in the Python runtime on this CPU, batch of 4 as the page's first batches: best of 7."""
    from cgan.runtime import load

    gen = load(None, provider="cpu", cwd=cwd, engine="onnxruntime")  # the page runs ONNX Runtime (web) too
    gen.generate(0, 4)
    timing = Interleaved({"python": lambda: gen.generate(0, 4, batch_size=4)})
    timing.run(7)
    return min(timing.times["python"]) * 1000 / 4


@pytest.mark.skipif(missing() is not None, reason=f"browser benchmark: {missing()}")
def test_web_site_size_and_first_image(benchmark, bench_tmp):
    from playwright.sync_api import sync_playwright

    from cgan.runtime.web import build_site

    benchmark.group = "cgan-web"
    sizes = {}
    for webgpu in (True, False):
        out = bench_tmp / f"site-{'webgpu' if webgpu else 'wasm'}"
        result = build_site(None, out, ort_dist=ort_dist(), webgpu=webgpu, overwrite=True, cwd=bench_tmp)
        sizes[webgpu] = result.bytes
    site = bench_tmp / "site-webgpu"
    model_bytes = (site / "model.onnx").stat().st_size
    milestones: list[dict] = []

    with sync_playwright() as p, serving(site) as url:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def first_image():
            context = browser.new_context()
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(url)
            page.wait_for_function("window.cganTimes && window.cganTimes.firstGridMs", timeout=300_000)
            wall = time.perf_counter() - t0
            times = page.evaluate("window.cganTimes")
            times["wall_s"] = wall
            times["timing"] = page.inner_text("#timing")
            times["backend"] = page.inner_text("#backend").split(" · ")[0]
            milestones.append(times)
            context.close()

        benchmark.pedantic(first_image, rounds=ROUNDS, iterations=1, warmup_rounds=0)
        browser.close()

    best = min(milestones, key=lambda m: m["firstGridMs"])
    browser_ms = min(float(m["timing"].split("(")[1].split(" ms")[0]) for m in milestones)
    python_ms = _python_ms_per_image(bench_tmp)
    benchmark.extra_info.update({
        "kind": "web",
        "variant": "cgan-web page, default model, headless Chromium, fresh context per round",
        "site_mb_with_webgpu": round(sizes[True] / 1e6, 1),
        "site_mb_wasm_only": round(sizes[False] / 1e6, 1),
        "model_mb": round(model_bytes / 1e6, 1),
        "model_loaded_ms": round(best["modelLoadedMs"]),
        "first_batch_ms": round(best["firstBatchMs"]),
        "first_grid_ms": round(best["firstGridMs"]),
        "first_grid_ms_all_rounds": [round(m["firstGridMs"]) for m in milestones],
        "last_batch": best["timing"],
        "browser_ms_per_image_batch4": browser_ms,
        "python_ort_ms_per_image_batch4": round(python_ms, 1),
        "browser_over_python": round(browser_ms / python_ms, 2),
        "backend": best["backend"],
        "chromium": CHROMIUM,
    })
