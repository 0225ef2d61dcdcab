"""Generated images as a map-style dataset, for a PyTorch (or MONAI) ``DataLoader`` without torch here.

    from cgan.runtime import GeneratedDataset
    ds = GeneratedDataset({3: 500, 2: 200}, seed=0)          # 500 Moderate, 200 Mild images
    ds = GeneratedDataset.from_folder("Data/", seed=0)       # the top-up plan of cgan-run --balance
    image, stage = ds[i]                                     # uint8 [H, W] and the stage index

Item i is a pure function of (model, seed, plan, i): items are stage by stage, and item j of stage s
is image k = j of (model, seed, s) under the noise contract, the same image ``cgan-run --balance``
writes as ``stage{s}_seed{seed}_{k}.png``. The ONNX Runtime session is opened lazily, once per
process: the dataset pickles without it, so every DataLoader worker opens its own. With
``batch_size`` B the model runs on the aligned block of B indices holding i (kept until another
block is needed), so an item never depends on the order of access or on how items are split
among workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .noise import NOISE_VERSION, check_version


# Sessions a forked process inherited from its parent: never freed in the child (see GeneratedDataset._generator).
_INHERITED: list = []


class GeneratedDataset:
    """``len(ds)`` images of a plan; ``ds[i]`` -> ``(image, stage)``.

    ``plan``: generated images per stage, as a mapping ``{stage: count}`` (stage numbers or names), a
    sequence of counts (one per stage), or a :class:`~cgan.runtime.balance.BalancePlan`.
    ``model``: as for :func:`cgan.runtime.load` (resolved once, here). ``output``: ``"uint8"`` for
    ``[H, W]`` pixels (``[H, W, C]`` for a multi-channel model), ``"float32"`` for the model's
    ``[C, H, W]`` values in [-1, 1]. ``transform`` is applied to the image, ``target_transform`` to the
    stage index. ``threads``: the model's threads per process (with several DataLoader workers, 1 keeps
    them from competing for the cores); ``provider`` and ``engine`` as for :func:`cgan.runtime.load`.
    """

    def __init__(
        self,
        plan: Mapping[int | str, int] | Sequence[int] | Any,
        *,
        model: str | os.PathLike | None = None,
        seed: int = 0,
        noise_version: int = NOISE_VERSION,
        batch_size: int = 1,
        output: str = "uint8",
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        provider: str = "cpu",
        threads: int | None = None,
        engine: str = "auto",
    ) -> None:
        from .resolve import resolve_model

        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        if output not in ("uint8", "float32"):
            raise ValueError(f"output must be 'uint8' or 'float32', got {output!r}")
        self.noise_version = check_version(noise_version)
        _check_session_options(provider=provider, threads=threads, engine=engine)  # here, not at the first item
        self.model_path = str(resolve_model(model).path)  # resolved once: every worker opens the same file
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.output = output
        self.transform = transform
        self.target_transform = target_transform
        self.provider = provider
        self.threads = threads
        self.engine = engine
        self._gen = None
        self._pid: int | None = None
        self._block: tuple[tuple[int, int], np.ndarray] | None = None
        self.counts = self._counts(plan)
        self._ends = np.cumsum(self.counts)

    @classmethod
    def from_folder(cls, data: str | os.PathLike, *, ratio: float | str | None = None, target: int | None = None,
                    stages: Sequence[int] | None = None, classes: Sequence[str] | None = None, **kwargs) -> "GeneratedDataset":
        """The plan ``cgan-run --balance DATA`` makes for a dataset folder (same ``ratio``/``target``/``stages``;
        ``classes``: the class-folder names in stage order, for a dataset in neither default layout)."""
        from .balance import balance_plan

        return cls(balance_plan(data, ratio=ratio, target=target, stages=stages, classes=classes), **kwargs)

    # ------------------------------------------------------------ the plan
    def _counts(self, plan) -> tuple[int, ...]:
        from .contract import read_metadata

        info = read_metadata(self.model_path)
        if hasattr(plan, "generate"):  # a BalancePlan
            plan = list(plan.generate)
        if isinstance(plan, Mapping):
            from .contract import parse_stage

            counts = [0] * info.num_classes
            for stage, n in plan.items():
                counts[parse_stage(stage, info.stage_names)] += _count(n)
        else:
            counts = [_count(n) for n in plan]
            if len(counts) != info.num_classes:
                raise ValueError(f"the plan gives {len(counts)} counts but the model has {info.num_classes} stages")
        return tuple(counts)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def labels(self) -> np.ndarray:
        """The stage of every item, int64 ``[len(ds)]`` (e.g. for a weighted sampler)."""
        return np.repeat(np.arange(len(self.counts), dtype=np.int64), self.counts)

    def locate(self, i: int) -> tuple[int, int]:
        """Item ``i`` -> ``(stage, k)``: which image of which stage it is."""
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"dataset indices are integers, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} images")
        if i < 0:
            i += n
        s = int(np.searchsorted(self._ends, i, side="right"))
        return s, int(i - (self._ends[s] - self.counts[s]))

    # ------------------------------------------------------------ items
    def __getitem__(self, i: int):
        s, k = self.locate(i)
        image = self._image(s, k)
        if self.transform is not None:
            image = self.transform(image)
        return image, (self.target_transform(s) if self.target_transform is not None else s)

    def _generator(self):
        if self._gen is None or self._pid != os.getpid():  # a forked worker opens its own session
            from .api import load

            if self._gen is not None:
                # Forked from a process that had used this dataset: the inherited session's thread pool has no
                # threads here, and freeing it would wait on them forever. Keep it unreferenced-but-alive instead.
                _INHERITED.append(self._gen)
                self._gen = None
            self._gen = load(self.model_path, provider=self.provider, threads=self.threads, engine=self.engine)
            self._pid = os.getpid()
            self._block = None
        return self._gen

    def _image(self, s: int, k: int) -> np.ndarray:
        gen = self._generator()
        k0 = k - k % self.batch_size
        if self._block is None or self._block[0] != (s, k0):
            b = min(self.batch_size, self.counts[s] - k0)
            images = gen.generate_float(s, b, seed=self.seed, start=k0, batch_size=b, noise_version=self.noise_version)
            self._block = ((s, k0), images)
        images = self._block[1][k - k0 : k - k0 + 1]
        if self.output == "float32":
            return images[0].copy()
        return gen.to_uint8(images)[0]

    # ------------------------------------------------------------ pickling (DataLoader workers)
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_gen=None, _pid=None, _block=None)  # sessions do not pickle; each process opens its own
        return state

    def __repr__(self) -> str:
        return f"GeneratedDataset({len(self)} images, counts={list(self.counts)}, seed={self.seed}, model={Path(self.model_path).name!r})"


def _count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"image counts must be whole numbers >= 0, got {n!r}")
    return int(n)


def _check_session_options(*, provider: str, threads: int | None, engine: str) -> None:
    """The engine, provider and threads a worker will open its session with, checked when the dataset is made."""
    from .engines import choose_engine
    from .session import choose_providers

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1 (or None), got {threads!r}")
    choose_providers(provider)
    choose_engine(engine, provider)
