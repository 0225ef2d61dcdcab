"""What the browser tests need, found or explained: Debian's Chromium, playwright for Python, and the
onnxruntime-web npm package (its dist/ folder named by $CGAN_ORT_DIST; .ci/run installs all three)."""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = os.environ.get("CGAN_CHROMIUM", "/usr/bin/chromium")
# Headless, no GPU, nothing fetched behind the test's back.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def ort_dist() -> Path | None:
    value = os.environ.get("CGAN_ORT_DIST")
    return Path(value) if value and (Path(value) / "ort.wasm.min.mjs").is_file() else None


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright for Python is not installed (pip install playwright; .ci/run does)"
    if ort_dist() is None:
        return ("CGAN_ORT_DIST does not name the dist/ folder of the onnxruntime-web npm package "
                "(npm install onnxruntime-web@1.30.0 somewhere, then CGAN_ORT_DIST=.../node_modules/onnxruntime-web/dist; .ci/run does)")
    return None


@contextmanager
def serving(site: Path) -> Iterator[str]:
    """Serve ``site`` with cgan-web's own server on a free port; yields its URL."""
    from cgan.runtime.web.server import make_server, url

    server = make_server(site, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
