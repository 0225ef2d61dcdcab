"""The sampler and the batches: which images an epoch draws (a pure function of seed and epoch, so a
resumed run repeats an uninterrupted one), gathered from the uint8 memory-mapped cache, and mapped to
the model's input in torch."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

from cgan.runtime.errors import CganError


def epoch_order(labels: np.ndarray, num_classes: int, *, seed: int, epoch: int, balance: bool,
                rank: int = 0, world_size: int = 1, power: float = 1.0) -> np.ndarray:
    """This rank's image indices for ``epoch``: a pure function of (labels, seed, epoch, rank).

    Balanced (the original's WeightedRandomSampler): len(labels) draws with replacement, image
    weight 1/count of its class, or with ``power`` p below 1 (``--balance-power``) 1/count^p, so that
    the stages are drawn in shares proportional to count^(1 - p). Unbalanced: a permutation. Rank r
    takes draws r, r+W, r+2W..., trimmed so every rank has the same number (DDP needs equal step counts).
    """
    n = len(labels)
    rng = np.random.default_rng([seed, epoch])
    if balance:
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        weights = 1.0 / (counts[labels] if power == 1.0 else counts[labels] ** power)
        draws = rng.choice(n, size=n, replace=True, p=weights / weights.sum())
    else:
        draws = rng.permutation(n)
    return draws[rank::world_size][: n // world_size]


def draw_order(labels: np.ndarray, num_classes: int, *, seed: int, epoch: int, balance: bool,
               balanced_batches: bool, rank: int = 0, world_size: int = 1, power: float = 1.0) -> np.ndarray:
    """The epoch's draws the run's flags ask for: :func:`stratified_order` with ``--balanced-batches``,
    else :func:`epoch_order`."""
    if balanced_batches:
        return stratified_order(labels, num_classes, seed=seed, epoch=epoch, rank=rank, world_size=world_size)
    return epoch_order(labels, num_classes, seed=seed, epoch=epoch, balance=balance, rank=rank, world_size=world_size,
                       power=power)


def stratified_order(labels: np.ndarray, num_classes: int, *, seed: int, epoch: int,
                     rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Stage-balanced batches (``--balanced-batches``): this rank's ``len(labels) // world_size`` draws for
    ``epoch``, a pure function of (labels, seed, epoch, rank), arranged so that every batch holds the
    stages in equal shares, whatever its size (when the batch size is not a multiple of the stage
    count, the stages left over take turns from batch to batch).

    Draw ``i`` is of stage ``i % num_classes``: an image of that stage chosen uniformly, with replacement.
    With balanced sampling each image has the same weight too, but a batch's stage mix is random
    (multinomial); here it is fixed, so every step sees every stage, real and generated alike.
    """
    n = len(labels) // world_size
    present = np.bincount(labels, minlength=num_classes)
    if (present == 0).any():
        missing = ", ".join(str(i) for i in np.flatnonzero(present == 0))
        raise CganError(f"--balanced-batches needs images of every stage; stage(s) {missing} have none in the data")
    rng = np.random.default_rng([seed, epoch, rank])
    stage_of_draw = np.arange(n) % num_classes
    order = np.empty(n, dtype=np.int64)
    for stage in range(num_classes):
        where = np.flatnonzero(stage_of_draw == stage)
        members = np.flatnonzero(labels == stage)
        order[where] = members[rng.integers(0, len(members), size=len(where))]
    return order


def iter_batches(images: np.ndarray, labels: np.ndarray, order: np.ndarray, batch_size: int, start: int,
                 workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(uint8 images, int64 labels) of batches ``start``.. of ``order``, gathered from the memmap."""
    spans = [order[i : i + batch_size] for i in range(start * batch_size, len(order), batch_size)]

    def gather(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.ascontiguousarray(images[idx]), labels[idx]

    if workers == 0:
        yield from map(gather, spans)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="cgan-batch") as pool:
        pending: deque = deque()
        todo = iter(spans)
        for idx in todo:
            pending.append(pool.submit(gather, idx))
            if len(pending) >= 2 * workers:
                break
        while pending:
            yield pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(gather, nxt))


def to_model_input(u8: np.ndarray, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 ``[B, H, W]`` -> float32 ``[B, 1, H, W]`` on ``device``, ``x * 2/255 - 1`` as
    :func:`cgan.runtime.contract.from_uint8` (done in torch, after the 4x smaller uint8 transfer)."""
    if not u8.flags.writeable:  # e.g. a slice of the read-only memmap; torch wants writable memory
        u8 = u8.copy()
    x = torch.from_numpy(u8).to(device, non_blocking=True).unsqueeze(1).float().mul_(2.0 / 255.0).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
