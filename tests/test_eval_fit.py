"""The judges' training jitter (cgan.train.eval.fit.augment_batch) and its config check."""

import pytest
import torch

from cgan.train.eval.fit import augment_batch
from cgan.train.eval.judges import JudgeConfig, JudgeError


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
