"""cgan-eval on the command line: help without torch, one-line refusals, and a whole tiny run."""

from __future__ import annotations

import json

import pytest

from conftest import run_script, stderr_lines, torch_loaded
from typer.testing import CliRunner

from cgan.runtime.contract import DISCLAIMER

# tiny models: one torch thread (a busy shared CPU makes torch's thread pool wait on itself)
FAST = ["--threads", "1", "--device", "cpu"]


def _one_error_line(result) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = stderr_lines(result)
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    assert "Traceback" not in result.stderr
    return errors[0]


def _invoke(*args: str) -> str:
    """Run cgan-eval in this process (torch is already imported here, so it is quick); its one error line."""
    from cgan.train.eval_cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    assert "Traceback" not in result.stderr
    return errors[0]


def test_help_without_torch_says_why_not_inception():
    result = run_script("cgan-eval", "--help", block_torch=True)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Inception" in text and "conditional accuracy" in text
    assert "--classifier" in text and "--n" in text
    assert " ".join(DISCLAIMER.split()) in text
    assert not torch_loaded(result)


def test_without_torch_names_the_extra(tmp_path):
    result = run_script("cgan-eval", "--out", str(tmp_path / "out"), block_torch=True)
    line = _one_error_line(result)
    assert "torch" in line and "dementia-cgan[train]" in line


def test_missing_model_is_one_line(tmp_path):
    assert str(tmp_path / "nothing.onnx") in _invoke(str(tmp_path / "nothing.onnx"), "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_no_model_anywhere_is_one_line(tmp_path, monkeypatch):
    from cgan.runtime.resolve import EMBEDDED_DEFAULT

    if EMBEDDED_DEFAULT.is_file():
        pytest.skip("this installation has an embedded default model")
    monkeypatch.chdir(tmp_path)  # no model_output/ here
    line = _invoke("--out", str(tmp_path / "out"))
    assert "no MODEL given" in line and "cgan-export" in line


def test_unknown_model_kind_is_one_line(tmp_path):
    bad = tmp_path / "model.txt"
    bad.write_text("not a model")
    assert "extension" in _invoke(str(bad), "--out", str(tmp_path / "out"))


def test_not_onnx_is_one_line(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("not a model")
    assert "model.onnx" in _invoke(str(bad), "--out", str(tmp_path / "out"))


@pytest.mark.parametrize(
    "args, words",
    [
        (["--n", "1"], "--n"),
        (["--device", "tpu"], "--device"),
        (["--seed", "-3"], "--seed"),
        (["--classifier-size", "4"], "--classifier-size"),
    ],
)
def test_bad_settings_are_one_line(tmp_path, args, words):
    from _models import model_file

    assert words in _invoke(str(model_file("gen32")), "--out", str(tmp_path / "out"), *args)


def test_missing_data_folder_is_one_line(tmp_path):
    from _models import model_file

    assert "no_data" in _invoke(str(model_file("gen32")), "--data", str(tmp_path / "no_data"),
                                "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu")


def test_corrupt_classifier_is_one_line(tmp_path):
    from _models import model_file

    from cgan.train.synth import make_synthetic_set

    data = make_synthetic_set(tmp_path / "data", n=160, seed=3, img_size=32, log=lambda _m: None, workers=1)
    bad = tmp_path / "clf.pt"
    bad.write_bytes(b"garbage")
    assert "clf.pt" in _invoke(str(model_file("gen32")), "--data", str(data), "--classifier", str(bad),
                               "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu")


@pytest.mark.slow
def test_whole_run_on_tiny_data_and_classifier_reuse(tmp_path):
    from _models import model_file

    from cgan.train.synth import make_synthetic_set

    data = make_synthetic_set(tmp_path / "data", n=300, seed=3, img_size=32, log=lambda _m: None, workers=1)
    clf = tmp_path / "clf.pt"
    out = tmp_path / "out"
    args = [str(model_file("gen32")), "--data", str(data), "--n", "16", "--out", str(out), "--classifier", str(clf),
            "--classifier-epochs", "1", "--classifier-size", "32", "--cache-dir", str(tmp_path / "cache"), *FAST]
    first = run_script("cgan-eval", *args)
    assert first.returncode == 0, first.stderr
    assert "training the reference classifier" in first.stdout
    assert "| stage |" in first.stdout and "bar: not all criteria met" in first.stdout
    assert clf.is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["n_per_stage"] == 16
    assert [sum(row) for row in report["conditional_accuracy"]["confusion"]] == [16] * 4
    assert report["markers"] is None  # real folder data: the synthetic markers are not reported
    assert report["classifier"]["clean_held_out"] is True
    assert (out / "report.md").is_file() and (out / "samples.png").is_file()

    second = run_script("cgan-eval", *args)
    assert second.returncode == 0, second.stderr
    assert "using the reference classifier" in second.stdout
    assert "training the reference classifier" not in second.stdout
    again = json.loads((out / "report.json").read_text())
    # same seed, same classifier: the same measurements
    assert again["conditional_accuracy"] == report["conditional_accuracy"]
    assert again["frechet"]["overall"]["generated"] == pytest.approx(report["frechet"]["overall"]["generated"])


def test_default_model_is_the_last_export(tmp_path, monkeypatch):
    """No MODEL: the same resolution as cgan-run, model_output/cDCGAN_generator.onnx first."""
    import shutil

    from _models import model_file

    from cgan.train.eval import load_source

    (tmp_path / "model_output").mkdir()
    shutil.copy(model_file("gen32"), tmp_path / "model_output" / "cDCGAN_generator.onnx")
    monkeypatch.chdir(tmp_path)
    source = load_source(None, device="cpu")
    assert "last export" in source.description and source.img_size == 32
    assert source.generate(1, 3, seed=0).shape == (3, 32, 32)
