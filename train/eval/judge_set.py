"""The judges' own set on the built-in synthetic data: rendered with its own seed, balanced over stages,
split by subject, and sharing no subject with the set a generator trains on.

On the built-in set the judges used to train and be gated on the generator's own training data, whose
rare stage has a handful of subjects: with 4 Moderate subjects held out, one image moved a judge's figure
by 1/32, and whether a judge cleared its gate depended on the split. The judge set gives every stage the
same number of subjects (:data:`SUBJECTS_PER_STAGE`, of which :data:`HOLDOUT` are held out: at least 60
per stage), so a judge learns every stage from many brains and is measured on many.

Its subjects are drawn from the synthetic renderer with :data:`JUDGE_SET_SEED` (the generator's set uses
``cgan.train.data.DEFAULT_SYNTH_SEED``): every subject's anatomy, severity, pose and appearance come from
that seed, and its OASIS-style number starts at :data:`FIRST_SUBJECT`, above any number the default set
uses, so not even a name is shared. Each image's ground-truth severity is kept (the severity check
fits and tests its estimator on it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cgan.runtime.contract import OASIS_FOLDERS
from cgan.runtime.fileio import atomic_path, atomic_write_text
from cgan.train.data import ImageSet, open_cached

Log = Callable[[str], object]

JUDGE_SET_SEED = 20_251  # the judge set's own seed (the generator's set: DEFAULT_SYNTH_SEED = 0)
SUBJECTS_PER_STAGE = 256
SLICES = 4  # slices per subject: more brains per image than the training set's 8
HOLDOUT = 0.25  # of each stage's subjects: 64 held out per stage
FIRST_SUBJECT = 5001  # subject numbers start here: the default 8,000-image set has 1,001 subjects
QUICK_SUBJECTS_PER_STAGE = 40  # --quick: a small judge set (a smoke check, never a verdict)
VERSION = "1"


@dataclass
class JudgeSetSpec:
    subjects_per_stage: int = SUBJECTS_PER_STAGE
    slices: int = SLICES
    seed: int = JUDGE_SET_SEED
    img_size: int = 128
    first_subject: int = FIRST_SUBJECT

    @property
    def n(self) -> int:
        return self.subjects_per_stage * self.slices * len(OASIS_FOLDERS)

    def key(self) -> str:
        from cgan.train.synth import SYNTH_VERSION

        ident = f"judgeset{VERSION}-synth{SYNTH_VERSION}-{self.subjects_per_stage}-{self.slices}-{self.seed}-" \
                f"{self.img_size}-{self.first_subject}"
        return hashlib.sha256(ident.encode()).hexdigest()[:20]


@dataclass
class JudgeSetPlan:
    """Per image: stage, subject number, slice slot; per subject its order (seeded)."""

    stage: np.ndarray
    subject: np.ndarray
    slot: np.ndarray


def plan(spec: JudgeSetSpec) -> JudgeSetPlan:
    """Subjects of every stage, ``spec.slices`` consecutive images each, in a seeded subject order."""
    k = len(OASIS_FOLDERS)
    stages = np.repeat(np.arange(k), spec.subjects_per_stage)
    order = np.random.default_rng([spec.seed, 0x5EED]).permutation(len(stages))
    subj_stage = stages[order]
    numbers = spec.first_subject + np.arange(len(stages))
    return JudgeSetPlan(stage=np.repeat(subj_stage, spec.slices), subject=np.repeat(numbers, spec.slices),
                        slot=np.tile(np.arange(spec.slices), len(stages)))


def _render_chunk(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    from cgan.train.synth import make_subject
    from cgan.train.synth.subject import render

    seed, img_size, slices, rows = job
    out = np.empty((len(rows), img_size, img_size), dtype=np.uint8)
    severity = np.empty(len(rows), dtype=np.float64)
    for i, (index, number, stage, slot) in enumerate(rows):
        subj, levels = make_subject(seed, number, stage, slices)
        out[i] = render(subj, levels[slot], img_size, np.random.default_rng([seed, 2, index]))[0]
        severity[i] = subj.severity
    return out, severity


def files(spec: JudgeSetSpec, p: JudgeSetPlan | None = None) -> list[str]:
    from cgan.train.synth import subject_name

    p = p or plan(spec)
    return [f"{OASIS_FOLDERS[s]}/{subject_name(int(num))}_MR1_mpr-1_slot{slot}.png"
            for s, num, slot in zip(p.stage, p.subject, p.slot)]


def describe(spec: JudgeSetSpec) -> str:
    from cgan.train.synth import SYNTH_VERSION

    return (f"judge set: synthetic OASIS-like v{SYNTH_VERSION}, own seed {spec.seed}, balanced, "
            f"{spec.subjects_per_stage} subjects per stage x {spec.slices} slices (n={spec.n}), "
            f"subjects OAS1_{spec.first_subject:04d}+ (none shared with the generator's training set)")


def load_judge_set(spec: JudgeSetSpec, *, cache_dir: Path, log: Log = print, workers: int | None = None):
    """The judge set as an ImageSet (with ``severity`` per image), rendered into the cache once."""
    from cgan.runtime.progress import progress
    from cgan.train.synth import _pool_map, default_workers

    entry = Path(cache_dir) / "datasets" / f"judgeset-{spec.key()}"
    cache, meta_path = entry / "images.npy", entry / "meta.json"
    p = plan(spec)
    names = list(OASIS_FOLDERS)
    meta = None
    images = None
    if cache.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError:
            meta = None
    if meta and meta.get("key") == spec.key():
        images = open_cached(cache, len(p.stage), spec.img_size, log)  # None where cut short: rendered again
    if images is None:
        log(f"rendering the {describe(spec)} into {entry} (once) ...")
        entry.mkdir(parents=True, exist_ok=True)
        rows = [(i, int(num), int(s), int(slot)) for i, (s, num, slot) in enumerate(zip(p.stage, p.subject, p.slot))]
        jobs = [(spec.seed, spec.img_size, spec.slices, rows[a : a + 64]) for a in range(0, len(rows), 64)]
        severity = np.empty(len(rows), dtype=np.float64)
        with atomic_path(cache) as tmp:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(rows), spec.img_size, spec.img_size))
            w = default_workers() if workers is None else workers
            # a bar on a terminal, a plain line at a steady interval in a pipe or a log
            with progress("rendering the judge set", total=len(rows), unit="image") as bar:
                for a, (imgs, sev) in zip(range(0, len(rows), 64), _pool_map(_render_chunk, jobs, w)):
                    arr[a : a + len(imgs)] = imgs
                    severity[a : a + len(imgs)] = sev
                    bar.advance(len(imgs))
            arr.flush()
            del arr
        meta = {"key": spec.key(), "severity": severity.tolist()}
        atomic_write_text(meta_path, json.dumps(meta))
        images = np.load(cache, mmap_mode="r")
    out = JudgeImageSet(images=images, labels=p.stage.astype(np.int64), class_names=names, description=describe(spec),
                        cache_path=cache, files=files(spec, p),
                        severity=np.asarray(meta["severity"], dtype=np.float64), spec=spec)
    log(f"using the {describe(spec)}")
    return out


@dataclass
class JudgeImageSet(ImageSet):
    """An ImageSet that knows each image's ground-truth severity (and the spec it was rendered from)."""

    severity: np.ndarray | None = None
    spec: JudgeSetSpec | None = field(default=None)


def judge_split(image_set, *, holdout: float = HOLDOUT, seed: int = 0):
    """The judge set's subject split: ``holdout`` of every stage's subjects held out (at least 60 per stage
    at the default size), 15% of the rest for early stopping."""
    from .splits import split_image_set

    return split_image_set(image_set, holdout=holdout, seed=seed)
