"""The faster training step and the discriminator-side levers (--loss, --r1, --diffaugment, --compile)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cgan.train.loop.augment import AUGMENTS, cutout, diff_augment, parse_policy, translation
from cgan.train.loop.fast import compile_or_eager
from cgan.train.loop.run import TrainConfig, to_model_input, train
from cgan.train.models import MinibatchStd, batch_groups
from cgan.train.loop.objectives import d_loss, g_loss, r1_penalty

from _train_setup import (BATCH, DISC_WIDTH, IMG, WIDTH, assert_refused_in_one_line, dataset,  # noqa: F401 - fixtures
                          first_batch, keep_torch_threads, make_run, quiet)


# ---------------------------------------------------------------- losses

def test_bce_and_hinge_losses_follow_their_formulas():
    real = torch.tensor([2.0, -0.5, 0.3, 1.5])
    fake = torch.tensor([-1.2, 0.4, -3.0, 0.9])
    bce = nn.BCEWithLogitsLoss()
    torch.testing.assert_close(d_loss("bce", real, fake), bce(real, torch.ones(4)) + bce(fake, torch.zeros(4)))
    torch.testing.assert_close(g_loss("bce", fake), bce(fake, torch.ones(4)))
    # hinge by hand: mean(max(0, 1 - r)) + mean(max(0, 1 + f)); G: -mean(f)
    expect_d = np.mean([0.0, 1.5, 0.7, 0.0]) + np.mean([0.0, 1.4, 0.0, 1.9])
    assert d_loss("hinge", real, fake).item() == pytest.approx(expect_d, rel=1e-6)
    assert g_loss("hinge", fake).item() == pytest.approx(-np.mean([-1.2, 0.4, -3.0, 0.9]), rel=1e-6)
    with pytest.raises(ValueError, match="hinge"):
        d_loss("wgan", real, fake)


def test_the_step_reports_the_chosen_loss_of_ds_logits(dataset):
    """D's logits of the D step, recorded at its output, give the step's reported D loss by the formula."""
    for kind in ("bce", "hinge"):
        run = make_run(dataset[2], loss=kind)
        outputs = []
        run.D.register_forward_hook(lambda _m, _a, out: outputs.append(out.detach().clone()))
        reported = run.train_step(*first_batch(run))
        real_logits, fake_logits = outputs[0].chunk(2)
        torch.testing.assert_close(reported[0], d_loss(kind, real_logits, fake_logits))
        torch.testing.assert_close(reported[1], g_loss(kind, outputs[1]))
        torch.testing.assert_close(reported[2], torch.sigmoid(real_logits).mean())


# ---------------------------------------------------------------- R1

def test_r1_penalty_is_the_squared_input_gradient():
    x = torch.randn(3, 1, 4, 4, requires_grad=True)
    w = torch.randn(1, 1, 4, 4)
    logits = (x * w).sum(dim=(1, 2, 3))  # gradient w.r.t. each image is w
    assert r1_penalty(logits, x).item() == pytest.approx(w.square().sum().item(), rel=1e-6)


def test_r1_term_is_positive_enters_the_d_loss_and_is_off_at_weight_zero(dataset):
    images = dataset[2]
    off, on = make_run(images, r1=0.0), make_run(images, r1=10.0, r1_every=1)
    batch = first_batch(off)
    base, with_r1 = off.train_step(*batch), on.train_step(*batch)
    assert off.last_r1 is None  # weight 0: no penalty computed
    assert on.last_r1.item() > 0
    # same weights, noise and batch: the D loss differs by exactly gamma/2 * penalty
    assert (with_r1[0] - base[0]).item() == pytest.approx(5.0 * on.last_r1.item(), rel=1e-4)
    torch.testing.assert_close(with_r1[2:], base[2:])


def test_lazy_r1_runs_on_every_nth_step_only(dataset):
    run = make_run(dataset[2], r1=1.0, r1_every=3)
    seen = []
    for step in range(4):
        run.step = step  # the loop advances it after each step
        run.last_r1 = None
        run.train_step(*first_batch(run))
        seen.append(run.last_r1 is not None)
    assert seen == [True, False, False, True]


# ---------------------------------------------------------------- DiffAugment

def _is_shift_of(out: torch.Tensor, src: torch.Tensor, max_shift: int, fill: float = -1.0) -> bool:
    """Whether ``out`` (H, W) is ``src`` shifted by some (dy, dx) within ``max_shift``, border ``fill``."""
    h, w = src.shape
    padded = torch.nn.functional.pad(src, (max_shift,) * 4, value=fill)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            window = padded[max_shift - dy: max_shift - dy + h, max_shift - dx: max_shift - dx + w]
            if torch.equal(window, out):
                return True
    return False


def test_translation_shifts_each_image_and_fills_with_background():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    out = translation(x, g)
    assert out.shape == x.shape
    assert all(_is_shift_of(out[i, 0], x[i, 0], 2) for i in range(6))
    assert any(not torch.equal(out[i], x[i]) for i in range(6))


def test_cutout_zeroes_one_square_of_half_the_side_at_most():
    g = torch.Generator().manual_seed(1)
    x = torch.full((8, 1, 16, 16), 0.5)
    out = cutout(x, g)
    for img in out[:, 0]:
        hole = img == 0
        rows, cols = hole.any(1).nonzero(), hole.any(0).nonzero()
        assert hole.sum() > 0 and len(rows) <= 8 and len(cols) <= 8
        assert hole.sum() == len(rows) * len(cols)  # one rectangle (clipped at the border)
        assert torch.all(img[~hole] == 0.5)


def test_augmentation_is_differentiable_and_keeps_orientation():
    g = torch.Generator().manual_seed(2)
    x = torch.zeros(4, 1, 16, 16)
    x[:, :, 4:12, 2:5] = 1.0  # a bar on the left: no flip may move it to the right half
    x.requires_grad_(True)
    out = diff_augment(x, AUGMENTS, g)
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    left, right = out.detach()[:, 0, :, :8], out.detach()[:, 0, :, 8:]
    assert (left.amax(dim=(1, 2)) > right.amax(dim=(1, 2)) - 1e-6).all()


def test_policy_parsing():
    assert parse_policy("") == ()
    assert parse_policy(" color , cutout") == ("color", "cutout")
    assert parse_policy("translation: 0.0625,cutout") == ("translation:0.0625", "cutout")
    for bad, said in (("flip", "unknown augmentation 'flip'"), ("color,color", "twice"),
                      ("translation,translation:0.1", "twice"), ("cutout:0.5", "only translation takes a range"),
                      ("translation:0", "0 < F <= 0.5"), ("translation:0.75", "0 < F <= 0.5"),
                      ("translation:nan", "0 < F <= 0.5"), ("translation:1/16", "got '1/16'")):
        with pytest.raises(ValueError, match=said):
            parse_policy(bad)


def test_translation_range_bounds_the_shift():
    """translation:F shifts by at most F of the side (here 1 px of 16 at F = 1/16, against 2 px at the
    default 1/8), still filling with the background; some images do move."""
    x = torch.rand(32, 1, 16, 16) * 2 - 1
    narrow = diff_augment(x, parse_policy("translation:0.0625"), torch.Generator().manual_seed(3))
    wide = diff_augment(x, parse_policy("translation"), torch.Generator().manual_seed(3))
    assert all(_is_shift_of(narrow[i, 0], x[i, 0], 1) for i in range(32))
    assert any(not torch.equal(narrow[i], x[i]) for i in range(32))
    assert not all(_is_shift_of(wide[i, 0], x[i, 0], 1) for i in range(32))  # the default reaches 2 px


def test_d_sees_real_and_generated_images_through_the_same_augmentation(dataset):
    """Recorded at D's input: with --diffaugment translation, the real half and the generated half
    are both shifted copies of their sources (and the G step's input is a shifted copy of G's output);
    without it, D sees them unchanged."""
    for policy in ("", "translation"):
        run = make_run(dataset[2], diffaugment=policy)
        d_inputs, g_outputs = [], []
        run.D.register_forward_pre_hook(lambda _m, args: d_inputs.append(args[0].detach().clone()))
        run.G.register_forward_hook(lambda _m, _a, out: g_outputs.append(out.detach().clone()))
        real, labels = first_batch(run)
        run.train_step(real, labels)
        (fake,) = g_outputs
        d_step, g_step = d_inputs
        sources = {"real": (d_step[:BATCH], real), "fake": (d_step[BATCH:], fake), "G step": (g_step, fake)}
        for name, (seen, src) in sources.items():
            if not policy:
                assert torch.equal(seen, src), name
                continue
            assert not torch.equal(seen, src), f"{name} images reached D unaugmented"
            assert all(_is_shift_of(seen[i, 0], src[i, 0], IMG // 8) for i in range(BATCH)), name


# ---------------------------------------------------------------- the one-pass D step

def test_minibatch_std_groups_measure_each_half_on_its_own():
    a, b = torch.randn(4, 3, 2, 2), 5 * torch.randn(4, 3, 2, 2)
    layer = MinibatchStd()
    with batch_groups(nn.Sequential(layer), 2):
        both = layer(torch.cat([a, b]))
    assert layer.groups == 1  # restored
    torch.testing.assert_close(both[:4], layer(a))
    torch.testing.assert_close(both[4:], layer(b))


def test_eager_step_is_bit_for_bit_deterministic_per_seed(dataset):
    results = []
    for _ in range(2):
        run = make_run(dataset[2], diffaugment="color,translation,cutout", r1=1.0, r1_every=2, minibatch_std=True)
        losses = []
        for step in range(3):
            run.step = step
            losses.append(run.train_step(*first_batch(run)))
        results.append((torch.stack(losses), run.G.state_dict()))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])


def test_levers_are_recorded_and_a_resumed_run_repeats_the_uninterrupted_one(dataset, tmp_path):
    data, cache, images = dataset
    base = dict(data=data, cache_dir=cache, img_size=IMG, width=WIDTH, disc_width=DISC_WIDTH, batch_size=BATCH,
                checkpoint_every=2, quiet=True, device="cpu", threads=1, channels_last=True)
    levers = dict(loss="hinge", r1=0.5, r1_every=2, diffaugment="color,translation,cutout")
    whole = train(TrainConfig(out=tmp_path / "whole", max_steps=5, **base, **levers), image_set=images, log=quiet)
    train(TrainConfig(out=tmp_path / "split", max_steps=3, **base, **levers), image_set=images, log=quiet)
    rest = train(TrainConfig(out=tmp_path / "split", max_steps=5, resume=True, **base), image_set=images,
                 log=quiet)  # the levers left off: --resume keeps the saved ones
    np.testing.assert_array_equal(rest.step_losses, whole.step_losses[3:])
    saved = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert {k: saved[k] for k in levers} == levers
    provenance = torch.load(tmp_path / "split" / "cDCGAN_generator.pth", weights_only=True)["provenance"]
    assert provenance["objective"] == "hinge; R1 gamma 0.5 every 2 steps; DiffAugment color,translation,cutout"


def test_the_default_objective_is_the_originals(dataset):
    run = make_run(dataset[2])
    assert run.reports.objective() == "bce" and run.provenance()["objective"] == "bce"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--loss", "wgan"], "--loss"),
        (["--diffaugment", "color,flip"], "--diffaugment"),
        (["--r1", "-1"], "--r1"),
        (["--r1-every", "0"], "--r1-every"),
    ],
)
def test_bad_lever_flags_give_one_line_and_write_nothing(dataset, tmp_path, extra, needle):
    assert_refused_in_one_line(dataset, tmp_path / "out", extra, needle)


# ---------------------------------------------------------------- --compile

def test_compile_unavailable_falls_back_to_eager_with_one_note(monkeypatch):
    notes = []
    module = nn.Linear(2, 2)
    monkeypatch.delattr(torch, "compile")  # as on a torch without it
    assert compile_or_eager(module, True, notes.append) is module
    assert len(notes) == 1 and "eager" in notes[0] and "--compile" in notes[0]
    assert compile_or_eager(module, False, notes.append) is module and len(notes) == 1


@pytest.mark.slow
def test_compiled_step_gives_the_eager_losses(dataset):
    """Three steps compiled (inductor) against eager: the same losses within float tolerance.
    Compiling takes a minute or more on two cores (cached by torch afterwards)."""
    images = dataset[2]
    notes: list[str] = []
    losses = {}
    for flag in (False, True):
        run = make_run(images, compile=flag, width=32, disc_width=8, batch_size=4)
        run.log = notes.append
        idx = np.arange(4)
        real = to_model_input(np.ascontiguousarray(run.images[idx]), torch.device("cpu"))
        labels = torch.from_numpy(run.labels[idx])
        losses[flag] = torch.stack([run.train_step(real, labels) for _ in range(3)])
        if flag:
            assert run.compiled, f"compile fell back to eager: {notes}"
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-4, atol=1e-5)
