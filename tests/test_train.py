"""cgan-train: artefacts of a short run, the original's generator format, exact resume, refusals, sampling."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from conftest import run_script
from cgan.runtime.contract import from_uint8
from cgan.train.cli import app
from cgan.train.loop.run import TrainConfig, epoch_order, iter_batches, to_model_input, train
from cgan.train.models import Generator, GeneratorConfig, MinibatchStd, build_discriminator
from cgan.train.synth import make_synthetic_set

from _train_setup import (BATCH, DISC_WIDTH, IMG, N_IMAGES, WIDTH, dataset, keep_torch_threads,  # noqa: F401 - fixtures
                          kill_at_checkpoint, quiet)


def cli_args(dataset, out: Path, *extra: str) -> list[str]:
    data, cache, _ = dataset
    return ["--data", str(data), "--cache-dir", str(cache), "--img-size", str(IMG), "--batch-size", str(BATCH),
            "--width", str(WIDTH), "--disc-width", str(DISC_WIDTH), "--out", str(out), "--device", "cpu", "--threads", "1", *extra]


@pytest.fixture(scope="module")
def short_run(dataset, tmp_path_factory):
    """One CLI run of 5 steps: epoch 1 complete (4 steps), then 1 step of epoch 2; EMA on."""
    out = tmp_path_factory.mktemp("short_run") / "model_output"
    result = run_script("cgan-train", *cli_args(dataset, out, "--max-steps", "5", "--checkpoint-every", "2", "--ema"))
    assert result.returncode == 0, result.stderr
    return out, result


def test_progress_counts_the_epochs_the_run_reaches(short_run):
    """--max-steps 5 with 4 steps an epoch (and --epochs 10 by default): the run ends in epoch 2, so the
    progress says epoch 1/2 and 2/2, never 1/10, and the last line says why it stopped."""
    _, result = short_run
    epochs = re.findall(r"epoch (\d+)/(\d+)", result.stdout)
    assert epochs and {total for _, total in epochs} == {"2"}, result.stdout
    assert "done: 5 steps (1.25 epochs of 4 steps, stopped by --max-steps 5)" in result.stdout, result.stdout


def history_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "training_history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------- artefacts

def test_short_run_writes_every_artefact(short_run):
    out, result = short_run
    assert "config: " in result.stdout and "epoch 1/2:" in result.stdout
    assert {p.name for p in out.iterdir()} == {
        "cDCGAN_generator.pth", "checkpoints", "config.json", "loss_curves.png", "samples", "training_history.csv"}

    rows = history_rows(out)
    assert list(rows[0]) == ["epoch", "g_loss", "d_loss", "d_real", "d_fake", "epoch_time_s", "steps", "images_per_s"]
    assert [(r["epoch"], r["steps"]) for r in rows] == [("1", "4"), ("2", "1")]  # the second epoch is partial
    for row in rows:
        values = [float(v) for v in row.values()]
        assert all(math.isfinite(v) for v in values), row
        assert 0 < float(row["d_real"]) < 1 and 0 < float(row["d_fake"]) < 1
        assert float(row["images_per_s"]) > 0

    config = json.loads((out / "config.json").read_text())
    assert config["max_steps"] == 5 and config["ema"] is True and config["img_size"] == IMG
    assert config["resolved"]["device"] == "cpu" and config["resolved"]["precision"] == "fp32"
    assert config["resolved"]["steps_per_epoch"] == N_IMAGES // BATCH

    with Image.open(out / "loss_curves.png") as im:
        assert im.format == "PNG" and im.width > 200
    samples = sorted(p.name for p in (out / "samples").iterdir())
    assert samples == ["epoch_001.png", "step_0000005.png"]
    with Image.open(out / "samples" / "step_0000005.png") as im:
        assert im.mode == "L" and im.height == 2 + 4 * (IMG + 2)  # one row per stage
        assert len(set(np.asarray(im).ravel().tolist())) > 10
        assert im.text["cgan.noise_version"] == "2"  # which noise contract drew the fixed samples

    # checkpoints every 2 steps, at the epoch end and at the end; the last 2 kept
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt_000000004.pt", "ckpt_000000005.pt"]


def test_generator_file_is_the_originals_format_with_provenance(short_run):
    out, _ = short_run
    payload = torch.load(out / "cDCGAN_generator.pth", weights_only=True)
    assert list(payload)[:4] == ["model", "z_dim", "num_classes", "img_size"]
    assert (payload["z_dim"], payload["num_classes"], payload["img_size"]) == (100, 4, IMG)
    assert payload["config"]["img_size"] == IMG and payload["ema"] is True
    prov = payload["provenance"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in prov.items())
    for key in ("training_data", "epochs", "steps", "created", "tool_version", "seed", "discriminator", "precision"):
        assert prov[key], key
    assert prov["steps"] == "5" and prov["seed"] == "42" and prov["discriminator"].startswith("projection")
    assert prov["train_device"] == "cpu" and prov["lr"] == "G 0.0002, D 5e-05"  # where and how fast it learned
    assert "synthetic" not in prov["training_data"] and "OASIS layout" in prov["training_data"]
    assert prov["ema"].startswith("true")

    # with --ema the exported weights are the EMA copy, not the raw generator
    full = torch.load(out / "checkpoints" / "ckpt_000000005.pt", weights_only=True)
    for key, value in payload["model"].items():
        assert torch.equal(value, full["generator_ema"][key]), key
    assert any(not torch.equal(payload["model"][k], full["generator"][k]) for k in payload["model"])

    assert payload["config"]["width"] == WIDTH
    g = Generator(**payload["config"])  # the file alone rebuilds the model
    g.load_state_dict(payload["model"], strict=True)
    with torch.no_grad():
        image = g.eval()(torch.randn(2, 100, 1, 1), torch.tensor([0, 3]))
    assert image.shape == (2, 1, IMG, IMG) and torch.isfinite(image).all()


class OriginalGenerator(nn.Module):
    """The original project's Generator, written from its published description (128 px only)."""

    def __init__(self, z_dim=100, num_classes=4, img_channels=1):
        super().__init__()
        self.label_emb = nn.Embedding(num_classes, num_classes)
        layers, c_in = [], z_dim + num_classes
        for i, c_out in enumerate((512, 256, 128, 64, 32)):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c_in = c_out
        layers += [nn.ConvTranspose2d(c_in, img_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z, labels):
        return self.net(torch.cat([z, self.label_emb(labels)[:, :, None, None]], 1))


@pytest.mark.slow
def test_128px_generator_file_loads_in_the_originals_inference_code(tmp_path):
    data = make_synthetic_set(tmp_path / "syn128", n=8, seed=1, img_size=128, log=quiet)
    out = tmp_path / "run"
    result = run_script("cgan-train", "--data", str(data), "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                        "--max-steps", "1", "--batch-size", "4", "--device", "cpu", "--threads", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    # what the original's inference.py does
    checkpoint = torch.load(out / "cDCGAN_generator.pth", map_location="cpu", weights_only=True)
    original = OriginalGenerator(z_dim=checkpoint["z_dim"], num_classes=checkpoint["num_classes"], img_channels=1)
    original.load_state_dict(checkpoint["model"])  # strict by default
    original.eval()
    ours = Generator(z_dim=checkpoint["z_dim"], num_classes=checkpoint["num_classes"]).eval()
    ours.load_state_dict(checkpoint["model"], strict=True)
    z, labels = torch.randn(3, 100, 1, 1), torch.tensor([0, 1, 3])
    with torch.no_grad():
        torch.testing.assert_close(original(z, labels), ours(z, labels), rtol=0, atol=0)


# ---------------------------------------------------------------- exact resume

@pytest.mark.slow
def test_resume_mid_epoch_repeats_the_uninterrupted_run(dataset, tmp_path):
    data, cache, images = dataset
    base = dict(data=data, cache_dir=cache, img_size=IMG, width=WIDTH, disc_width=DISC_WIDTH, batch_size=BATCH, checkpoint_every=2, quiet=True,
                ema=True, device="cpu", threads=1)
    whole = train(TrainConfig(out=tmp_path / "whole", max_steps=6, **base), image_set=images, log=quiet)
    first = train(TrainConfig(out=tmp_path / "split", max_steps=3, **base), image_set=images, log=quiet)
    rest = train(TrainConfig(out=tmp_path / "split", max_steps=6, resume=True, **base), image_set=images, log=quiet)

    assert whole.step_losses.shape == (6, 4) and np.isfinite(whole.step_losses).all()
    assert (first.first_step, rest.first_step, rest.steps) == (1, 4, 6)
    np.testing.assert_array_equal(first.step_losses, whole.step_losses[:3])
    np.testing.assert_array_equal(rest.step_losses, whole.step_losses[3:])  # bit for bit
    for a, b in zip(whole.history, rest.history):
        assert {k: a[k] for k in ("epoch", "g_loss", "d_loss", "d_real", "d_fake", "steps")} == \
               {k: b[k] for k in ("epoch", "g_loss", "d_loss", "d_real", "d_fake", "steps")}
    ga = torch.load(tmp_path / "whole" / "cDCGAN_generator.pth", weights_only=True)["model"]
    gb = torch.load(tmp_path / "split" / "cDCGAN_generator.pth", weights_only=True)["model"]
    assert all(torch.equal(ga[k], gb[k]) for k in ga)


# ---------------------------------------------------------------- minibatch standard deviation

def test_minibatch_std_channel_is_the_batch_spread():
    h = torch.randn(6, 3, 4, 4)
    out = MinibatchStd()(h)
    assert out.shape == (6, 4, 4, 4) and torch.equal(out[:, :3], h)
    np.testing.assert_allclose(out[:, 3].numpy(), h.std(dim=0, unbiased=False).mean().item(), rtol=1e-6)
    assert torch.count_nonzero(MinibatchStd()(h[:1].expand(6, -1, -1, -1))[:, 3]) == 0  # one image repeated: no spread
    assert torch.count_nonzero(MinibatchStd()(h[:1])[:, 3]) == 0  # a batch of one


@pytest.mark.parametrize("kind", ["projection", "spatial"])
def test_minibatch_std_makes_d_judge_an_image_by_its_batch(kind):
    """With the flag, D's score of image 0 depends on the other images of the batch; without it, not at all."""
    cfg = GeneratorConfig(img_size=IMG)
    torch.manual_seed(0)
    labels = torch.zeros(8, dtype=torch.long)
    for flag in (False, True):
        images = torch.randn(8, 1, IMG, IMG, requires_grad=True)
        D = build_discriminator(kind, cfg, width=DISC_WIDTH, minibatch_std=flag).eval()
        D(images, labels)[0].backward()
        others = images.grad[1:].abs().sum().item()
        assert images.grad[0].abs().sum().item() > 0
        assert (others > 0) if flag else (others == 0)


def test_minibatch_std_run_is_recorded_and_resumes_exactly(dataset, tmp_path):
    data, cache, images = dataset
    base = dict(data=data, cache_dir=cache, img_size=IMG, width=WIDTH, disc_width=DISC_WIDTH, batch_size=BATCH, checkpoint_every=2, quiet=True,
                device="cpu", threads=1, minibatch_std=True)
    whole = train(TrainConfig(out=tmp_path / "whole", max_steps=4, **base), image_set=images, log=quiet)
    train(TrainConfig(out=tmp_path / "split", max_steps=2, **base), image_set=images, log=quiet)
    rest = train(TrainConfig(out=tmp_path / "split", max_steps=4, resume=True, **{**base, "minibatch_std": False}),
                 image_set=images, log=quiet)  # the flag left off: --resume keeps the saved setting
    np.testing.assert_array_equal(rest.step_losses, whole.step_losses[2:])
    provenance = torch.load(tmp_path / "whole" / "cDCGAN_generator.pth", weights_only=True)["provenance"]
    assert "minibatch std" in provenance["discriminator"]
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["minibatch_std"] is True


def _generator_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "cDCGAN_generator.pth", weights_only=True)["model"]


@pytest.mark.slow
def test_resume_after_sigkill_continues_exactly(dataset, tmp_path):
    steps = "12"  # long enough after checkpoint 2 that the kill lands mid-run
    args = ["--max-steps", steps, "--checkpoint-every", "1", "--quiet"]
    whole = run_script("cgan-train", *cli_args(dataset, tmp_path / "whole", *args))
    assert whole.returncode == 0, whole.stderr

    killed_out = tmp_path / "killed"
    kill_at_checkpoint(cli_args(dataset, killed_out, *args), killed_out)

    resumed = run_script("cgan-train", *cli_args(dataset, killed_out, "--resume", *args))
    assert resumed.returncode == 0, resumed.stderr
    assert not list((killed_out / "checkpoints").glob(".*")), "a half-written checkpoint was left behind"
    a, b = _generator_weights(tmp_path / "whole"), _generator_weights(killed_out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    columns = ("epoch", "g_loss", "d_loss", "d_real", "d_fake", "steps")
    assert [[r[c] for c in columns] for r in history_rows(tmp_path / "whole")] == \
           [[r[c] for c in columns] for r in history_rows(killed_out)]


# ---------------------------------------------------------------- refusals

runner = CliRunner()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--img-size", "48"], "--img-size"),
        (["--img-size", "16"], "--img-size"),
        (["--batch-size", "0"], "--batch-size"),
        (["--disc", "wgan"], "--disc"),
        (["--epochs", "0"], "--epochs"),
        (["--precision", "fp16", "--device", "cpu"], "fp16"),
        (["--device", "tpu"], "--device"),
        (["--resume"], "no checkpoint"),
        pytest.param(["--device", "cuda"], "CUDA", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")),
    ],
)
def test_bad_flags_give_one_line_and_write_nothing(dataset, tmp_path, extra, needle):
    out = tmp_path / "out"
    args = cli_args(dataset, out)
    args = [a for a in args if a not in ("--device", "cpu")] + extra  # the case's own --device wins
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_existing_checkpoints_are_not_overwritten_without_resume(short_run, dataset, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(short_run[0], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    result = runner.invoke(app, cli_args(dataset, out, "--max-steps", "1"))
    assert result.exit_code == 1
    assert "--resume" in result.stderr and "another --out" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before

    shutil.rmtree(out / "checkpoints")  # a generator file alone (e.g. the published one) is not overwritten either
    result = runner.invoke(app, cli_args(dataset, out, "--max-steps", "1"))
    assert result.exit_code == 1 and "cDCGAN_generator.pth" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == {p: t for p, t in before.items() if p.exists()}


def test_resume_refuses_a_conflicting_setting(short_run, dataset, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(short_run[0], out)
    result = runner.invoke(app, cli_args(dataset, out, "--resume", "--lr-g", "0.001"))
    assert result.exit_code == 1
    assert "--lr-g" in result.stderr


# ---------------------------------------------------------------- fine-tuning from another run

def _latest_ckpt(out: Path) -> Path:
    return sorted((out / "checkpoints").glob("ckpt_*.pt"))[-1]


def test_init_from_starts_from_the_checkpoints_weights_and_resumes_exactly(short_run, dataset, tmp_path):
    data, cache, images = dataset
    source = _latest_ckpt(short_run[0])
    saved = torch.load(source, weights_only=True)
    base = dict(data=data, cache_dir=cache, img_size=IMG, width=WIDTH, disc_width=DISC_WIDTH, batch_size=BATCH, checkpoint_every=1,
                quiet=True, device="cpu", threads=1)
    # a learning rate of 1e-12 leaves the weights where they started: the checkpoint's, not a fresh seed-42 init
    tuned = train(TrainConfig(out=tmp_path / "tuned", max_steps=1, init_from=source, lr_g=1e-12, lr_d=1e-12, **base),
                  image_set=images, log=quiet)
    train(TrainConfig(out=tmp_path / "fresh", max_steps=1, lr_g=1e-12, lr_d=1e-12, **base), image_set=images, log=quiet)
    start, got, scratch = saved["generator"], _generator_weights(tmp_path / "tuned"), _generator_weights(tmp_path / "fresh")
    weights = [k for k in start if k.endswith("weight")]
    for key in weights:
        torch.testing.assert_close(got[key], start[key], rtol=0, atol=1e-6)
    assert max((scratch[k] - start[k]).abs().max().item() for k in weights) > 1e-3
    assert tuned.step_losses.shape[0] == 1  # --max-steps counts this run's steps, not the source's 5
    provenance = torch.load(tmp_path / "tuned" / "cDCGAN_generator.pth", weights_only=True)["provenance"]
    assert provenance["init_from"].startswith(f"{source.name} (step 5 ") and provenance["steps"] == "1"
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["init_from"] == str(source.resolve())

    # a fine-tuning run resumes like any other: the weights come from its own checkpoint, not the source again
    tune = dict(init_from=source, lr_g=1e-4, lr_d=1e-4, **base)
    whole = train(TrainConfig(out=tmp_path / "whole", max_steps=3, **tune), image_set=images, log=quiet)
    train(TrainConfig(out=tmp_path / "split", max_steps=1, **tune), image_set=images, log=quiet)
    rest = train(TrainConfig(out=tmp_path / "split", max_steps=3, resume=True, **base), image_set=images, log=quiet)
    np.testing.assert_array_equal(rest.step_losses, whole.step_losses[1:])
    resumed = torch.load(tmp_path / "split" / "cDCGAN_generator.pth", weights_only=True)["provenance"]
    assert resumed["init_from"] == provenance["init_from"] and resumed["steps"] == "3"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--disc-width", str(DISC_WIDTH * 2)], "--disc-width"),
        (["--minibatch-std"], "--minibatch-std"),
        (["--width", str(WIDTH * 2)], "--width"),
    ],
)
def test_init_from_refuses_a_checkpoint_of_another_shape(short_run, dataset, tmp_path, extra, needle):
    out = tmp_path / "out"
    args = [a for a in cli_args(dataset, out) if a not in ("--disc-width", str(DISC_WIDTH), "--width", str(WIDTH))]
    keep = {"--disc-width": ["--disc-width", str(DISC_WIDTH)], "--width": ["--width", str(WIDTH)]}
    for flag, pair in keep.items():
        if flag not in extra:
            args += pair
    result = runner.invoke(app, [*args, *extra, "--init-from", str(_latest_ckpt(short_run[0])), "--max-steps", "1"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--init-from" in lines[0] and needle in lines[0], result.stderr
    assert not out.exists()


def test_init_from_a_missing_or_foreign_file_is_one_line(short_run, dataset, tmp_path):
    foreign = tmp_path / "notes.pt"
    foreign.write_bytes(b"not a checkpoint")
    for path, needle in [(tmp_path / "nope.pt", "no such checkpoint"), (foreign, "unreadable")]:
        out = tmp_path / "out"
        result = runner.invoke(app, cli_args(dataset, out, "--init-from", str(path), "--max-steps", "1"))
        assert result.exit_code == 1, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and str(path) in lines[0] and needle in lines[0], result.stderr
        assert not out.exists()


# ---------------------------------------------------------------- sampling and input mapping

def test_balanced_epoch_order_is_deterministic_and_balanced():
    labels = np.repeat(np.arange(4), [800, 150, 40, 10])
    a = epoch_order(labels, 4, seed=42, epoch=0, balance=True)
    assert len(a) == len(labels)
    np.testing.assert_array_equal(a, epoch_order(labels, 4, seed=42, epoch=0, balance=True))
    assert not np.array_equal(a, epoch_order(labels, 4, seed=42, epoch=1, balance=True))
    assert not np.array_equal(a, epoch_order(labels, 4, seed=43, epoch=0, balance=True))
    freq = np.bincount(labels[a], minlength=4) / len(a)
    assert np.all(np.abs(freq - 0.25) < 0.06), freq  # the original's 1/class-count weights
    assert len(np.unique(a)) < len(a)  # with replacement

    plain = epoch_order(labels, 4, seed=42, epoch=0, balance=False)
    np.testing.assert_array_equal(np.sort(plain), np.arange(len(labels)))  # a permutation


def test_balance_power_draws_the_stages_in_shares_of_count_to_one_minus_p():
    """--balance-power 0.5: stage shares proportional to sqrt(count) (a large epoch, so within a point or
    two); power 1 is the original's sampler draw for draw, power 0 the data's own shares."""
    counts = np.array([6000, 1200, 450, 150])
    labels = np.repeat(np.arange(4), counts)
    half = epoch_order(labels, 4, seed=1, epoch=0, balance=True, power=0.5)
    freq = np.bincount(labels[half], minlength=4) / len(half)
    expected = np.sqrt(counts) / np.sqrt(counts).sum()  # 0.53, 0.24, 0.15, 0.09
    assert np.all(np.abs(freq - expected) < 0.015), (freq, expected)
    zero = np.bincount(labels[epoch_order(labels, 4, seed=1, epoch=0, balance=True, power=0.0)], minlength=4)
    assert np.all(np.abs(zero / len(labels) - counts / counts.sum()) < 0.015)
    np.testing.assert_array_equal(epoch_order(labels, 4, seed=1, epoch=0, balance=True, power=1.0),
                                  epoch_order(labels, 4, seed=1, epoch=0, balance=True))


def test_ranks_draw_disjoint_parts_of_the_same_epoch():
    labels = np.repeat(np.arange(4), [50, 30, 15, 6])
    full = epoch_order(labels, 4, seed=7, epoch=3, balance=True)
    shards = [epoch_order(labels, 4, seed=7, epoch=3, balance=True, rank=r, world_size=3) for r in range(3)]
    assert all(len(s) == len(labels) // 3 for s in shards)
    positions = [np.arange(r, len(full), 3)[: len(labels) // 3] for r in range(3)]
    for shard, pos in zip(shards, positions):
        np.testing.assert_array_equal(shard, full[pos])  # rank r takes draws r, r+3, ...
    taken = np.concatenate(positions)
    assert len(np.unique(taken)) == len(taken)  # no draw is used by two ranks


def test_model_input_matches_the_contract_mapping():
    u8 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(3, axis=0)
    x = to_model_input(u8, torch.device("cpu"))
    assert x.shape == (3, 1, 16, 16) and x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy()[:, 0], from_uint8(u8))
    assert x.min().item() == -1.0 and x.max().item() == 1.0


def test_batches_from_the_memmap_follow_the_order_with_any_worker_count(dataset):
    _, _, images = dataset
    order = epoch_order(images.labels, 4, seed=1, epoch=0, balance=True)
    inline = list(iter_batches(images.images, images.labels, order, 5, 0, 0))
    assert [len(lab) for _, lab in inline] == [5] * 6 + [2]  # 32 draws, the last batch partial
    np.testing.assert_array_equal(np.concatenate([u8 for u8, _ in inline]), np.asarray(images.images)[order])
    np.testing.assert_array_equal(np.concatenate([lab for _, lab in inline]), images.labels[order])
    threaded = list(iter_batches(images.images, images.labels, order, 5, 2, 3))  # from batch 2, 3 threads
    assert len(threaded) == len(inline) - 2
    for (a, la), (b, lb) in zip(inline[2:], threaded):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
