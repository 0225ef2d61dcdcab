"""Cut-short caches are built again, not read as a memory map that fails (numpy: 'mmap length is greater than file size')."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("torch")


def _cut(path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def test_a_cut_short_image_cache_is_decoded_again(tmp_path):
    from PIL import Image

    from cgan.train.data import load_image_set

    rng = np.random.default_rng(0)
    for s in range(4):
        (tmp_path / "data" / f"stage{s}").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / "data" / f"stage{s}" / f"{i}.png")
    first = load_image_set(tmp_path / "data", img_size=32, cache_dir=tmp_path / "c", log=lambda _m: None)
    expected = np.array(first.images)
    _cut(first.cache_path)
    said: list[str] = []
    again = load_image_set(tmp_path / "data", img_size=32, cache_dir=tmp_path / "c", log=said.append)
    assert again.rebuilt and any("unreadable" in line and "building them again" in line for line in said), said
    np.testing.assert_array_equal(np.array(again.images), expected)


@pytest.mark.slow
def test_a_cut_short_judge_set_cache_is_rendered_again(tmp_path):
    from cgan.train.eval.judge_set import JudgeSetSpec, load_judge_set

    spec = JudgeSetSpec(subjects_per_stage=2, slices=1, img_size=32, seed=5)
    first = load_judge_set(spec, cache_dir=tmp_path, log=lambda _m: None, workers=1)
    expected = np.array(first.images)
    _cut(first.cache_path)
    said: list[str] = []
    again = load_judge_set(spec, cache_dir=tmp_path, log=said.append, workers=1)
    assert any(line.startswith("rendering the") for line in said), said
    np.testing.assert_array_equal(np.array(again.images), expected)
