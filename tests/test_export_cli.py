"""cgan-export as a user runs it: the default chain, the config and result lines, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cgan.export.cli import app
from cgan.runtime.contract import DISCLAIMER, read_metadata
from cgan.train.models import Generator, GeneratorConfig

from conftest import run_script, stderr_lines, torch_loaded

CONFIG = GeneratorConfig(z_dim=16, num_classes=4, img_size=32, width=32)


def save_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    g = Generator(CONFIG)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": g.state_dict(), "z_dim": 16, "num_classes": 4, "img_size": 32, "config": CONFIG.to_dict(),
         "provenance": {"training_data": "cli test", "epochs": "0"}, "ema": False},
        path,
    )
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_help_without_torch_states_defaults_and_disclaimer():
    result = run_script("cgan-export", "--help", block_torch=True)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert " ".join(DISCLAIMER.split()) in text
    for expected in ("--opset", "--fp16", "--tolerance", "--push-to-hub", "--no-card", "model_output/cDCGAN_generator.pth"):
        assert expected in text
    assert not torch_loaded(result)


@pytest.mark.slow
def test_default_chain_reads_model_output_and_writes_model_and_card(tmp_path):
    save_checkpoint(tmp_path / "model_output" / "cDCGAN_generator.pth")
    result = run_script("cgan-export", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("cgan-export checkpoint=model_output/cDCGAN_generator.pth out=model_output/cDCGAN_generator.onnx opset=17")
    assert lines[-1].startswith("exported model_output/cDCGAN_generator.onnx (fp32, opset 17") and "max abs err" in lines[-1]
    info = read_metadata(tmp_path / "model_output" / "cDCGAN_generator.onnx")
    assert info.provenance["cgan.training_data"] == "cli test"
    assert (tmp_path / "model_output" / "cDCGAN_generator.README.md").is_file()
    assert sorted(p.name for p in (tmp_path / "model_output").iterdir()) == [
        "cDCGAN_generator.README.md", "cDCGAN_generator.onnx", "cDCGAN_generator.pth"]
    assert "model card: model_output/cDCGAN_generator.README.md" in result.stdout


@pytest.mark.slow
def test_the_card_never_replaces_a_readme_beside_the_model(tmp_path):
    """`cgan-export --out gen.onnx` run in a project folder replaced its README.md, even with --no-overwrite."""
    ckpt = save_checkpoint(tmp_path / "g.pth")
    readme = tmp_path / "README.md"
    readme.write_text("# my project\n")
    for flags in ((), ("--no-overwrite",)):
        for name in ("gen.onnx", "gen.README.md"):
            (tmp_path / name).unlink(missing_ok=True)
        result = invoke(str(ckpt), "--out", str(tmp_path / "gen.onnx"), *flags)
        assert result.exit_code == 0, result.output
        assert readme.read_text() == "# my project\n"
        card = (tmp_path / "gen.README.md").read_text()
        assert "gen.onnx" in card and "research" in card.lower()
    # --no-overwrite now guards the card too: both names are planned, and an existing one refuses the export
    (tmp_path / "gen.onnx").unlink()
    line = one_error_line(invoke(str(ckpt), "--out", str(tmp_path / "gen.onnx"), "--no-overwrite"))
    assert "gen.README.md" in line and "--overwrite" in line
    assert not (tmp_path / "gen.onnx").exists()


def test_missing_checkpoint_is_one_line(tmp_path):
    line = one_error_line(invoke(str(tmp_path / "none.pth"), "--out", str(tmp_path / "m.onnx")))
    assert "none.pth does not exist" in line
    assert list(tmp_path.iterdir()) == []


def test_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage")
    line = one_error_line(invoke(str(bad), "--out", str(tmp_path / "m.onnx")))
    assert "corrupt" in line and "bad.pth" in line


@pytest.mark.parametrize("opset", ["11", "16", "99"])
def test_bad_opset_is_one_line(tmp_path, opset):
    ckpt = save_checkpoint(tmp_path / "g.pth")
    line = one_error_line(invoke(str(ckpt), "--out", str(tmp_path / "m.onnx"), "--opset", opset))
    assert f"opset {opset} is not supported; choose 17.." in line
    assert not (tmp_path / "m.onnx").exists()


def test_unwritable_out_is_one_line(tmp_path):
    ckpt = save_checkpoint(tmp_path / "g.pth")
    line = one_error_line(invoke(str(ckpt), "--out", str(ckpt / "m.onnx")))
    assert "cannot write" in line


@pytest.mark.slow
def test_tiny_tolerance_fails_validation_and_writes_nothing(tmp_path):
    ckpt = save_checkpoint(tmp_path / "g.pth")
    out = tmp_path / "out" / "m.onnx"
    result = invoke(str(ckpt), "--out", str(out), "--tolerance", "1e-12")
    line = one_error_line(result)
    assert "differs from the torch Generator" in line and "tolerance 1e-12" in line
    assert sorted(p.name for p in out.parent.iterdir()) == []


@pytest.mark.slow
def test_no_card_and_fp16(tmp_path):
    ckpt = save_checkpoint(tmp_path / "g.pth")
    out = tmp_path / "out" / "m16.onnx"
    result = invoke(str(ckpt), "--out", str(out), "--fp16", "--no-card")
    assert result.exit_code == 0, result.output
    assert "precision=fp16" in result.stdout and "exported" in result.stdout and "(fp16, opset 17" in result.stdout
    assert [p.name for p in out.parent.iterdir()] == ["m16.onnx"]
    assert read_metadata(out).precision == "fp16"


def test_push_to_hub_offline_fails_before_exporting(tmp_path):
    ckpt = save_checkpoint(tmp_path / "g.pth")
    out = tmp_path / "m.onnx"
    result = run_script("cgan-export", str(ckpt), "--out", str(out), "--push-to-hub", "someone/dementia-cgan",
                        block_torch=True, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: cannot push to someone/dementia-cgan: HF_HUB_OFFLINE")
    assert not out.exists() and not torch_loaded(result)


def test_push_to_hub_without_token_fails_before_exporting(tmp_path):
    ckpt = save_checkpoint(tmp_path / "g.pth")
    out = tmp_path / "m.onnx"
    env = {"HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf_home"), "HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": ""}
    result = run_script("cgan-export", str(ckpt), "--out", str(out), "--push-to-hub", "someone/dementia-cgan",
                        block_torch=True, env=env)
    assert result.returncode == 1
    lines = stderr_lines(result)
    assert len(lines) == 1 and "no Hugging Face token" in lines[0]
    assert not out.exists()


def test_push_to_hub_bad_repo_id(tmp_path):
    line = one_error_line(invoke(str(tmp_path / "g.pth"), "--push-to-hub", "not a repo"))
    assert "OWNER/NAME" in line
