"""Packaging: the cgan namespace layout, the torch-free base install, and the CLIs' help without torch."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile

import pytest

from conftest import REPO, run_script, stderr_lines, torch_loaded

SCRIPTS = ["cgan-run", "cgan-train", "cgan-data", "cgan-export", "cgan-eval"]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_base_dependencies_pull_no_torch():
    project = _pyproject()["project"]
    base = [d.lower() for d in project["dependencies"]]
    assert not any(d.startswith("torch") for d in base), base
    for needed in ("onnxruntime", "numpy", "pillow", "typer", "huggingface_hub"):
        assert any(d.startswith(needed) for d in base), f"{needed} missing from base dependencies"
    extras = project["optional-dependencies"]
    assert any(d.startswith("torch>=") for d in extras["train"])
    assert any(d.startswith("onnx>=") for d in extras["export"])
    assert any(d.startswith("monai>=") for d in extras["monai"]) and not any(d.startswith("monai") for d in base)
    # users get a lower bound, never an exact torch pin
    assert not any("torch==" in d for deps in extras.values() for d in deps)


@pytest.mark.slow
def test_wheel_installs_only_the_cgan_namespace(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("dementia_cgan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"cgan"}, top
    for pkg in ("runtime", "train", "export"):
        assert f"cgan/{pkg}/__init__.py" in names
    assert "cgan/runtime/contract.py" in names
    assert not any(n.startswith(("cgan/bench", "cgan/tests")) for n in names)
    # the embedded default model ships inside the runtime package
    assert "cgan/runtime/assets/default.onnx" in names


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_works_without_torch_and_states_disclaimer(name):
    result = run_script(name, "--help", block_torch=True)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split()).lower()
    assert "research" in text and "diagnosis" in text, result.stdout
    assert not torch_loaded(result)


@pytest.mark.parametrize(
    ("name", "args", "extra"),
    [
        ("cgan-train", ["--max-steps", "1"], "train"),
        ("cgan-export", [], "export"),
        ("cgan-eval", [], "train"),
    ],
)
def test_torch_commands_name_the_extra_when_torch_is_missing(name, args, extra, tmp_path):
    result = run_script(name, *args, block_torch=True, cwd=tmp_path)
    assert result.returncode != 0
    lines = stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert f"dementia-cgan[{extra}]" in lines[0]
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing may be written when torch is missing"
