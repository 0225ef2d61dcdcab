"""cgan-web without a browser: what `build` writes and refuses, what `serve` sends, the JavaScript noise under Node."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _browser import ort_dist, serving
from _models import model_file
from cgan.runtime.noise import noise_v2
from cgan.runtime.web import ORT_CDN, ORT_VERSION, WebError, build_site, make_server
from cgan.runtime.web.cli import app
from cgan.runtime.web.site import ORT_WASM_FILES, ORT_WEBGPU_FILES, PAGE_FILES
from conftest import run_script, torch_loaded

STATIC = Path(__file__).resolve().parents[1] / "runtime" / "web" / "static"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_build_without_ort_dist_uses_the_pinned_cdn(tmp_path):
    model = model_file("gen32")
    result = build_site(model, tmp_path / "site")
    site = json.loads((tmp_path / "site" / "site.json").read_text())
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == sorted([*PAGE_FILES, "model.onnx", "site.json", "README.md"])
    readme = (tmp_path / "site" / "README.md").read_text()  # a static Hugging Face Space as it is
    assert readme.startswith("---\n") and "\nsdk: static\n" in readme and "cross-origin-embedder-policy: require-corp" in readme
    assert "never for clinical diagnosis" in readme
    assert (tmp_path / "site" / "model.onnx").read_bytes() == model.read_bytes()
    assert site["ort"] == {"version": ORT_VERSION, "base": ORT_CDN, "local": False, "webgpu": True}
    assert ORT_CDN == f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_VERSION}/dist/"
    assert site["noise_version"] == 2 and site["model"]["info"]["img_size"] == 32
    assert site["model"]["source"] == "gen32.onnx"  # no path of this machine in a site meant for publishing
    assert str(tmp_path) not in (tmp_path / "site" / "site.json").read_text()
    assert "pinned CDN URL" in result.summary()


@pytest.mark.skipif(ort_dist() is None, reason="CGAN_ORT_DIST does not name onnxruntime-web's dist/ folder (.ci/run sets it)")
@pytest.mark.parametrize("webgpu", [True, False])
def test_build_with_ort_dist_copies_onnxruntime_web(tmp_path, webgpu):
    result = build_site(model_file("gen32"), tmp_path / "site", ort_dist=ort_dist(), webgpu=webgpu)
    copied = {p.name for p in (tmp_path / "site" / "ort").iterdir()} - {"LICENSE"}
    assert copied == set(ORT_WASM_FILES + (ORT_WEBGPU_FILES if webgpu else ()))
    site = json.loads((tmp_path / "site" / "site.json").read_text())
    assert site["ort"] == {"version": ORT_VERSION, "base": "ort/", "local": True, "webgpu": webgpu}
    assert "onnxruntime-web 1.30.0 copied into the site" in result.summary()
    assert result.local_ort and result.bytes == sum(p.stat().st_size for p in (tmp_path / "site").rglob("*") if p.is_file())


def test_build_is_torch_free_and_resolves_like_cgan_run(tmp_path):
    result = run_script("cgan-web", "build", "--out", "site", block_torch=True, cwd=tmp_path, env={"CGAN_ORT_DIST": ""})
    assert result.returncode == 0, result.stderr
    assert not torch_loaded(result)
    assert "embedded default" in result.stdout and "cgan-web serve site" in result.stdout
    assert json.loads((tmp_path / "site" / "site.json").read_text())["model"]["info"]["img_size"] == 128


@pytest.mark.parametrize("kind", ["truncated", "no_metadata", "bad_inputs", "not_onnx"])
def test_a_broken_model_is_refused_and_nothing_is_written(tmp_path, kind):
    result = invoke("build", str(model_file(kind)), "--out", str(tmp_path / "site"))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and kind in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_out_is_never_replaced_without_overwrite(tmp_path):
    out = tmp_path / "site"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = invoke("build", str(model_file("gen32")), "--out", str(out))
    assert result.exit_code == 1 and "already exists and is not empty; pass --overwrite" in result.output
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    result = invoke("build", str(model_file("gen32")), "--out", str(out), "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "mine.txt").read_text() == "keep" and (out / "index.html").is_file()  # only the site's files are replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no temporary folders left behind
    (tmp_path / "file").write_text("x")
    assert "is a file" in invoke("build", "--out", str(tmp_path / "file")).output


def test_bad_ort_dist_is_one_line(tmp_path):
    (tmp_path / "dist").mkdir()
    result = invoke("build", str(model_file("gen32")), "--out", str(tmp_path / "site"), "--ort-dist", str(tmp_path / "dist"))
    assert result.exit_code == 1 and "lacks ort.wasm.min.mjs" in result.output
    result = invoke("build", str(model_file("gen32")), "--out", str(tmp_path / "site"), "--ort-dist", str(tmp_path / "nope"))
    assert result.exit_code == 1 and "is not a folder" in result.output
    assert not (tmp_path / "site").exists()


def test_server_sends_isolation_headers_and_mime_types(tmp_path):
    site = tmp_path / "site"
    build_site(model_file("gen32"), site)
    (site / "ort").mkdir()
    (site / "ort" / "x.wasm").write_bytes(b"\0asm\1\0\0\0")
    (site / "ort" / "x.mjs").write_text("export const x = 1;\n")
    with serving(site) as url:
        assert url.startswith("http://127.0.0.1:")
        for path, mime in [("", "text/html"), ("ort/x.wasm", "application/wasm"), ("ort/x.mjs", "text/javascript"),
                           ("app.js", "text/javascript"), ("site.json", "application/json")]:
            with urllib.request.urlopen(url + path) as res:
                assert res.headers["Content-Type"].split(";")[0] == mime, path
                assert res.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert res.headers["Cross-Origin-Embedder-Policy"] == "require-corp"


def test_serve_refuses_a_folder_that_is_not_a_site(tmp_path):
    with pytest.raises(WebError, match="not a site built by cgan-web"):
        make_server(tmp_path, 0)
    result = invoke("serve", str(tmp_path))
    assert result.exit_code == 1 and "run `cgan-web build" in result.output


def test_serve_prints_its_url(tmp_path):
    build_site(model_file("gen32"), tmp_path / "site")
    from conftest import console_script

    module, func = console_script("cgan-web").split(":")
    code = f"import sys; sys.argv = ['cgan-web', 'serve', {str(tmp_path / 'site')!r}, '--port', '0']\nfrom {module} import {func}; {func}()"
    proc = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving {tmp_path / 'site'} at http://127.0.0.1:") and "localhost only" in line
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "site.json") as res:
            assert json.loads(res.read())["tool"] == "cgan-web"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_javascript_noise_is_the_python_noise(tmp_path):
    script = tmp_path / "check.mjs"
    script.write_text(
        f"import {{ noise, philox4x32 }} from {json.dumps((STATIC / 'noise.js').as_uri())};\n"
        "const out = {kat: philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),\n"
        "  rows: [[0, 0], ['4294967297', 5], ['18446744073709551615', '4294967295']].map(([s, k]) => Array.from(noise(s, k, 2, 100)))};\n"
        "console.log(JSON.stringify(out));\n"
    )
    result = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["kat"] == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]
    for (seed, k), row in zip([(0, 0), (2**32 + 1, 5), (2**64 - 1, 2**32 - 1)], out["rows"]):
        np.testing.assert_array_equal(np.array(row, dtype=np.float32), noise_v2(seed, k, 2, 100).ravel())


def test_ci_installs_the_pinned_onnxruntime_web():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert f"ORT_WEB_VERSION={ORT_VERSION} " in ci and "apt-get install -y -q chromium" in ci


def test_the_default_site_folder_is_not_where_mkdocs_writes_the_docs(tmp_path):
    """`mkdocs build` then `cgan-web build`, both with their defaults, in one folder: neither collides."""
    import re

    mkdocs_site = re.search(r"^site_dir:\s*(\S+)", (Path(__file__).resolve().parents[1] / "mkdocs.yml").read_text(), re.M)
    docs = tmp_path / (mkdocs_site.group(1) if mkdocs_site else "site")
    docs.mkdir()
    (docs / "index.html").write_text("the documentation")
    result = run_script("cgan-web", "build", cwd=tmp_path, env={"CGAN_ORT_DIST": ""})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "web" / "site.json").is_file() and "cgan-web serve web" in result.stdout
    assert sorted(p.name for p in docs.iterdir()) == ["index.html"]
