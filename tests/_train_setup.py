"""What the in-process training tests share: a tiny synthetic set (8 images per stage), narrow networks,
quiet logging, and torch's thread count put back after a run changed it."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

IMG = 32
BATCH = 8
N_IMAGES = 32  # 8 per stage: 4 steps per epoch at batch 8
WIDTH = 64  # a narrow generator keeps the steps cheap; the architecture is otherwise the original's
DISC_WIDTH = 16  # likewise for the discriminator


def quiet(_msg: str) -> None:
    pass


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """In-process runs set torch's thread count (--threads 1 here: tiny models on a shared machine); restore it."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tiny_training_set(root: Path):
    """(data folder, cache folder, ImageSet) of the tiny set, built under ``root``."""
    from cgan.train.data import load_image_set
    from cgan.train.synth import make_synthetic_set

    data = make_synthetic_set(root / "syn", n=N_IMAGES, seed=3, img_size=IMG, log=quiet)
    cache = root / "cache"
    return data, cache, load_image_set(data, img_size=IMG, cache_dir=cache, log=quiet)
