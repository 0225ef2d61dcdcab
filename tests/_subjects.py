"""Small real-looking data with subjects: v1 synthetic slices written under OASIS-style names in the
Kaggle folder layout, several slices per subject sharing that subject's anatomy (so a network can
recognise a subject, which is what leaks through an image-level split)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from cgan.runtime.contract import OASIS_FOLDERS
from cgan.train import synth


def write_subject_set(root: Path, *, subjects_per_stage: tuple[int, ...] = (8, 8, 8, 8), slices: int = 6,
                      img_size: int = 32, seed: int = 0, random_labels: bool = False) -> Path:
    """``root/<stage folder>/OAS1_<id>_MR1_mpr_n4_anon_111_t88_masked_gfc_slice_<j>.png``.

    Each subject draws its parameters once; its slices differ by a small pose change and their noise.
    With ``random_labels`` a subject's folder is drawn at random, independent of its rendered stage
    (only memorising subjects can then beat chance)."""
    rng = np.random.default_rng([seed, 0x5B])
    sid = 1
    for stage, count in enumerate(subjects_per_stage):
        for _ in range(count):
            params = synth.sample_params(stage, rng)
            folder = OASIS_FOLDERS[int(rng.integers(len(OASIS_FOLDERS)))] if random_labels else OASIS_FOLDERS[stage]
            (root / folder).mkdir(parents=True, exist_ok=True)
            for j in range(slices):
                p = replace(params, rotation=params.rotation + float(rng.normal(0, 1.5)),
                            shift_x=params.shift_x + float(rng.normal(0, 0.01)))
                img = synth.render(p, img_size, np.random.default_rng([seed, sid, j]))
                name = f"OAS1_{sid:04d}_MR1_mpr_n4_anon_111_t88_masked_gfc_slice_{100 + j}.png"
                Image.fromarray(img, mode="L").save(root / folder / name)
            sid += 1
    return root
