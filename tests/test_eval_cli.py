"""cgan-eval on the command line: help without torch, one-line refusals, and a whole tiny run."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
    from cgan.train.eval.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    assert "Traceback" not in result.stderr
    return errors[0]


def test_help_without_torch_and_the_page_says_why_not_inception():
    result = run_script("cgan-eval", "--help", block_torch=True)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "--group-regex" in text and "--augment" in text and "--n" in text
    assert not re.search(r"\bissues?\b", text.lower())  # the help explains itself, not the project's history
    assert not re.search(r"\bv1\b", text)  # no longer mentions the first synthetic set
    assert "--quick" in text and "--overwrite" in text and "docs/commands/cgan-eval.md" in text
    assert " ".join(DISCLAIMER.split()) in text
    assert not torch_loaded(result)
    # the prose that --help no longer holds is on the command's page
    page = " ".join((Path(__file__).resolve().parents[1] / "docs" / "commands" / "cgan-eval.md").read_text().split())
    assert "Inception" in page and "conditional accuracy" in page and "By subject" in page and "judge set" in page


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
        (["--n", "4"], "--n"),  # KID and 3-NN precision/recall need more: refused before any work
        (["--device", "tpu"], "--device"),
        (["--seed", "-3"], "--seed"),
        (["--judges", "huge"], "--judges"),
        (["--gate", "2"], "--gate"),
        (["--augment", "--repeats", "0"], "--repeats"),
        (["--augment", "--ratio", "-1"], "--ratio"),
        (["--holdout", "0.9"], "--holdout"),
    ],
)
def test_bad_settings_are_one_line(tmp_path, args, words):
    from _models import model_file

    assert words in _invoke(str(model_file("gen32")), "--out", str(tmp_path / "out"), *args)


def test_too_few_real_images_are_refused_before_any_judge_trains(tmp_path):
    from _models import model_file
    from _subjects import write_subject_set

    data = write_subject_set(tmp_path / "data", subjects_per_stage=(4, 4, 4, 4), slices=2, img_size=32)
    line = _invoke(str(model_file("gen32")), "--data", str(data), "--out", str(tmp_path / "out"),
                   "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--threads", "1")
    assert "too few real images" in line and "held-out" in line and "Non-demented (2)" in line
    assert not (tmp_path / "cache" / "judges").exists() and not (tmp_path / "out").exists()


def test_an_unwritable_out_is_refused_before_any_work(tmp_path):
    from _models import model_file

    # /proc takes no new files, whoever runs the test (root included); the missing --data is never reached
    line = _invoke(str(model_file("gen32")), "--data", str(tmp_path / "no_data"), "--out", "/proc/cgan-eval-test/out")
    assert "--out /proc/cgan-eval-test/out is not writable" in line


def test_a_second_run_into_the_same_out_needs_overwrite(tmp_path):
    from _models import model_file

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    args = [str(model_file("gen32")), "--data", str(tmp_path / "no_data"), "--out", str(out)]
    line = _invoke(*args)
    assert "already holds a report" in line and "--overwrite" in line
    assert "no_data" in _invoke(*args, "--overwrite")  # past the check: the next problem is the data
    assert (out / "report.json").read_text() == "{}"


def test_missing_data_folder_is_one_line(tmp_path):
    from _models import model_file

    assert "no_data" in _invoke(str(model_file("gen32")), "--data", str(tmp_path / "no_data"),
                                "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu")


def test_corrupt_judge_is_one_line(tmp_path):
    from _models import model_file

    from cgan.train.data import load_image_set
    from cgan.train.eval.judges import cache_file, default_judges
    from cgan.train.eval.splits import split_image_set
    from cgan.train.synth import make_synthetic_set

    data = make_synthetic_set(tmp_path / "data", n=160, seed=3, img_size=32, log=lambda _m: None, workers=1)
    image_set = load_image_set(data, img_size=32, cache_dir=tmp_path / "cache", log=lambda _m: None)
    bad = cache_file(tmp_path / "cache", image_set, split_image_set(image_set), default_judges()[0])
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"garbage")
    line = _invoke(str(model_file("gen32")), "--data", str(data), "--judges", "small", "--out", str(tmp_path / "out"),
                   "--cache-dir", str(tmp_path / "cache"), "--device", "cpu")
    assert bad.name in line and "delete it to retrain" in line


@pytest.mark.slow
def test_whole_run_with_subjects_the_augmentation_experiment_and_judge_reuse(tmp_path):
    from _models import model_file
    from _subjects import write_subject_set

    data = write_subject_set(tmp_path / "data", subjects_per_stage=(6, 5, 5, 4), slices=8, img_size=32)
    out = tmp_path / "out"
    args = [str(model_file("gen32")), "--data", str(data), "--n", "16", "--out", str(out), "--judge-epochs", "1",
            "--cache-dir", str(tmp_path / "cache"), *FAST]
    first = run_script("cgan-eval", *args, "--augment", "--repeats", "2", "--augment-max-per-stage", "12",
                       "--augment-epochs", "1")
    assert first.returncode == 0, first.stderr
    assert "split by subject" in first.stdout
    assert "training judge small (64 px)" in first.stdout and "training judge deep (32 px)" in first.stdout
    assert "img/s" in first.stdout  # progress with rates
    assert "verdict:" in first.stdout and "learning curve" in first.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["split"]["kind"] == "subject"
    assert [a + b + c for a, b, c in zip(report["split"]["subjects_fit"], report["split"]["subjects_validation"],
                                         report["split"]["subjects_held_out"])] == [6, 5, 5, 4]
    assert [j["judge"] for j in report["judges"]] == ["small (64 px)", "deep (32 px)"]
    for j in report["judges"]:
        assert [sum(row) for row in j["conditional_accuracy"]["confusion"]] == [16] * 4
        assert len(j["kid"]["per_stage"]) == 4 and len(j["precision_recall"]["per_stage"]) == 4
    aug = report["augment"]["per_judge"]
    assert [len(j["c"]["runs"]) for j in aug] == [2]  # the small judge's architecture only, by default
    assert [p["fraction"] for p in aug[0]["curve"]["b"]] == [0.1, 0.25, 0.5, 1.0]
    for j in report["judges"]:
        assert len(j["conditional_accuracy"]["per_stage_ci"]) == 4 and len(j["held_out_ci"]["per_class"]["ci"]) == 4
    assert report["artefacts"]["rate"]["real_held_out"] <= 0.1
    assert report["markers"] is None  # real folder data: the synthetic markers are not reported
    for name in ("report.md", "samples.png", "augment.png"):
        assert (out / name).is_file()

    refused = run_script("cgan-eval", *args)
    assert "already holds a report" in _one_error_line(refused)
    second = run_script("cgan-eval", *args, "--overwrite")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("using the cached judge") == 2 and "training judge" not in second.stdout
    again = json.loads((out / "report.json").read_text())
    # same seed, same judges: the same measurements
    for a, b in zip(again["judges"], report["judges"]):
        assert a["conditional_accuracy"] == b["conditional_accuracy"]
        assert a["frechet"]["overall"]["generated"] == pytest.approx(b["frechet"]["overall"]["generated"])


def test_default_model_is_the_last_export(tmp_path, monkeypatch):
    """No MODEL: the same resolution as cgan-run, model_output/cDCGAN_generator.onnx first."""
    import shutil

    from _models import model_file

    from cgan.train.eval.sources import load_source

    (tmp_path / "model_output").mkdir()
    shutil.copy(model_file("gen32"), tmp_path / "model_output" / "cDCGAN_generator.onnx")
    monkeypatch.chdir(tmp_path)
    source = load_source(None, device="cpu")
    assert "last export" in source.description and source.img_size == 32
    assert source.generate(1, 3, seed=0).shape == (3, 32, 32)
