"""The chain's contract: the stage names travel from the training run through the generator file into the
ONNX metadata and the model card, and the files that link the commands are named in one place."""

from __future__ import annotations

import shutil

import pytest
import torch
from typer.testing import CliRunner

from cgan.export.cli import app as export_app
from cgan.runtime.contract import (
    GENERATOR_FILE, LAST_EXPORT, LAST_GENERATOR, MODEL_FILE, OASIS_FOLDERS, ORIGINAL_GENERATOR_KEYS, OUTPUT_DIR,
    STAGE_NAMES, read_metadata, stage_names_for,
)
from cgan.runtime.resolve import LAST_EXPORT as RESOLVED_LAST_EXPORT
from cgan.train.cli import app as train_app
from cgan.train.models import Generator, GeneratorConfig
from cgan.train.synth import make_synthetic_set

from _train_setup import BATCH, DISC_WIDTH, IMG, N_IMAGES, WIDTH, quiet, torch_threads_kept

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def run_with_own_classes(tmp_path_factory):
    """A one-step cgan-train run on class folders named a, b, c, d (the tiny synthetic set, renamed)."""
    root = tmp_path_factory.mktemp("own_classes")
    data = make_synthetic_set(root / "syn", n=N_IMAGES, seed=3, img_size=IMG, log=quiet)
    for folder, name in zip(OASIS_FOLDERS, CLASSES):
        shutil.move(str(data / folder), str(data / name))
    out = root / "model_output"
    args = ["--data", str(data), "--classes", ",".join(CLASSES), "--cache-dir", str(root / "cache"),
            "--img-size", str(IMG), "--batch-size", str(BATCH), "--width", str(WIDTH), "--disc-width", str(DISC_WIDTH),
            "--out", str(out), "--device", "cpu", "--threads", "1", "--max-steps", "1", "--quiet"]
    with torch_threads_kept():
        result = CliRunner().invoke(train_app, args)
    assert result.exit_code == 0, result.output
    return out


def test_the_generator_file_carries_the_class_names_and_stays_loadable_by_the_original(run_with_own_classes):
    saved = torch.load(run_with_own_classes / GENERATOR_FILE, weights_only=True)
    assert saved["class_names"] == CLASSES
    assert set(ORIGINAL_GENERATOR_KEYS) <= set(saved)
    # the original project's loader: build from the file's sizes, load "model" strictly
    generator = Generator(GeneratorConfig(z_dim=saved["z_dim"], num_classes=saved["num_classes"],
                                          img_size=saved["img_size"], width=WIDTH))
    generator.load_state_dict(saved["model"], strict=True)


def test_the_stage_names_reach_the_onnx_metadata_and_the_card(run_with_own_classes, tmp_path):
    out = tmp_path / "own.onnx"
    with torch_threads_kept():
        result = CliRunner().invoke(export_app, [str(run_with_own_classes / GENERATOR_FILE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_metadata(out).stage_names == tuple(CLASSES)
    card = (tmp_path / "own.README.md").read_text()
    assert "| 0 | a |" in card and "| 3 | d |" in card and "Moderate" not in card.split("## Stages")[1].split("##")[0]


def test_a_seed_format_file_without_names_gets_the_dementia_stage_names(tmp_path):
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(img_size=32, width=64))
    path = tmp_path / GENERATOR_FILE
    torch.save({"model": generator.state_dict(), "z_dim": 100, "num_classes": 4, "img_size": 32}, path)
    out = tmp_path / "seed.onnx"
    with torch_threads_kept():
        result = CliRunner().invoke(export_app, [str(path), "--out", str(out), "--no-card"])
    assert result.exit_code == 0, result.output
    assert read_metadata(out).stage_names == STAGE_NAMES


@pytest.mark.parametrize(("classes", "expected"), [
    (list(OASIS_FOLDERS), STAGE_NAMES),
    (["non demented", "VERY_MILD dementia", "Mild Dementia", "moderate-dementia"], STAGE_NAMES),
    (["stage0", "stage1", "stage2", "stage3"], STAGE_NAMES),
    (["stage0", "stage1", "stage2"], ("stage 0", "stage 1", "stage 2")),
    (["healthy", "sick"], ("healthy", "sick")),
    (None, STAGE_NAMES),
])
def test_stage_names_follow_the_class_folders(classes, expected):
    assert stage_names_for(len(expected), classes) == expected


def test_the_default_paths_are_one_definition():
    assert LAST_GENERATOR == OUTPUT_DIR / GENERATOR_FILE and LAST_EXPORT == OUTPUT_DIR / MODEL_FILE
    assert RESOLVED_LAST_EXPORT is LAST_EXPORT
    assert str(LAST_EXPORT) == "model_output/cDCGAN_generator.onnx"  # the name users and the Hub default know
