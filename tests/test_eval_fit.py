"""The judges' fit (cgan.train.eval.fit): training jitter, BatchNorm statistics, the kept network, config checks."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cgan.train.eval.fit import _accumulate, augment_batch, balanced_subset, fit, recompute_batchnorm, to_input
from cgan.train.eval.judges import JudgeConfig, JudgeError, averaged_tail, default_judges
from cgan.train.eval.networks import build


def _ramp(b=6, s=32):
    return torch.linspace(-1, 1, s * s).view(1, 1, s, s).repeat(b, 1, 1, 1)


def test_shift_moves_each_image_by_at_most_a_sixteenth_and_fills_black():
    x = _ramp()
    y = augment_batch(x, "shift", torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    moved = 0
    for i in range(len(x)):
        found = None
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.full_like(x[i, 0], -1.0)
                src = x[i, 0, max(0, dy): 32 + min(0, dy), max(0, dx): 32 + min(0, dx)]
                shifted[max(0, -dy): 32 + min(0, -dy), max(0, -dx): 32 + min(0, -dx)] = src
                if torch.equal(shifted, y[i, 0]):
                    found = (dy, dx)
        assert found is not None, f"image {i} is not a shift of at most 2 px of its input"
        moved += found != (0, 0)
    assert moved >= 3  # 25 offsets, 6 images: almost surely most of them move


def test_intensity_stays_in_range_changes_images_and_is_reproducible():
    x = _ramp()
    a = augment_batch(x, "intensity", torch.Generator().manual_seed(1))
    b = augment_batch(x, "intensity", torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, x)
    # contrast 0.9..1.1 and brightness +-0.05: never more than 0.15 from the input
    assert (a - x).abs().max() <= 0.15 + 1e-6
    assert torch.equal(augment_batch(x, "", torch.Generator()), x)


def test_unknown_judge_augmentation_is_refused_by_name():
    with pytest.raises(JudgeError, match="'flip'"):
        JudgeConfig(augment="shift,flip").validate()
    JudgeConfig(augment="shift,intensity").validate()


def test_average_last_must_fit_in_the_schedule():
    with pytest.raises(JudgeError, match="average_last"):
        JudgeConfig(max_epochs=5, average_last=6).validate()
    JudgeConfig(max_epochs=5, average_last=5).validate()
    for j in default_judges():
        assert j.average_last == averaged_tail(j.max_epochs) == j.max_epochs // 3
        j.validate()
    assert averaged_tail(2) == 1


def test_balanced_subset_takes_as_many_of_every_class_as_it_has():
    y = np.array([0] * 100 + [1] * 3 + [2] * 50)
    idx = balanced_subset(y, 60, seed=0, num_classes=3)
    assert np.bincount(y[idx], minlength=3).tolist() == [20, 3, 20]
    assert np.array_equal(idx, np.sort(idx)) and len(set(idx)) == len(idx)
    assert np.array_equal(idx, balanced_subset(y, 60, seed=0, num_classes=3))


def _stats_images(n=40, s=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, s, s), dtype=np.uint8)


def test_recomputed_batchnorm_statistics_are_the_exact_average_over_the_images():
    torch.manual_seed(0)
    model = build("small", 4, input_size=16, width=4, feature_dim=8).eval()
    x = _stats_images()
    first = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    first.running_mean.fill_(5.0)  # stale statistics that training left behind
    seen = []
    hook = first.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].detach().clone()))
    recompute_batchnorm(model, x, torch.device("cpu"), batch_size=8)
    hook.remove()
    # momentum=None: the cumulative mean of the per-batch means (batches of equal size: the overall mean)
    want = torch.stack([b.mean(dim=(0, 2, 3)) for b in seen]).mean(0)
    assert len(seen) == 5
    assert torch.allclose(first.running_mean, want, atol=1e-5)
    assert first.momentum == 0.1 and not model.training  # momentum and mode restored
    # reading the same images in eval mode now normalises the first layer's input to mean ~0
    with torch.no_grad():
        z = first(model.conv[0](to_input(x, torch.device("cpu"))))
    assert z.mean(dim=(0, 2, 3)).abs().max() < 0.05


def test_running_average_of_weights_is_their_mean():
    torch.manual_seed(0)
    states = []
    avg = None
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    for i in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
        model[1].num_batches_tracked.fill_(i)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        avg = _accumulate(avg, model, i)
    for k in states[0]:
        if states[0][k].is_floating_point():
            assert torch.allclose(avg[k], torch.stack([s[k] for s in states]).mean(0), atol=1e-6), k
    assert int(avg["1.num_batches_tracked"]) == 3  # integer buffers: the latest


def _toy_fit(tmp_path: Path, **kw):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 24)
    x = np.clip(rng.normal(60 + 40 * y[:, None, None], 30, (96, 16, 16)), 0, 255).astype(np.uint8)
    cfg = JudgeConfig(arch="small", input_size=16, width=4, feature_dim=8, epoch_images=64, batch_size=16,
                      patience=1, **kw)
    torch.manual_seed(0)
    model = build("small", 4, input_size=16, width=4, feature_dim=8)
    ckpt = tmp_path / "fit.pt"
    hist = fit(model, x, y, x[::3], y[::3], num_classes=4, config=cfg, device=torch.device("cpu"), name="t",
               checkpoint=ckpt, ident="t", log=lambda _m: None)
    return model, hist, torch.load(ckpt, weights_only=True)


def test_fit_keeps_the_average_of_the_last_epochs(tmp_path):
    model, hist, saved = _toy_fit(tmp_path, max_epochs=4, min_epochs=4, average_last=2)
    assert hist["epochs"] == 4 and hist["kept"] == "average of the last 2 epochs"
    assert saved["state"]["avg_count"] == 2
    kept, last, avg = model.state_dict(), saved["model"], saved["state"]["avg_state"]
    w = "conv.0.weight"
    assert torch.equal(kept[w], avg[w]) and not torch.equal(kept[w], last[w])


def test_fit_never_keeps_an_epoch_before_min_epochs(tmp_path):
    _model, hist, _saved = _toy_fit(tmp_path, max_epochs=4, min_epochs=3)
    assert hist["kept"] == "best epoch" and hist["best_epoch"] >= 3
    assert hist["val_balanced_accuracy"] == max(h["val_balanced_accuracy"] for h in hist["history"][2:])
