"""The frozen stage reader of ``--reader-weight W``: a small stage classifier fitted, before the run trains,
on the run's own training images, and never moved after.

Why: the discriminator's stage head (``--aux-weight``) is fitted while it also judges real against fake, and
on this data it reads its own real training images at little better than chance (0.40-0.43 balanced
accuracy, chance 0.25). Scored by so weak a reader, the generator either exaggerates the stages (the plain
term, which rewards being read more surely than real images are) or barely moves (the matched term, whose
targets are nearly flat). A reader fitted for that one job reads real stages far better, and its targets
say what real images of each stage look like to it.

What it is fitted on is the rule that makes its figure worth anything: **the generator's training set
only**. The reader is fitted here, inside ``cgan-train``, on the very images the run trains on (split by
subject: ``fit`` to fit, ``val`` to choose, ``held`` to measure); it never sees cgan-eval's judge set, its
judges, or anything else. The generator's term is :func:`~.objectives.kl_to_targets` of the reader's posterior on each
generated image (after the same DiffAugment D sees) against ``t_s``, the reader's mean posterior on the
held-out real images of the stage asked for: 0 when a generated image is read as an unseen real one of
its stage is, and no reward for being read more surely than that.

The fitted reader is cached (``<cache>/readers/``, keyed on the data, the split and the recipe) and
copied into the run folder (``stage_reader.pt``), which ``--resume`` reads, so a resumed run scores with
the reader it started with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from cgan.runtime.errors import CganError

from ..eval.fit import epoch_draws
from ..eval.judges import FORMAT_VERSION, Judge, JudgeConfig, JudgeError, dataset_key, split_key, train_judge
from ..eval.splits import Split, split_image_set
from .objectives import kl_to_targets

Log = Callable[[str], object]

READER_FILE = "stage_reader.pt"
# the small judge's network at 64 px with its jitter and weight averaging, on a shorter schedule: the
# reader has one job (the stages of this set) and is fitted once per data set
READER_CONFIG = JudgeConfig(arch="small", input_size=64, max_epochs=15, min_epochs=15, average_last=5,
                            augment="shift,intensity", gate=0.0, seed=0)
HOLDOUT, VAL = 0.2, 0.15  # of each stage's subjects: measured on, and chosen on


@dataclass
class StageReader:
    """The fitted network (frozen, eval mode), the split it was fitted on, and its targets ``[K, K]``:
    row ``s`` is its mean posterior over the held-out real images of stage ``s``."""

    judge: Judge
    targets: torch.Tensor
    split: Split

    @property
    def size(self) -> int:
        return self.judge.config.size_for(self.judge.img_size)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Stage logits of float images ``[B, 1, S, S]`` in [-1, 1], differentiable in ``x`` (resized as the
        reader's own inputs were: bilinear, antialiased)."""
        if x.shape[-1] != self.size:
            x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self.judge.model(x.float().contiguous(memory_format=torch.channels_last)).float()

    def loss(self, x: torch.Tensor, stages: torch.Tensor) -> torch.Tensor:
        """The generator's term for images ``x`` asked to be ``stages``: mean ``KL(t_s || p)``."""
        return kl_to_targets(self.targets.to(x.device)[stages], self.logits(x))

    def describe(self) -> str:
        """One line for the provenance and the log: what it reads on held-out subjects."""
        held = self.judge.held_out
        return (f"{self.judge.name} stage reader fitted on this run's training images ({self.split.kind}-level split, "
                f"{len(self.split.fit):,} fitted, {len(self.split.held):,} held out): held-out balanced accuracy "
                f"{held['balanced_accuracy']:.3f} (per stage {', '.join(f'{v:.2f}' for v in held['per_class'])}); "
                f"targets' own-stage share {', '.join(f'{v:.2f}' for v in self.targets.diagonal().tolist())}")


def mean_posteriors(judge: Judge, images: np.ndarray, labels: np.ndarray, k: int) -> torch.Tensor:
    """``[K, K]``: row ``s`` the judge's mean softmax over ``images`` of stage ``s`` (one-hot where there are none)."""
    probs = torch.softmax(torch.from_numpy(judge.embed(np.asarray(images))[0]), dim=1)
    out = torch.eye(k)
    for s in range(k):
        member = torch.from_numpy(np.asarray(labels) == s)
        if member.any():
            out[s] = probs[member].mean(0)
    return out


def reader_config(image_set: Any, split: Split) -> JudgeConfig:
    """:data:`READER_CONFIG` for this set: its input no larger than the images, an epoch no longer than one pass
    over the fitted images (a small set's fit costs what its images do)."""
    size = min(int(READER_CONFIG.input_size), int(np.asarray(image_set.images).shape[-1]))
    return replace(READER_CONFIG, input_size=size, epoch_images=epoch_draws(READER_CONFIG, len(split.fit)))


def cache_path(cache_dir: Path, image_set: Any, split: Split, config: JudgeConfig) -> Path:
    ident = json.dumps({"data": dataset_key(image_set), "split": split_key(split), "config": config.to_dict(),
                        "v": FORMAT_VERSION, "role": "stage reader"}, sort_keys=True)
    return Path(cache_dir) / "readers" / f"{config.arch}-{hashlib.sha256(ident.encode()).hexdigest()[:20]}.pt"


def reader_split(image_set: Any) -> Split:
    """The run's training images split by subject (where file names give subjects), seeded: fit / val / held."""
    split = split_image_set(image_set, holdout=HOLDOUT, val=VAL, seed=READER_CONFIG.seed)
    labels = np.asarray(image_set.labels)
    k = len(image_set.class_names)
    for side, idx in (("fitted", split.fit), ("validation", split.val), ("held-out", split.held)):
        missing = [image_set.class_names[s] for s in range(k) if not (labels[idx] == s).any()]
        if missing:
            raise CganError(f"--reader-weight: the training images have too few subjects of {', '.join(missing)} for "
                            f"a stage reader (its {side} part has none; every stage needs at least 3 subjects)")
    return split


def get_reader(image_set: Any, *, cache_dir: Path, device: torch.device, log: Log = print) -> StageReader:
    """The stage reader of ``image_set``: from the cache, else fitted (resuming an interrupted fit) and cached."""
    split = reader_split(image_set)
    config = reader_config(image_set, split)
    path = cache_path(Path(cache_dir).expanduser(), image_set, split, config)
    judge = None
    if path.is_file():
        try:
            judge = Judge.load(path, device=device)
            log(f"using the cached stage reader {path}")
        except JudgeError as exc:  # a torn or foreign file: it is only a cache
            log(f"the cached stage reader {path} cannot be read ({exc}); fitting it again")
    if judge is None:
        partial = path.with_suffix(".partial.pt")
        judge = train_judge(image_set, split, config, device=device, checkpoint=partial, ident=path.stem, log=log,
                            role="stage reader")
        judge.save(path)
        partial.unlink(missing_ok=True)
    return _finish(judge, image_set, split)


def load_reader(path: Path, image_set: Any, *, device: torch.device) -> StageReader:
    """The reader a run folder holds (``--resume``); refused in one line if it was fitted on other images."""
    try:
        judge = Judge.load(path, device=device)
    except JudgeError as exc:
        raise CganError(f"--resume: {exc}") from None
    if judge.dataset.get("key") != dataset_key(image_set) or list(judge.class_names) != list(image_set.class_names):
        raise CganError(f"--resume: the stage reader {path} was fitted on other images than this run trains on "
                        f"({judge.dataset.get('description', '?')}); resume with the run's own data")
    return _finish(judge, image_set, reader_split(image_set))


def _finish(judge: Judge, image_set: Any, split: Split) -> StageReader:
    judge.model.eval().requires_grad_(False)
    judge.model.zero_grad(set_to_none=True)  # the fit's last gradients: frozen from here on, it never gets another
    labels = np.asarray(image_set.labels)
    targets = mean_posteriors(judge, np.asarray(image_set.images)[split.held], labels[split.held],
                              len(image_set.class_names))
    return StageReader(judge=judge, targets=targets.to(judge.device), split=split)
