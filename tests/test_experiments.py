"""The scripts of the levers comparison (docs/experiments/): the stage-code scaling and its measure agree."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "docs" / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import alpha_scale  # noqa: E402
import stage_code_spread  # noqa: E402
from _train_setup import dataset, trained_checkpoint  # noqa: E402,F401 - fixtures


def test_the_spread_of_a_scaled_default_is_its_scale(tmp_path, capsys):
    for alpha in ("1.3", "0.8"):
        alpha_scale.main(["default", alpha, str(tmp_path / f"a{alpha}.onnx")])
    capsys.readouterr()
    stage_code_spread.main(["default", "default", str(tmp_path / "a1.3.onnx"), str(tmp_path / "a0.8.onnx")])
    rows = [line.split("|")[2:5] for line in capsys.readouterr().out.splitlines()[2:]]
    got = [(float(a), float(off), [float(s) for s in per.split("/")]) for a, off, per in rows]
    for (alpha, off, per_stage), want in zip(got, (1.0, 1.3, 0.8)):
        assert alpha == pytest.approx(want, abs=1e-3) and off < 1e-3
        assert per_stage == pytest.approx([want] * 4, abs=0.01)


def test_a_per_stage_scale_is_partly_off_the_line(tmp_path):
    alpha_scale.main(["default", "1.5,1,1,1", str(tmp_path / "s.onnx")])
    alpha, off, per_stage = stage_code_spread.spread(stage_code_spread.stage_table(str(tmp_path / "s.onnx")),
                                                     stage_code_spread.stage_table("default"))
    assert off > 0.05  # only Non-demented moved: no single scale gives it
    assert per_stage[0] > 1.2 and 1 < alpha < 1.5


def test_a_checkpoint_is_read_for_its_generator_table(tmp_path):
    torch = pytest.importorskip("torch")
    table = np.arange(16, dtype=np.float32).reshape(4, 4) ** 1.5
    torch.save({"generator": {"label_emb.weight": torch.from_numpy(table)}, "step": 1}, tmp_path / "ckpt.pt")
    np.testing.assert_array_equal(stage_code_spread.stage_table(str(tmp_path / "ckpt.pt")), table)
    torch.save({"discriminator": {}}, tmp_path / "no_generator.pt")
    with pytest.raises(SystemExit, match="no generator"):
        stage_code_spread.stage_table(str(tmp_path / "no_generator.pt"))


def test_the_stage_head_reading_is_the_trainers_own_discriminator(trained_checkpoint, dataset):
    """The script rebuilds the checkpoint's discriminator by itself; its reading of every image of the tiny
    set (n above each stage's count) is the one the trainer's own warm start gives, row by row."""
    import torch

    from _train_setup import make_run
    from cgan.train.loop.batches import to_model_input
    from cgan.train.store.read_init import read_init
    import stage_head_reading

    reading, accuracy, names = stage_head_reading.head_reading(str(trained_checkpoint), n=10_000, seed=0)
    assert reading.shape == (4, 4) and len(names) == 4 and 0 <= accuracy <= 1

    images = dataset[2]
    run = make_run(images, init_from=trained_checkpoint, aux_weight=0.5)
    run.load_init(read_init(run.config), run.config.init_from)
    run.D.eval()
    labels = torch.as_tensor(images.labels)
    with torch.no_grad():
        _, logits = run.D(to_model_input(np.asarray(images.images), torch.device("cpu")), labels)
    post = torch.softmax(logits, dim=1)
    expected = np.stack([post[labels == s].mean(0).numpy() for s in range(4)])
    np.testing.assert_allclose(reading, expected, atol=1e-5)


def test_the_stage_head_reading_refuses_a_run_without_a_head(dataset, tmp_path):
    from cgan.train.loop.run import TrainConfig, train
    from _train_setup import BATCH, DISC_WIDTH, IMG, WIDTH, quiet
    import stage_head_reading

    data, cache, images = dataset
    train(TrainConfig(out=tmp_path / "run", data=data, cache_dir=cache, img_size=IMG, width=WIDTH, disc_width=DISC_WIDTH,
                      batch_size=BATCH, max_steps=1, checkpoint_every=1, quiet=True, device="cpu", threads=1),
          image_set=images, log=quiet)
    with pytest.raises(SystemExit, match=r"no stage head \(--aux-weight 0\)"):
        stage_head_reading.head_reading(str(next((tmp_path / "run" / "checkpoints").glob("ckpt_*.pt"))), n=4, seed=0)


def test_the_artefact_rate_intervals_and_the_paired_test():
    import artefact_rate

    # no image flagged out of 128: the Wilson upper bound is z^2 / (n + z^2)
    lo, hi = artefact_rate.wilson(0, 128)
    assert lo == 0.0 and hi == pytest.approx(1.96**2 / (128 + 1.96**2))
    lo, hi = artefact_rate.wilson(50, 100)
    assert (lo + hi) / 2 == pytest.approx(0.5) and hi - lo == pytest.approx(2 * 1.96 * 0.05 / (1 + 1.96**2 / 100) * math.sqrt(1 + 1.96**2 / 100), rel=1e-6)
    # 5 discordant pairs all one way: 2 * (1/2)^5
    assert artefact_rate.mcnemar_p(0, 5) == pytest.approx(2 / 32)
    assert artefact_rate.mcnemar_p(3, 3) == 1.0 and artefact_rate.mcnemar_p(0, 0) == 1.0


def test_the_same_model_twice_flags_the_same_images(tmp_path, capsys):
    import json

    import artefact_rate

    report = tmp_path / "report.json"
    # thresholds at their floors: the strictest the rule ever is, so some of the default's images may be flagged
    report.write_text(json.dumps({"artefacts": {"thresholds": {"fragments": 0.002, "holes": 0.002, "torn": 0.004},
                                                "stage_names": ["a", "b", "c", "d"]}}))
    artefact_rate.main([str(report), "default", "default", "--n", "8"])
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == 2 and rows[0].split("|")[2] == rows[1].split("|")[2]
    assert rows[1].split("|")[5].strip() == "0 / 0" and rows[1].split("|")[6].strip() == "1"
