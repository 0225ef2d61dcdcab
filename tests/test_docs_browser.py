"""The documentation site in a real browser at 1280 px (headless Chromium, as the cgan-web tests drive it): no
code line cut off at the right edge, no option name broken across two lines in an option table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _browser import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[1]


def _missing() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright for Python is not installed"
    return None


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(_missing() is not None and not os.environ.get("CGAN_REQUIRE_BROWSER"), reason=f"docs in a browser: {_missing()}")]

PAGES = ["getting-started/index.html", "commands/cgan-run/index.html", "commands/cgan-train/index.html", "benchmarks/index.html"]
CHECK = """() => ({
  cut: [...document.querySelectorAll('.md-typeset pre > code')]
    .filter((c) => c.scrollWidth > c.clientWidth + 1).map((c) => c.textContent.slice(0, 80)),
  broken: [...document.querySelectorAll('.md-typeset table td:first-child code')]
    .filter((c) => c.getClientRects().length > 1).map((c) => c.textContent),
  flags: document.querySelectorAll('.md-typeset table td:first-child code').length,
})"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs_site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.parametrize("page_path", PAGES)
def test_no_code_line_is_cut_and_no_flag_is_broken_at_1280_px(site, page_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((site / page_path).as_uri())
            found = page.evaluate(CHECK)
        finally:
            browser.close()
    assert not found["cut"], f"{page_path}: code lines cut off at 1280 px: {found['cut']}"
    assert not found["broken"], f"{page_path}: option names broken across lines: {found['broken']}"
    if page_path.startswith("commands/"):
        assert found["flags"] > 5  # the option table is there
