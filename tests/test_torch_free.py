"""The runtime never imports torch, not even indirectly, although torch is installed here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import console_script


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_torch_is_installed_here():
    """Otherwise the tests below would prove nothing."""
    pytest.importorskip("torch")


def test_runtime_modules_do_not_import_torch():
    code = (
        "import importlib, pkgutil, sys\n"
        "import cgan.runtime as rt\n"
        "names = sorted(m.name for m in pkgutil.iter_modules(rt.__path__))\n"
        "for name in names:\n"
        "    importlib.import_module('cgan.runtime.' + name)\n"
        "import onnxruntime, huggingface_hub, PIL.Image  # what the runtime uses lazily\n"
        "print(','.join(names))\n"
        "print('torch' in sys.modules, [m for m in sys.modules if m.startswith(('torch', 'cgan.train', 'cgan.export'))])\n"
    )
    result = _child(code)
    assert result.returncode == 0, result.stderr
    names, loaded = result.stdout.strip().splitlines()
    assert {"api", "cli", "contract", "resolve", "session", "writers"} <= set(names.split(","))
    assert loaded == "False []"


def test_cgan_run_entry_point_does_not_import_torch():
    module, func = console_script("cgan-run").split(":")
    code = (
        "import sys\n"
        f"from {module} import {func} as main\n"
        "sys.argv = ['cgan-run', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print('EXIT', code, 'torch' in sys.modules, file=sys.stderr)\n"
    )
    result = _child(code)
    assert "EXIT 0 False" in result.stderr, result.stderr
    assert "cgan-run" in result.stdout and "research" in result.stdout.lower()


def test_generation_does_not_import_torch(tmp_path):
    """A whole generation (model load, session, PNG writing, contact sheet) with torch importable but unused."""
    from _models import model_file  # built in this process (with torch); the child only reads the file

    model = model_file("gen32")
    code = (
        "import sys\n"
        "from cgan.runtime import load\n"
        "from cgan.runtime.cli import main\n"
        f"gen = load({str(model)!r})\n"
        "assert gen.generate(stage=1, n=3).shape == (3, 32, 32)\n"
        f"sys.argv = ['cgan-run', '--model', {str(model)!r}, '--n', '2', '--out', {str(tmp_path)!r}, '--grid', {str(tmp_path / 'g.png')!r}, '--quiet']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('torch' in sys.modules)\n"
    )
    result = _child(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert len(list(tmp_path.glob("*.png"))) == 9  # 4 stages x 2 images + the sheet


def test_embedded_default_model_runs_without_torch_and_says_it_was_trained_on_the_synthetic_set(tmp_path):
    """The shipped model: found with no --model, loaded with torch blocked, a real trained generator, as its card says."""
    import re

    import numpy as np
    from PIL import Image

    from conftest import run_script, torch_loaded
    from cgan.runtime.contract import read_metadata
    from cgan.runtime.resolve import EMBEDDED_DEFAULT

    assert EMBEDDED_DEFAULT.is_file(), "the repository ships runtime/assets/default.onnx"
    assert EMBEDDED_DEFAULT.stat().st_size <= 16 * 2**20
    info = read_metadata(EMBEDDED_DEFAULT)
    prov = info.provenance
    assert prov["cgan.training_data"].startswith("synthetic OASIS-like set")
    card = (EMBEDDED_DEFAULT.parent / "README.md").read_text()
    # the card's reproduction commands name the steps and seed the metadata records
    assert re.search(rf"cgan-train .*--max-steps {prov['cgan.steps']}\b", card)
    assert re.search(rf"cgan-export .*ckpt_0*{prov['cgan.steps']}\.pt", card)
    assert f"seed {prov['cgan.seed']}" in card and re.search(rf"cgan-train .*--max-steps {prov['cgan.steps']} .*--seed {prov['cgan.seed']}\b", card)
    # the metadata names the set and the recipe, and the card's command is that recipe
    assert "set v2" in prov["cgan.training_data"]
    assert prov["cgan.objective"] and prov["cgan.discriminator"] and prov["cgan.batch_size"]
    assert re.search(rf"cgan-train .*--batch-size {prov['cgan.batch_size']}\b", card)
    width = re.search(r"width (\d+)", prov["cgan.discriminator"])[1]
    assert width == "64" or re.search(rf"cgan-train .*--disc-width {width}\b", card)
    if "DiffAugment" in prov["cgan.objective"]:
        policy = prov["cgan.objective"].split("DiffAugment ")[1].split(";")[0]
        assert re.search(rf"cgan-train .*--diffaugment {policy}(\s|$)", card, re.M)
    if "frozen stage reader" in prov["cgan.objective"]:
        weight = prov["cgan.objective"].split("frozen stage reader")[1].split("weight ")[1].split(";")[0]
        assert re.search(rf"cgan-train .*--reader-weight {weight}\b", card) and "stage reader" in prov["cgan.stage_reader"]
    if prov.get("cgan.init_from"):  # a fine-tuned model: the card also gives the run it started from
        start = re.match(r"ckpt_0*(\d+)\.pt \(step (\d+) ", prov["cgan.init_from"])
        assert start and start[1] == start[2], prov["cgan.init_from"]
        assert re.search(rf"cgan-train .*--max-steps {start[1]}\b", card)
        assert re.search(rf"cgan-train .*--init-from \S*ckpt_0*{start[1]}\.pt", card)

    result = run_script("cgan-run", "--stage", "all", "--n", "4", "--out", str(tmp_path / "out"), "--quiet",
                        block_torch=True, cwd=tmp_path)  # no model_output/ here: the embedded model
    assert result.returncode == 0, result.stderr
    assert not torch_loaded(result)
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 16
    images = np.stack([np.asarray(Image.open(f)) for f in files]).reshape(4, 4, info.img_size, info.img_size).astype(float)
    assert images.std() > 20  # brain slices, not a constant or noise-free blank
    within = images.std(axis=1).mean()  # different noise, same stage: a trained model varies (no collapse)
    assert within > 5
    stage_means = images.mean(axis=(1, 2, 3))
    assert np.ptp(stage_means) > 3  # the stage changes the images (same noise in every stage)
