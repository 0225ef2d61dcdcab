"""Small real-looking data for the evaluator's tests, drawn from the synthetic set's v2 renderer.

``stage_images``: one independent subject per image (no subject is seen twice), so a by-image split
holds nothing out that it should not. ``write_subject_set``: several slices per subject under OASIS-style
names in the Kaggle folder layout, each subject's slices sharing its anatomy (so a network can recognise
a subject, which is what leaks through an image-level split)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from cgan.runtime.contract import OASIS_FOLDERS
from cgan.train.synth.subject import render, sample_subject


# Stages far apart, and no per-subject offsets on the markers: tiny images (16-32 px) and a few hundred
# of them must still be enough for a judge to tell the stages apart (the real set is harder on purpose).
TEST_SEVERITY = (0.0, 0.5, 1.0, 1.5)
TEST_LEVELS = (84, 98)  # template levels through the bodies of the lateral ventricles, where atrophy shows most


def _subject(seed: int, number: int, stage: int):
    rng = np.random.default_rng([seed, 0x5B, number])
    subj = sample_subject(number, stage, TEST_SEVERITY[stage], rng)
    return replace(subj, ventricle_base=0.0, cortex_base=0.0, mtl_base=0.0), rng


def stage_images(seed: int, stages, img_size: int = 32) -> np.ndarray:
    """uint8 ``[len(stages), img_size, img_size]``: image i is a slice of its own subject of ``stages[i]``."""
    out = []
    for i, stage in enumerate(stages):
        subj, rng = _subject(seed, i, int(stage))
        out.append(render(subj, int(rng.integers(*TEST_LEVELS)), img_size, rng)[0])
    return np.stack(out)


def write_subject_set(root: Path, *, subjects_per_stage: tuple[int, ...] = (8, 8, 8, 8), slices: int = 6,
                      img_size: int = 32, seed: int = 0, random_labels: bool = False) -> Path:
    """``root/<stage folder>/OAS1_<id>_MR1_mpr_n4_anon_111_t88_masked_gfc_slice_<j>.png``.

    Each subject draws its anatomy once; its slices are taken at different levels (through the
    ventricles) with their own
    pose jitter and noise. With ``random_labels`` a subject's folder is drawn at random, independent of
    its rendered stage (only memorising subjects can then beat chance)."""
    pick = np.random.default_rng([seed, 0x5C])
    sid = 1
    for stage, count in enumerate(subjects_per_stage):
        for _ in range(count):
            subj, rng = _subject(seed, sid, stage)
            folder = OASIS_FOLDERS[int(pick.integers(len(OASIS_FOLDERS)))] if random_labels else OASIS_FOLDERS[stage]
            (root / folder).mkdir(parents=True, exist_ok=True)
            levels = np.linspace(*TEST_LEVELS, slices).round().astype(int) + rng.integers(-1, 2, slices)
            for j, level in enumerate(levels.tolist()):
                img = render(subj, level, img_size, np.random.default_rng([seed, sid, j]))[0]
                # the slice index too: two jittered levels can coincide, and one file must not replace another
                name = f"OAS1_{sid:04d}_MR1_mpr_n4_anon_111_t88_masked_gfc_slice_{j}_{level}.png"
                Image.fromarray(img, mode="L").save(root / folder / name)
            sid += 1
    return root
