"""cgan-web in a real browser: headless Chromium (Debian's) driven by playwright, through the page's own
controls; the pixels read back from the page must be cgan-run's PNGs within one grey level."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _browser import CHROMIUM, CHROMIUM_ARGS, missing, ort_dist, serving
from _models import model_file
from cgan.runtime.noise import noise_v2
from cgan.runtime.resolve import EMBEDDED_DEFAULT
from conftest import run_script, torch_loaded

REQUIRED = bool(os.environ.get("CGAN_REQUIRE_BROWSER"))  # .ci/run: a missing browser is a failure, not a skip
needs_browser = pytest.mark.skipif(missing() is not None and not REQUIRED, reason=f"browser tests: {missing()}")
pytestmark = [pytest.mark.slow, needs_browser]


def test_the_browser_setup_is_complete():
    assert missing() is None, missing()

WAIT_MS = 180_000  # a loaded 2-core machine: loading the wasm and the 15 MB model can take a while
READY = ("document.body.dataset.state === 'error' || "
         "(document.body.dataset.state === 'ready' && Number(document.getElementById('grid').dataset.run) > 0)")
READ_PIXELS = """() => [...document.querySelectorAll('#grid canvas')].map((c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const grey = new Array(c.width * c.height);
  for (let i = 0; i < grey.length; i++) grey[i] = d[4 * i];
  return {stage: Number(c.dataset.stage), seed: c.dataset.seed ?? null, k: c.dataset.k ?? null, size: c.width, grey};
})"""


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:  # one per process: playwright's sync API does not nest
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


def build(tmp: Path, *args: str, model: str | None = None) -> Path:
    """`cgan-web build` in a child interpreter with torch blocked; the site folder."""
    site = tmp / "site"
    result = run_script("cgan-web", "build", *([model] if model else []), "--out", str(site), "--ort-dist", str(ort_dist()),
                        *args, block_torch=True, cwd=tmp)
    assert result.returncode == 0, result.stderr
    assert not torch_loaded(result)
    return site


def cgan_run_pngs(tmp: Path, model: str, *args: str, out: str = "cgan-run") -> dict[tuple[int, int, int], np.ndarray]:
    """cgan-run's PNGs for ``args`` (written to ``tmp/out``), keyed (stage, seed, k)."""
    out = tmp / out
    result = run_script("cgan-run", "--model", model, "--out", str(out), "--quiet", *args, block_torch=True, cwd=tmp)
    assert result.returncode == 0, result.stderr
    images = {}
    for f in out.glob("*.png"):
        stage, seed, k = f.stem.split("_")
        with Image.open(f) as im:
            images[(int(stage[5:]), int(seed[4:]), int(k))] = np.asarray(im)
    return images


def open_page(browser, url: str, **kwargs):
    page = browser.new_page(accept_downloads=True)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    if kwargs.get("init_script"):
        page.add_init_script(kwargs["init_script"])
    if kwargs.get("block"):
        page.route(kwargs["block"], lambda route: route.abort())
    if kwargs.get("offline"):  # only the site itself may be fetched
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
    page.goto(url)
    page.wait_for_function(READY, timeout=WAIT_MS)
    return page


def set_fields(page, **fields):
    for name, value in fields.items():
        selector = f"#{name.replace('_', '-')}"
        if page.get_attribute(selector, "type") is None and page.evaluate(f"document.querySelector('{selector}').tagName") == "SELECT":
            page.select_option(selector, str(value))
        else:
            page.fill(selector, str(value))


def click(page, button: str) -> None:
    run = int(page.get_attribute("#grid", "data-run"))
    page.click(button)
    page.wait_for_function(f"(Number(document.getElementById('grid').dataset.run) > {run} && document.body.dataset.state === 'ready')"
                           " || !document.getElementById('error').hidden", timeout=WAIT_MS)
    assert page.is_hidden("#error"), page.inner_text("#error")


def shown(page) -> list[dict]:
    return page.evaluate(READ_PIXELS)


def assert_same(page_cells: list[dict], pngs: dict) -> None:
    assert page_cells and len(page_cells) == len(pngs)
    for cell in page_cells:
        key = (cell["stage"], int(cell["seed"]), int(cell["k"]))
        got = np.array(cell["grey"], dtype=np.int16).reshape(cell["size"], cell["size"])
        diff = np.abs(got - pngs[key].astype(np.int16))
        assert diff.max() <= 1, f"{key}: page differs from cgan-run by up to {diff.max()} grey levels"


# ---------------------------------------------------------------- same images as cgan-run

def test_small_model_grid_matches_cgan_run(browser, tmp_path):
    model = str(model_file("gen32"))
    site = build(tmp_path, model=model)
    with serving(site) as url:
        page = open_page(browser, url, offline=True)  # built with --ort-dist: nothing from elsewhere
        assert page.get_attribute("body", "data-state") == "ready", page.inner_text("#error")
        assert page.evaluate("[...document.querySelectorAll('#stage option')].map(o => o.textContent)") == [
            "all stages", "0: Non-demented", "1: Very mild", "2: Mild", "3: Moderate"]
        set_fields(page, stage="all", count=3, seed=5, start=7)
        click(page, "#generate")
        assert page.get_attribute("#grid", "data-kind") == "grid" and page.get_attribute("#grid", "data-count") == "12"
        assert_same(shown(page), cgan_run_pngs(tmp_path, model, "--stage", "all", "--n", "3", "--seed", "5", "--start", "7"))
        assert "WebAssembly SIMD" in page.inner_text("#backend") and "ms per image" in page.inner_text("#timing")
        assert "research and education only" in page.inner_text("header").lower()
        assert not page.errors


def test_default_model_matches_cgan_run_and_downloads(browser, tmp_path):
    site = build(tmp_path)  # no MODEL: resolved like cgan-run, here the embedded default
    assert json.loads((site / "site.json").read_text())["model"]["source"].startswith("the default model embedded")
    pngs = cgan_run_pngs(tmp_path, str(EMBEDDED_DEFAULT), "--stage", "mild", "--n", "2", "--seed", "11")
    with serving(site) as url:
        page = open_page(browser, url)
        set_fields(page, stage=2, count=2, seed=11, start=0)
        click(page, "#generate")
        cells = shown(page)
        assert [c["size"] for c in cells] == [128, 128]
        assert_same(cells, pngs)
        # one image, downloaded by clicking it: a PNG named as cgan-run names it, with the same pixels
        with page.expect_download() as dl:
            page.click("#grid canvas[data-k='1']")
        assert dl.value.suggested_filename == "stage2_seed11_00000001.png"
        with Image.open(dl.value.path()) as im:
            got = np.asarray(im.convert("RGBA"))[..., 0].astype(np.int16)
        assert np.abs(got - pngs[(2, 11, 1)]).max() <= 1
        with page.expect_download() as dl:
            page.click("#download-grid")
        assert dl.value.suggested_filename == "grid.png"
        with Image.open(dl.value.path()) as im:
            assert im.width >= 2 * 128 and im.height >= 128
        assert not page.errors


# ---------------------------------------------------------------- views

def test_progression_and_interpolation_views(browser, tmp_path):
    model = str(model_file("gen32"))
    site = build(tmp_path, model=model)
    pngs = cgan_run_pngs(tmp_path, model, "--stage", "all", "--n", "3", "--seed", "4", "--start", "1")
    pngs.update(cgan_run_pngs(tmp_path, model, "--stage", "3", "--n", "1", "--seed", "9", "--start", "1", out="seed9"))
    with serving(site) as url:
        page = open_page(browser, url)
        set_fields(page, count=2, seed=4, start=1)
        click(page, "#progression")
        assert page.get_attribute("#grid", "data-kind") == "progression"
        cells = shown(page)
        assert len(cells) == 2 * 4 and page.get_attribute("#grid", "data-count") == "8"
        assert [(c["k"], c["stage"]) for c in cells] == [(str(k), s) for k in (1, 2) for s in range(4)]
        assert_same(cells, {key: v for key, v in pngs.items() if key[1] == 4 and key[2] in (1, 2)})

        set_fields(page, interp_stage=3, seed_a=4, seed_b=9, steps=6)
        click(page, "#interpolate")
        assert page.get_attribute("#grid", "data-kind") == "interpolation"
        cells = shown(page)
        assert len(cells) == 6
        ends = [cells[0], cells[-1]]
        assert [(c["seed"], c["k"]) for c in ends] == [("4", "1"), ("9", "1")]
        assert_same(ends, {(3, 4, 1): pngs[(3, 4, 1)], (3, 9, 1): pngs[(3, 9, 1)]})
        middle = [np.array(c["grey"]) for c in cells[1:-1]]
        assert all(not np.array_equal(a, b) for a, b in zip(middle, middle[1:]))
        assert not page.errors


def test_page_noise_is_the_python_noise(browser, tmp_path):
    site = build(tmp_path, "--no-webgpu", model=str(model_file("gen32")))
    assert not (site / "ort" / "ort.webgpu.min.mjs").exists()
    with serving(site) as url:
        page = open_page(browser, url)
        got = page.evaluate("async () => Array.from((await import('./noise.js')).noise('18446744073709551615', 123456789012, 3, 100))")
    np.testing.assert_array_equal(np.array(got, dtype=np.float32), noise_v2(2**64 - 1, 123456789012, 3, 100).ravel())


# ---------------------------------------------------------------- errors in the page

def test_bad_input_is_one_message_in_the_page(browser, tmp_path):
    site = build(tmp_path, model=str(model_file("gen32")))
    with serving(site) as url:
        page = open_page(browser, url)
        set_fields(page, seed="-3")
        page.click("#generate")
        page.wait_for_selector("#error:not([hidden])")
        assert page.inner_text("#error") == 'Seed must be a whole number from 0 to 2^64-1, got "-3"'


def test_broken_model_is_named_in_the_page(browser, tmp_path):
    site = build(tmp_path, model=str(model_file("gen32")))
    data = (site / "model.onnx").read_bytes()
    (site / "model.onnx").write_bytes(data[: len(data) // 2])  # a truncated upload
    with serving(site) as url:
        page = open_page(browser, url)
        assert page.get_attribute("body", "data-state") == "error"
        text = page.inner_text("#error")
        assert text.startswith("The model model.onnx could not be loaded") and "cgan-web build" in text
        assert page.is_hidden("#app")


def test_no_webassembly_and_no_cdn_are_explained(browser, tmp_path):
    site = build(tmp_path, model=str(model_file("gen32")))
    with serving(site) as url:
        page = open_page(browser, url, init_script="delete globalThis.WebAssembly")
        assert page.get_attribute("body", "data-state") == "error"
        assert "This browser has no WebAssembly" in page.inner_text("#error")
    shutil.rmtree(site)
    result = run_script("cgan-web", "build", str(model_file("gen32")), "--out", str(site), cwd=tmp_path,
                        env={"CGAN_ORT_DIST": ""})  # no --ort-dist (an empty variable counts as unset)
    assert result.returncode == 0, result.stderr
    assert "pinned CDN URL" in result.stdout
    with serving(site) as url:
        page = open_page(browser, url, block="https://cdn.jsdelivr.net/**")  # as offline
        assert "onnxruntime-web could not be loaded from https://cdn.jsdelivr.net/npm/onnxruntime-web@1.30.0/dist/" in page.inner_text("#error")


def test_webgpu_backend_matches_cgan_run(playwright, tmp_path):
    """The WebGPU path, on Chromium's software WebGPU adapter (SwiftShader): the same images within one grey level."""
    model = str(model_file("gen32"))
    site = build(tmp_path, model=model)
    pngs = cgan_run_pngs(tmp_path, model, "--stage", "1", "--n", "3", "--seed", "2")
    args = [a for a in CHROMIUM_ARGS if a != "--disable-gpu"] + ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"]
    with serving(site) as url:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = open_page(browser, url)
            if not page.inner_text("#backend").startswith("WebGPU"):
                pytest.skip(f"this Chromium offers no WebGPU adapter here ({page.inner_text('#backend')})")
            set_fields(page, stage=1, count=3, seed=2, start=0)
            click(page, "#generate")
            assert_same(shown(page), pngs)
        finally:
            browser.close()


# ---------------------------------------------------------------- balance

def test_balance_plan_is_cgan_runs_plan(browser, tmp_path):
    from cgan.runtime.balance import plan_counts

    site = build(tmp_path, model=str(model_file("gen32")))
    cases = [([5, 3, 2, 0], "largest", "1"), ([100, 7, 3, 0], "ratio", "0.29"), ([9, 10, 11, 1], "ratio", "2.5"),
             ([9, 10, 11, 1], "target", "10"), ([67222, 13725, 5002, 488], "largest", "")]
    with serving(site) as url:
        page = open_page(browser, url)
        got = page.evaluate("async (cases) => { const { planCounts } = await import('./balance.js');"
                            " return cases.map(([real, rule, v]) => planCounts(real, rule, v)); }", cases)
        want = [list(plan_counts(real, **({"ratio": v} if rule == "ratio" else {"target": int(v)} if rule == "target" else {})))
                for real, rule, v in cases]
        assert got == want
        set_fields(page, rule="target", rule_value="-2")
        page.click("#plan")
        page.wait_for_selector("#error:not([hidden])")
        assert page.inner_text("#error") == 'Target must be a whole number >= 1, got "-2"'


def test_balance_images_are_cgan_run_balance_images_and_download_as_zip(browser, tmp_path):
    import zipfile

    from test_balance import make_dataset

    model = str(model_file("gen32"))
    site = build(tmp_path, model=model)
    data = make_dataset(tmp_path / "data", (5, 3, 2, 0), names=("stage0", "stage1", "stage2", "stage3"))
    result = run_script("cgan-run", "--balance", str(data), "--out", str(tmp_path / "bal"), "--model", model, "--seed", "3", "--quiet",
                        block_torch=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pngs = {}
    for f in (tmp_path / "bal").rglob("*.png"):
        stage, seed, k = f.stem.split("_")
        with Image.open(f) as im:
            pngs[(int(stage[5:]), int(seed[4:]), int(k))] = np.asarray(im)
    assert len(pngs) == 0 + 2 + 3 + 5
    with serving(site) as url:
        page = open_page(browser, url)
        set_fields(page, seed=3, real_0=5, real_1=3, real_2=2, real_3=0, rule="largest")
        click(page, "#balance-generate")
        assert page.get_attribute("#plan-table", "data-plan") == "0,2,3,5"
        assert page.inner_text("#plan-table tbody tr:last-child").split() == ["all", "10", "10", "20"]
        assert page.get_attribute("#grid", "data-kind") == "balance" and page.get_attribute("#grid", "data-count") == "10"
        cells = shown(page)
        assert_same(cells, pngs)
        with page.expect_download() as dl:
            page.click("#download-zip")
        assert dl.value.suggested_filename == "balance_seed3.zip"
        with zipfile.ZipFile(dl.value.path()) as z:
            assert z.testzip() is None
            names = sorted(z.namelist())
            manifest = z.read("generated.csv").decode()
            images = {n: np.asarray(Image.open(z.open(n))) for n in names if n.endswith(".png")}
        rows = [line.split(",") for line in manifest.splitlines()]
        assert rows[0] == ["file", "stage", "model_sha256", "seed", "k", "noise_version"] and len(rows) == 11
        sha = hashlib.sha256(Path(model).read_bytes()).hexdigest()
        assert {r[2] for r in rows[1:]} == {sha} and sorted(r[0] for r in rows[1:]) == sorted(images)
        for f, stage, _, seed, k, version in rows[1:]:
            assert f == f"stage{stage}/stage{stage}_seed3_{int(k):08d}.png" and version == "2"
            assert np.abs(images[f].astype(np.int16) - pngs[(int(stage), 3, int(k))]).max() <= 1
        # a plan too big for the page says where to make it
        set_fields(page, real_0=70000)
        page.click("#balance-generate")
        page.wait_for_selector("#error:not([hidden])")
        assert "cgan-run --balance DATA" in page.inner_text("#error")
        assert not page.errors


def test_long_rows_stay_inside_a_1280_pixel_window(browser, tmp_path):
    """A balance plan of dozens of images per stage, and a grid of 20 per stage, wrap at the page's width:
    nothing runs off the right edge of a 1280-px window (the progression alone may scroll, its columns aligned)."""
    site = build(tmp_path, model=str(model_file("gen32")))
    overflow = ("() => ({page: document.documentElement.scrollWidth, window: window.innerWidth, "
                "grid: document.getElementById('grid').scrollWidth - document.getElementById('grid').clientWidth})")
    with serving(site) as url:
        page = open_page(browser, url)
        assert page.viewport_size["width"] == 1280
        set_fields(page, seed=0, real_0=40, real_1=1, real_2=1, real_3=1, rule="largest")
        click(page, "#balance-generate")
        assert page.get_attribute("#grid", "data-count") == str(3 * 39)
        sizes = page.evaluate(overflow)
        assert sizes["page"] <= sizes["window"] and sizes["grid"] <= 0, sizes
        set_fields(page, stage="all", count=20)
        click(page, "#generate")
        sizes = page.evaluate(overflow)
        assert sizes["page"] <= sizes["window"] and sizes["grid"] <= 0, sizes
        assert not page.errors
