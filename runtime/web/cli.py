"""``cgan-web``: build a static browser page for a model, and preview it on localhost."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..contract import DISCLAIMER, LAST_EXPORT, WEB_DIR
from ..errors import user_errors_exit
from ..help_style import command_class, page, typer_app

app = typer_app(
    "cgan-web",
    ("Generate in the browser: a static page that runs a dementia-cgan model with onnxruntime-web "
     f"(WebAssembly, or WebGPU where the browser has it), with no Python and no server. {DISCLAIMER}"),
    no_args_is_help=True,
)
BUILD_SUMMARY = "Write index.html, the page's script and style, the model and site.json (and onnxruntime-web) to --out."
SERVE_SUMMARY = "Serve SITE on localhost with the cross-origin-isolation headers wasm threads need; Ctrl-C stops."
BUILD_PANELS = {"Model": ["model_option"], "Site": ["out", "ort_dist", "webgpu", "overwrite"]}
SERVE_PANELS = {"Server": ["port", "verbose"]}


def _help(summary: str) -> str:
    return f"{summary}\n\n{DISCLAIMER}\n\n{page('cgan-web')}"


@app.command(help=_help(BUILD_SUMMARY), cls=command_class(BUILD_PANELS))
@user_errors_exit
def build(
    model: Optional[str] = typer.Argument(None, help=f"PATH.onnx, or hf:OWNER/REPO with an optional @REVISION and /FILE (default: {LAST_EXPORT}, else the embedded model)."),
    model_option: Optional[str] = typer.Option(None, "--model", "-m", help="The same as MODEL, as cgan-run takes it."),
    out: Path = typer.Option(WEB_DIR, "--out", "-o", help="Folder to write the site into."),
    ort_dist: Optional[Path] = typer.Option(
        None, "--ort-dist", envvar="CGAN_ORT_DIST",
        help="node_modules/onnxruntime-web/dist of a local `npm install onnxruntime-web` (its files are copied in, so the page works offline); without it the page loads onnxruntime-web from a pinned CDN URL.",
    ),
    webgpu: bool = typer.Option(True, "--webgpu/--no-webgpu", help="Also ship onnxruntime-web's WebGPU build (about 27 MB more with --ort-dist); without it the page always runs on WebAssembly."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out, replacing the site's files there (other files are kept)."),
) -> None:
    """Write index.html, the page's script and style, the model and site.json (and onnxruntime-web) to --out."""
    from ..resolve import one_model
    from .site import build_site

    result = build_site(one_model(model, model_option), out, ort_dist=ort_dist, webgpu=webgpu, overwrite=overwrite)
    typer.echo(result.summary())
    typer.echo(f"preview: cgan-web serve {out}   publish: copy the folder to any static web host")


@app.command(help=_help(SERVE_SUMMARY), cls=command_class(SERVE_PANELS))
@user_errors_exit
def serve(
    site: Path = typer.Argument(WEB_DIR, help="A folder written by `cgan-web build`."),
    port: int = typer.Option(8000, "--port", "-p", help="Port on 127.0.0.1 (0: any free port)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every request."),
) -> None:
    """Serve SITE on localhost with the cross-origin-isolation headers wasm threads need; Ctrl-C stops."""
    from .server import make_server, url

    server = make_server(site, port, quiet=not verbose)
    typer.echo(f"serving {site} at {url(server)} (localhost only; Ctrl-C to stop)", err=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        server.server_close()


def main() -> None:
    app()
