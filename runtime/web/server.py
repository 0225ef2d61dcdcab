"""Serve a built site on localhost with the headers onnxruntime-web's threaded wasm needs.

Cross-origin isolation (COOP ``same-origin`` + COEP ``require-corp``) enables SharedArrayBuffer and so
wasm threads; ``.wasm`` must be ``application/wasm`` for streaming compilation and ``.mjs`` a JavaScript
type for module imports. Python's http.server, bound to 127.0.0.1 only: a preview, not a public server;
it never follows a symlink out of the site.
"""

from __future__ import annotations

import functools
import os
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .site import SITE_JSON, WebError

HOST = "127.0.0.1"
MIME = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript", ".json": "application/json",
        ".onnx": "application/octet-stream", ".css": "text/css", ".html": "text/html; charset=utf-8"}
HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


class SiteHandler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME}
    quiet = True

    def end_headers(self) -> None:
        for key, value in HEADERS.items():
            self.send_header(key, value)
        super().end_headers()

    def send_head(self):
        """Serve only what lies inside the site: a symlink (or ``..``) leading out of it is "not found"."""
        root = os.path.realpath(self.directory)
        target = os.path.realpath(self.translate_path(self.path))
        if os.path.commonpath([root, target]) != root:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        return super().send_head()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if not self.quiet:
            super().log_message(format, *args)


def make_server(site: str | Path, port: int = 8000, *, quiet: bool = True) -> ThreadingHTTPServer:
    """A server for ``site`` on 127.0.0.1:``port`` (0: any free port); call ``serve_forever()`` on it."""
    site = Path(site)
    if not 0 <= port <= 65535:
        raise WebError(f"--port {port} is not a port number; give one from 1 to 65535 (0: any free port)")
    if not (site / "index.html").is_file() or not (site / SITE_JSON).is_file():
        raise WebError(f"{site} is not a site built by cgan-web (no index.html and {SITE_JSON}); run `cgan-web build --out {site}` first")
    handler = functools.partial(type("Handler", (SiteHandler,), {"quiet": quiet}), directory=str(site.resolve()))
    try:
        return ThreadingHTTPServer((HOST, port), handler)
    except OSError as exc:
        raise WebError(f"cannot listen on {HOST}:{port} ({exc.strerror or exc}); choose another --port") from None


def url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"
