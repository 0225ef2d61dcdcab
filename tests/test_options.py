"""Each command's options are described once, their names agree across the commands, a renamed option
still works under its former name, and cgan-export refuses to replace a file unless told, like the others."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from cgan.runtime.run_options import RunConfig, RunOptions, build_parser
from cgan.train.options import TrainConfig, options

from _cli import call_main


# ---------------------------------------------------------------- cgan-run

def _run_actions():
    return {a.dest: a for a in build_parser()._actions if a.dest not in ("help", "version", "model_argument")}


def test_cgan_run_parser_is_built_from_the_options_dataclass():
    actions = _run_actions()
    fields = {f.name: f for f in dataclasses.fields(RunOptions)}
    assert set(actions) == set(fields)
    for name, f in fields.items():
        assert actions[name].default in (f.default, False), name  # a switch's default is False
        assert list(actions[name].option_strings) == list(f.metadata["cli"]["flags"]), name
    # and what argparse gives back is exactly what run() takes
    assert set(vars(build_parser().parse_args([]))) == set(fields)
    RunOptions(**vars(build_parser().parse_args([])))


def test_the_run_record_holds_the_recorded_options():
    config = RunConfig(model="m.onnx", stages=(0, 2), n=3)
    record = config.record()
    assert list(record)[:2] == ["model", "stages"] and record["stages"] == [0, 2]
    assert {"n", "seed", "start", "out", "layout", "format", "device", "engine", "noise_version"} <= set(record)
    assert not {"stage", "quiet", "balance", "ratio", "target"} & set(record)
    assert config.line().startswith("cgan-run model=m.onnx stages=0,2 n=3 ")


@pytest.mark.parametrize("flag", ["--device", "--provider"])
def test_cgan_run_device_and_its_former_name_provider(flag, tmp_path):
    from _models import model_file

    out = tmp_path / "o"
    result = call_main(_main(), ["--model", str(model_file("gen32")), flag, "cpu", "--n", "1", "--stage", "0", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "device=cpu" in result.stdout and len(list(out.glob("*.png"))) == 1


def test_cgan_run_takes_the_model_as_an_argument_too(tmp_path):
    from _models import model_file

    model = str(model_file("gen32"))
    out = tmp_path / "o"
    result = call_main(_main(), [model, "--n", "1", "--stage", "0", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert len(list(out.glob("*.png"))) == 1
    both = call_main(_main(), [model, "--model", str(tmp_path / "other.onnx"), "--out", str(tmp_path / "p")])
    assert both.exit_code == 2 and "two models given" in both.stderr
    assert not (tmp_path / "p").exists()


def _main():
    from cgan.runtime.cli import main

    return main


# ---------------------------------------------------------------- cgan-train

def test_cgan_train_options_are_the_config_fields():
    from cgan.train.cli import app

    command = typer.main.get_command(app)
    params = {p.name: p for p in command.params}
    flagged = {f.name: f for f in options()}
    assert set(params) == set(flagged)
    for name, f in flagged.items():
        assert params[name].default == f.default, name
        assert params[name].help == f.metadata["cli"]["help"], name
    # settings that are not options keep their defaults (Adam's betas, the resume log)
    assert {f.name for f in dataclasses.fields(TrainConfig)} - set(flagged) == {"beta1", "beta2", "changes"}


def test_cgan_train_and_cgan_run_name_the_device_alike():
    from cgan.train.cli import app

    train_flags = {o for p in typer.main.get_command(app).params for o in p.opts}
    assert "--device" in train_flags and "--device" in _run_actions()["device"].option_strings


# ---------------------------------------------------------------- cgan-export

def test_cgan_export_refuses_to_replace_a_model_unless_told(tmp_path):
    """It replaced an existing .onnx by default, unlike every other command."""
    from test_export_cli import invoke, save_checkpoint

    ckpt = save_checkpoint(tmp_path / "g.pth")
    out = tmp_path / "gen.onnx"
    assert invoke(str(ckpt), "--out", str(out), "--no-card").exit_code == 0
    out.write_bytes(b"the user's file")
    again = invoke(str(ckpt), "--out", str(out), "--no-card")
    assert again.exit_code == 1 and "--overwrite" in again.stderr and "Traceback" not in again.output
    assert out.read_bytes() == b"the user's file"
    assert invoke(str(ckpt), "--out", str(out), "--no-card", "--overwrite").exit_code == 0
    assert out.read_bytes() != b"the user's file"


# ---------------------------------------------------------------- MODEL or --model, in every command that takes a model

def test_cgan_web_takes_the_model_as_an_option_too(tmp_path):
    from _models import model_file

    from cgan.runtime.web.cli import app

    model = str(model_file("gen32"))
    built = CliRunner().invoke(app, ["build", "--model", model, "--out", str(tmp_path / "site"), "--no-webgpu"])
    assert built.exit_code == 0, built.output
    assert (tmp_path / "site" / "model.onnx").read_bytes() == model_file("gen32").read_bytes()
    both = CliRunner().invoke(app, ["build", model, "--model", "other.onnx", "--out", str(tmp_path / "s2")])
    assert both.exit_code == 1 and "two models given" in both.stderr and not (tmp_path / "s2").exists()


def test_cgan_eval_takes_the_model_as_an_option_too(tmp_path):
    from cgan.train.eval.cli import app

    missing = tmp_path / "missing.onnx"
    for args in ([str(missing)], ["--model", str(missing)]):
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "e"), "--quick"])
        assert result.exit_code == 1 and f"{missing} does not exist" in result.stderr, result.output
    both = CliRunner().invoke(app, [str(missing), "--model", "other.onnx", "--out", str(tmp_path / "e")])
    assert both.exit_code == 1 and "two models given" in both.stderr
