"""cgan-export --weights: which generator of a training checkpoint is exported."""

from __future__ import annotations

import pytest
import torch

from cgan.export.api import export_checkpoint, load_generator
from cgan.export.errors import CheckpointError
from cgan.runtime.contract import read_metadata
from cgan.train.models import Generator


def _checkpoint(tmp_path):
    torch.manual_seed(0)
    raw, ema = Generator(img_size=32), Generator(img_size=32)
    path = tmp_path / "ckpt_000000010.pt"
    torch.save({"generator": raw.state_dict(), "generator_ema": ema.state_dict(), "config": raw.config.to_dict(),
                "provenance": {"ema": "true (decay 0.999)"}}, path)
    return path, raw, ema


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_auto_and_ema_take_the_ema_copy_raw_takes_the_optimised_weights(tmp_path):
    path, raw, ema = _checkpoint(tmp_path)
    assert _same(load_generator(path)[0], ema)
    assert _same(load_generator(path, weights="ema")[0], ema)
    got, meta = load_generator(path, weights="raw")
    assert _same(got, raw) and meta["state_key"] == "generator"


def test_raw_export_says_so_in_the_metadata(tmp_path):
    path, _, _ = _checkpoint(tmp_path)
    report = export_checkpoint(path, tmp_path / "raw.onnx", weights="raw", model_card=False)
    prov = read_metadata(report.path).provenance
    assert prov["cgan.checkpoint_weights"] == "generator"
    assert prov["cgan.ema"].startswith("false")


def test_a_generator_file_of_raw_weights_is_exported_as_raw_even_if_its_run_kept_an_ema_copy(tmp_path):
    """The raw weights taken out of a training checkpoint into a generator file keep the run's provenance,
    which says the run had EMA; the file's own flag decides what the model's metadata says."""
    from cgan.train.store.write import generator_payload, save_generator

    path, raw, _ = _checkpoint(tmp_path)
    state = torch.load(path, weights_only=True)
    gen_file = save_generator(tmp_path / "cDCGAN_generator.pth",
                              generator_payload(state["generator"], state["config"], state["provenance"], ema=False,
                                                class_names=["a", "b", "c", "d"]))
    report = export_checkpoint(gen_file, tmp_path / "raw.onnx", model_card=False)
    assert read_metadata(report.path).provenance["cgan.ema"].startswith("false")
    assert _same(load_generator(gen_file)[0], raw)


def test_refusals(tmp_path):
    path, raw, _ = _checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="unknown"):
        load_generator(path, weights="best")
    bare = tmp_path / "bare.pt"
    torch.save(raw.state_dict(), bare)
    with pytest.raises(CheckpointError, match="no EMA copy"):
        load_generator(bare, weights="ema")
    gen_file = tmp_path / "cDCGAN_generator.pth"
    torch.save({"model": raw.state_dict(), "z_dim": 100, "num_classes": 4, "img_size": 32, "ema": True}, gen_file)
    with pytest.raises(CheckpointError, match="EMA weights of its run"):
        load_generator(gen_file, weights="raw")
