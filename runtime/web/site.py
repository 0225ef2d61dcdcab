"""Write a self-contained static site for one model: the page, the model, site.json and onnxruntime-web."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .. import __version__
from ..api import check_finite_model
from ..contract import DISCLAIMER, WEB_DIR, read_metadata
from ..errors import CganError
from ..fileio import sha256_file
from ..markup import md_text
from ..noise import NOISE_VERSION
from ..resolve import resolve_model
from ..staging import as_output_error, staged_folder, user_entries

# The onnxruntime-web release the page is written and tested against (npm package onnxruntime-web).
ORT_VERSION = "1.30.0"
ORT_CDN = f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_VERSION}/dist/"
# The files of its dist/ folder the page loads: the wasm build, and the WebGPU one where asked for.
ORT_WASM_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ORT_WEBGPU_FILES = ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
PAGE_FILES = ("index.html", "app.js", "noise.js", "balance.js", "zip.js", "style.css")
MODEL_FILE = "model.onnx"
SITE_JSON = "site.json"


# Written as the site's README.md: the front matter makes the folder a static Hugging Face Space as it is
# (with the cross-origin-isolation headers of `cgan-web serve`); any other host just serves one more file.
SPACE_README = """---
title: dementia-cgan
sdk: static
app_file: index.html
pinned: false
custom_headers:
  cross-origin-embedder-policy: require-corp
  cross-origin-opener-policy: same-origin
  cross-origin-resource-policy: cross-origin
---

# dementia-cgan in the browser

Synthetic brain-MRI slices by Alzheimer's stage, generated in your browser with onnxruntime-web from
{source}; written by `cgan-web build` (dementia-cgan {version}).

{disclaimer}
"""


class WebError(CganError):
    """A site that cannot be built or served as asked."""


@dataclass(frozen=True)
class BuildResult:
    out: Path
    model: str  # how the model was found (cgan-run's "model: ..." description)
    ort: str  # where the page loads onnxruntime-web from
    local_ort: bool
    bytes: int  # size of the folder

    def summary(self) -> str:
        if self.local_ort:
            where = f"{self.ort} copied into the site"
            if self.ort != ORT_VERSION:
                where += f" (the page is tested with {ORT_VERSION})"
        else:
            where = f"{ORT_VERSION} loaded from {self.ort} (pinned CDN URL; --ort-dist to copy it in)"
        return f"wrote {self.out} ({self.bytes / 1e6:.1f} MB): model {self.model}; onnxruntime-web {where}"


def _ort_dist(dist: Path, webgpu: bool) -> tuple[list[Path], str]:
    """The files to copy from a local onnxruntime-web ``dist/`` folder, and its version."""
    dist = Path(dist)
    if not dist.is_dir():
        raise WebError(f"--ort-dist {dist} is not a folder; give the dist/ folder of the onnxruntime-web npm package "
                       f"(npm install onnxruntime-web@{ORT_VERSION}, then node_modules/onnxruntime-web/dist)")
    wanted = ORT_WASM_FILES + (ORT_WEBGPU_FILES if webgpu else ())
    missing = [f for f in wanted if not (dist / f).is_file()]
    if missing:
        raise WebError(f"--ort-dist {dist} lacks {', '.join(missing)}; give node_modules/onnxruntime-web/dist of "
                       f"onnxruntime-web {ORT_VERSION} (other versions may name their files differently)")
    version = "unknown version"
    with contextlib.suppress(OSError, ValueError, KeyError):
        version = json.loads((dist.parent / "package.json").read_text())["version"]
    return [dist / f for f in wanted], version


def _public_source(resolved) -> str:
    """How the model was found, without this machine's paths (the site is meant to be published)."""
    if resolved.kind == "embedded":
        return f"the default model embedded in dementia-cgan {__version__}"
    if resolved.kind == "hub":
        return resolved.description.split(" (")[0]
    return resolved.path.name




def build_site(
    model: str | os.PathLike | None = None,
    out: str | os.PathLike = WEB_DIR,
    *,
    ort_dist: str | os.PathLike | None = None,
    webgpu: bool = True,
    overwrite: bool = False,
    cwd: str | os.PathLike | None = None,
) -> BuildResult:
    """Write the static page for ``model`` (resolved as cgan-run does) into ``out``.

    Written under cgan-run's rules (:mod:`cgan.runtime.staging`): the model is checked first (its
    metadata, and one image of every stage must be finite), ``out`` is locked while in use, a non-empty
    ``out`` is refused unless ``overwrite``, and the files are assembled in a hidden temporary folder
    inside ``out``, then moved to their names (``site.json`` last). Other files in ``out`` are never touched.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WebError(f"--out {out} is a file; give a folder for the site")
    if not overwrite and user_entries(out):
        raise WebError(f"--out {out} already exists and is not empty; pass --overwrite to replace its files, or choose another folder")
    resolved = resolve_model(model, cwd=cwd)
    info = read_metadata(resolved.path)  # refuses a broken model before anything is written
    check_finite_model(resolved)
    ort_files, ort_version = _ort_dist(Path(ort_dist), webgpu) if ort_dist is not None else ([], ORT_VERSION)

    try:
        with staged_folder(out, "cgan-web build", overwrite=overwrite) as staged:
            tmp = staged.tmp
            static = resources.files(__package__) / "static"
            names = [*PAGE_FILES, MODEL_FILE]
            for name in PAGE_FILES:
                (tmp / name).write_bytes((static / name).read_bytes())
            shutil.copyfile(resolved.path, tmp / MODEL_FILE)
            if ort_files:
                (tmp / "ort").mkdir()
                for f in ort_files:
                    shutil.copyfile(f, tmp / "ort" / f.name)
                    names.append(f"ort/{f.name}")
                licence = Path(ort_dist).parent / "LICENSE"
                if licence.is_file():  # onnxruntime-web is MIT: its notice travels with its files
                    shutil.copyfile(licence, tmp / "ort" / "LICENSE")
                    names.append("ort/LICENSE")
            site = {
                "tool": "cgan-web",
                "tool_version": __version__,
                "noise_version": NOISE_VERSION,
                "disclaimer": DISCLAIMER,
                "model": {
                    "file": MODEL_FILE,
                    "source": _public_source(resolved),
                    "sha256": sha256_file(resolved.path),
                    "bytes": resolved.path.stat().st_size,
                    "info": info.as_dict(),
                },
                "ort": {"version": ort_version, "base": "ort/" if ort_files else ORT_CDN, "local": bool(ort_files), "webgpu": webgpu},
            }
            readme = SPACE_README.format(source=md_text(site["model"]["source"]), version=__version__, disclaimer=DISCLAIMER)
            (tmp / "README.md").write_text(readme)
            (tmp / SITE_JSON).write_text(json.dumps(site, indent=2) + "\n")
            staged.publish([*names, "README.md", SITE_JSON])
    except OSError as exc:
        raise as_output_error(exc, out) from None
    return BuildResult(out=out, model=resolved.description, ort=ort_version if ort_files else ORT_CDN,
                       local_ort=bool(ort_files), bytes=sum((out / name).stat().st_size for name in [*names, "README.md", SITE_JSON]))
