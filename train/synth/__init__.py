"""A synthetic OASIS-like set: axial T1 slices of synthetic subjects built from real brain anatomy.

The set is made of subjects (:mod:`.subject`): each is the MNI ICBM152 2009 template
(:mod:`.anatomy`) under its own smooth random deformation, pose, intensity profile, stage and
hidden severity, drawn around the stage's mean so that neighbouring stages overlap. Severity acts as
anatomy: enlarged ventricles and temporal horns, thinner cortex with wider sulci, medial-temporal
volume loss on the low slices, a small global shrink. Each subject gives several axial slices from
the temporal horns to above the ventricles, named in the OASIS style
(``OAS1_0042_MR1_mpr-1_<level>.png``) so that tools can group images by subject as they must on the
real data. Class proportions follow OASIS with a floor for the rare stage.

Image k of a set (n, seed) depends only on (n, seed, k): the same bytes for any worker count.
Research and education only: these are not medical images.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from cgan.runtime.contract import DISCLAIMER, OASIS_COUNTS, OASIS_FOLDERS
from cgan.runtime.errors import CganError, check_least
from cgan.runtime.progress import progress
from cgan.runtime.staging import as_output_error, staged_folder, user_entries
from cgan.runtime.writers import png_bytes

from .pool import pool_map

from .anatomy import TEMPLATE_NOTICE, share_template, template_slabs
from .markers import MARKER_NAMES, estimate_markers  # noqa: F401  (re-exported for cgan-eval)
from .subject import MARKERS, Subject, render, sample_subject, slice_levels

# Bump when the rendering or the sampling changes: caches of the default synthetic set key on it.
# 2: subjects built from the MNI ICBM152 2009 template (1 was drawn from geometry).
SYNTH_VERSION = "2"

# Mean latent severity per stage; every subject draws severity ~ N(mean, SEVERITY_SD). The spacing
# against the spread (and the individual variation of each marker) sets how separable the stages are:
# tuned so that the reference classifier reaches roughly 80-95% held-out accuracy with a subject split.
SEVERITY_MEANS = (0.0, 0.33, 0.67, 1.0)
SEVERITY_SD = 0.09

SLICES_PER_SUBJECT = 8  # images per subject (fewer for the last subject of a stage)

# Every stage gets at least FLOOR_FRACTION of the set (and at least min(FLOOR_MIN, n // stages)
# images), so the rarest stage (0.56% of OASIS) still has images to learn from.
FLOOR_FRACTION = 0.02
FLOOR_MIN = 32

LABELS_CSV = "labels.csv"
README_NAME = "README.md"
IMAGE_SUFFIX = ".png"  # lossless and byte-deterministic (OASIS on Kaggle ships JPEG)
_OASIS_NAME = re.compile(r"(OAS\d_\d{4,})_MR\d+")


def stage_counts(n: int, weights: Sequence[float] = OASIS_COUNTS) -> np.ndarray:
    """Images per stage for a set of ``n``: OASIS proportions with a floor for the rare stages.

    Each stage gets at least ``max(ceil(2% of n), min(32, n // stages))`` images (the floor); the
    images that takes come from the largest stage. int64 ``[stages]`` summing to ``n``.
    """
    k = len(weights)
    if n < k:
        raise CganError(f"a synthetic set needs at least {k} images (one per stage), got n={n}")
    w = np.asarray(weights, dtype=np.float64)
    exact = w / w.sum() * n
    counts = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:  # largest remainders
        counts[i] += 1
    floor = max(math.ceil(FLOOR_FRACTION * n), min(FLOOR_MIN, n // k))
    for i in range(k):
        if counts[i] < floor:
            counts[int(np.argmax(counts))] -= floor - counts[i]
            counts[i] = floor
    return counts


@dataclass(frozen=True)
class SetPlan:
    """Who is who in a set (n, seed): per image (int64 ``[n]`` each) its stage, subject number,
    position among its subject's slices and that subject's slice count."""

    stage: np.ndarray
    subject: np.ndarray
    slot: np.ndarray
    slices: np.ndarray

    @property
    def subjects(self) -> int:
        return int(self.subject.max())


@functools.lru_cache(maxsize=8)
def set_plan(n: int, seed: int, slices_per_subject: int = SLICES_PER_SUBJECT) -> SetPlan:
    """Split every stage's images (:func:`stage_counts`) into subjects of up to ``slices_per_subject``
    slices, shuffle the subjects with ``seed`` and number them 1, 2, ... in that order."""
    if slices_per_subject < 1:
        raise CganError(f"slices per subject must be at least 1, got {slices_per_subject}")
    groups: list[tuple[int, int]] = []  # (stage, slice count)
    for stage, count in enumerate(stage_counts(n)):
        k = -(-int(count) // slices_per_subject)
        groups += [(stage, int(count) // k + (1 if i < int(count) % k else 0)) for i in range(k)]
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(groups))
    stage, subject, slot, slices = [], [], [], []
    for number, g in enumerate(order, start=1):
        st, size = groups[g]
        stage += [st] * size
        subject += [number] * size
        slot += list(range(size))
        slices += [size] * size
    as64 = lambda a: np.asarray(a, dtype=np.int64)  # noqa: E731
    return SetPlan(as64(stage), as64(subject), as64(slot), as64(slices))


def stage_of_index(n: int, seed: int, slices_per_subject: int = SLICES_PER_SUBJECT) -> np.ndarray:
    """The stage of each image 0..n-1 of a set with ``seed``."""
    return set_plan(n, seed, slices_per_subject).stage


def subject_name(number: int) -> str:
    """The OASIS-style subject id of subject ``number``, e.g. ``OAS1_0042``."""
    return f"OAS1_{number:04d}"


def oasis_subject(path: str | Path) -> str | None:
    """The subject id (``OAS1_0042``) in an OASIS file name, or None if the name carries none."""
    found = _OASIS_NAME.search(Path(path).name)
    return found.group(1) if found else None


def make_subject(seed: int, number: int, stage: int, slices: int) -> tuple[Subject, list[int]]:
    """Subject ``number`` of a set with ``seed``: its parameters and the template levels of its slices."""
    rng = np.random.default_rng([seed, 1, number])
    severity = float(rng.normal(SEVERITY_MEANS[stage], SEVERITY_SD))
    return sample_subject(number, stage, severity, rng), slice_levels(slices, rng)


def image_relpath(stage: int, subject: int, level: int) -> str:
    return f"{OASIS_FOLDERS[stage]}/{subject_name(subject)}_MR1_mpr-1_{level}{IMAGE_SUFFIX}"


def set_files(n: int, seed: int, slices_per_subject: int = SLICES_PER_SUBJECT) -> list[str]:
    """The relative path (Kaggle folder / OASIS-style name) of every image 0..n-1 of the set (n, seed), as
    ``cgan-data synth`` writes them, without rendering: what tools group by subject on."""
    plan = set_plan(n, seed, slices_per_subject)
    levels: dict[int, list[int]] = {}
    out = []
    for i in range(n):
        number, stage = int(plan.subject[i]), int(plan.stage[i])
        if number not in levels:
            levels[number] = make_subject(seed, number, stage, int(plan.slices[i]))[1]
        out.append(image_relpath(stage, number, levels[number][int(plan.slot[i])]))
    return out


def synth_image(seed: int, index: int, n: int, img_size: int,
                slices_per_subject: int = SLICES_PER_SUBJECT) -> tuple[np.ndarray, dict]:
    """Image ``index`` of the set (n, seed) and its ``labels.csv`` row: a pure function of its arguments."""
    plan = set_plan(n, seed, slices_per_subject)
    number, stage = int(plan.subject[index]), int(plan.stage[index])
    subj, levels = make_subject(seed, number, stage, int(plan.slices[index]))
    level = levels[int(plan.slot[index])]
    img, info = render(subj, level, img_size, np.random.default_rng([seed, 2, index]))
    row = {"path": image_relpath(stage, number, level), "index": int(index), "subject": subject_name(number),
           "stage": stage, "level": level, "severity": subj.severity}
    row.update({k: v for k, v in asdict(subj).items() if k not in row and k != "subject"})
    row.update(ventricle_mm=subj.ventricle_mm, thinning_mm=subj.thinning_mm, mtl_loss=subj.mtl_loss,
               shrink=subj.shrink, **info)
    return img, row


def _write_chunk(job: tuple[Path, int, int, int, int, int]) -> list[dict]:
    root, seed, n, img_size, start, stop = job
    rows = []
    for k in range(start, stop):
        img, row = synth_image(seed, k, n, img_size)
        (root / row["path"]).write_bytes(png_bytes(img, compress_level=6))
        rows.append(row)
    return rows


def _array_chunk(job: tuple[int, int, int, int, int, int]) -> np.ndarray:
    seed, n, img_size, start, stop, slices = job
    out = np.empty((stop - start, img_size, img_size), dtype=np.uint8)
    for k in range(start, stop):
        out[k - start] = synth_image(seed, k, n, img_size, slices)[0]
    return out


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


CHUNK = 32
POOL_MIN = 64  # sets smaller than this render in-process: starting workers would cost more


def _ranges(n: int, size: int = CHUNK) -> list[tuple[int, int]]:
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _pool_map(fn: Callable, jobs: list, workers: int) -> Iterator:
    """Map in order, in worker processes when it pays (:func:`.pool.pool_map`); workers are handed the
    template slabs this process read, so they need not import nilearn, and die with this process."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    yield from pool_map(fn, jobs, workers, initializer=share_template, initargs=(template_slabs(),))


def render_set(n: int, *, seed: int, img_size: int = 128, workers: int | None = None,
               out: np.ndarray | None = None, slices_per_subject: int = SLICES_PER_SUBJECT
               ) -> tuple[np.ndarray, np.ndarray]:
    """The images of the synthetic set (n, seed) in memory (or into ``out``, e.g. a memmap), and labels.

    ``slices_per_subject=1`` gives one slice per subject: images independent of each other (for
    tools that split by image)."""
    _check_set_args(n, seed, img_size)
    stages = stage_of_index(n, seed, slices_per_subject)
    images = out if out is not None else np.empty((n, img_size, img_size), dtype=np.uint8)
    workers = default_workers() if workers is None else workers
    jobs = [(seed, n, img_size, a, b, slices_per_subject) for a, b in _ranges(n)]
    with progress("rendering synthetic set", total=n, unit="image") as bar:
        for (_, _, _, a, b, _), arr in zip(jobs, _pool_map(_array_chunk, jobs, workers if n >= POOL_MIN else 1)):
            images[a:b] = arr
            bar.advance(b - a)
    return images, stages


MAX_IMG_SIZE = 1024  # the template has about 1 mm per pixel at 200: larger images add no detail, only memory


def _check_set_args(n: int, seed: int, img_size: int) -> None:
    check_least("--n", n, 1)
    check_least("--seed", seed, 0)
    if not 16 <= img_size <= MAX_IMG_SIZE:
        raise CganError(f"--img-size must be between 16 and {MAX_IMG_SIZE} px, got {img_size}")


def make_synthetic_set(out: Path, *, n: int, seed: int, img_size: int = 128, log: Callable[[str], object] = print,
                       workers: int | None = None, overwrite: bool = False) -> Path:
    """Write the synthetic set (n, seed) to ``out`` in the Kaggle OASIS layout, with ``labels.csv`` and a README.

    ``out/<OASIS folder>/OAS1_<subject>_MR1_mpr-1_<level>.png``, ``out/labels.csv`` (each image's
    path, index, subject, stage, level, ground-truth parameters and measured fractions) and
    ``out/README.md`` (what the set is, and the template's attribution and licence).

    Written under cgan-run's rules (:mod:`cgan.runtime.staging`): ``out`` is locked while in use, a
    non-empty ``out`` is refused unless ``overwrite``, the set is built in a hidden temporary folder
    inside ``out`` and its files moved to their planned names at the end (``labels.csv`` last), so
    ``out`` holds a whole set or none of it. Nothing else in ``out`` is ever removed or replaced, except,
    with ``overwrite``, the planned files and the images listed in an older set's ``labels.csv``. Returns ``out``.
    """
    out = Path(out)
    _check_set_args(n, seed, img_size)
    if out.exists() and not out.is_dir():
        raise CganError(f"--out {out} is a file; give a folder for the set")
    if not overwrite and user_entries(out):
        raise CganError(f"{out} already exists and is not empty; choose another --out or pass --overwrite")
    images = set_files(n, seed)  # every name planned before anything is written
    counts = stage_counts(n)
    t0 = time.perf_counter()
    template_slabs()  # the template (nilearn's import and files) is read before the folder is locked
    try:
        with staged_folder(out, "cgan-data synth", overwrite=overwrite) as staged:
            tmp = staged.tmp
            for folder in OASIS_FOLDERS:
                (tmp / folder).mkdir()
            workers = default_workers() if workers is None else workers
            jobs = [(tmp, seed, n, img_size, a, b) for a, b in _ranges(n)]
            rows: list[dict] = []
            with progress(f"writing {out}", total=n, unit="image") as bar:
                for chunk_rows in _pool_map(_write_chunk, jobs, workers if n >= POOL_MIN else 1):
                    rows.extend(chunk_rows)
                    bar.advance(len(chunk_rows))
            _write_labels(tmp / LABELS_CSV, rows)
            (tmp / README_NAME).write_text(dataset_readme(n=n, seed=seed, img_size=img_size, counts=counts,
                                                          subjects=set_plan(n, seed).subjects), encoding="utf-8")
            stale = _older_set_images(out, set(images)) if overwrite else []
            staged.publish([*images, README_NAME, LABELS_CSV])
            for path in stale:  # an older set's images that this one does not have: one set per folder
                path.unlink(missing_ok=True)
    except MemoryError:
        raise CganError(f"not enough memory to render {img_size} x {img_size} px images; choose a smaller --img-size") from None
    except OSError as exc:
        raise as_output_error(exc, out) from None
    seconds = time.perf_counter() - t0
    per_stage = ", ".join(f"{name}: {int(c)}" for name, c in zip(OASIS_FOLDERS, counts))
    log(f"wrote synthetic OASIS-like set to {out} (n={n}, seed={seed}, {img_size} px, "
        f"{set_plan(n, seed).subjects} subjects; {per_stage}) in {seconds:.1f} s ({n / seconds:.1f} images/s)")
    return out


def _older_set_images(out: Path, keep: set[str]) -> list[Path]:
    """The images an older set in ``out`` lists in its ``labels.csv`` that are not in ``keep``: only names
    of our own layout, so a hand-edited list can never point outside the set."""
    try:
        with open(out / LABELS_CSV, newline="", encoding="utf-8") as fh:
            listed = [row.get("path") or "" for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    ours = re.compile(r"^(" + "|".join(map(re.escape, OASIS_FOLDERS)) + r")/OAS1_\d{4,}_MR1_mpr-1_\d+\.png$")
    return [out / rel for rel in listed if rel not in keep and ours.match(rel)]


LABEL_FIELDS = (["path", "index", "subject", "stage", "level", "severity"]
                + [f.name for f in fields(Subject) if f.name not in ("subject", "stage", "severity")]
                + ["ventricle_mm", "thinning_mm", "mtl_loss", "shrink", "slice_rotation", "slice_shift_x",
                   "slice_shift_y", *MARKERS])
_INT_FIELDS = {"index", "stage", "level", "field_seed"}
_STR_FIELDS = {"path", "subject"}


def _write_labels(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def read_labels(path: Path) -> list[dict]:
    """Rows of a ``labels.csv`` with numbers parsed (ints for index, stage, level, field_seed; floats otherwise)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            {k: (v if k in _STR_FIELDS else int(v) if k in _INT_FIELDS else float(v)) for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def dataset_readme(*, n: int, seed: int, img_size: int, counts: Sequence[int], subjects: int) -> str:
    """The README written beside the images: what the set is, its files, and the template's notice."""
    per_stage = "\n".join(f"- `{name}/`: {int(c):,} images" for name, c in zip(OASIS_FOLDERS, counts))
    return f"""# Synthetic OASIS-like set (dementia-cgan synth v{SYNTH_VERSION})

Written by `cgan-data synth --n {n} --seed {seed} --img-size {img_size}`: {n:,} grayscale PNG axial
brain slices ({img_size} x {img_size} px) of {subjects:,} synthetic subjects, in the folder layout of
the Kaggle "imagesoasis" set:

{per_stage}

Each subject is the MNI ICBM152 2009 template under its own smooth random deformation, pose and
intensity profile, with a stage and a hidden severity drawn around the stage's mean (neighbouring
stages overlap). Severity enlarges the ventricles and temporal horns, thins the cortex and widens the
sulci, shrinks the medial temporal lobe on low slices and the whole brain a little. File names carry
the subject in the OASIS style (`OAS1_<subject>_MR1_mpr-1_<template level>.png`): split by subject,
never by image. `labels.csv` gives, per image, its index, subject, stage, template level (z voxel of
the 1-mm template; MNI z = level - 72 mm), the ground-truth parameters and the ventricle CSF, sulcal
CSF and brain fractions measured on its warped tissue maps. The same command gives the same bytes.

{DISCLAIMER} These images are synthetic: they are not scans of any person.

## Template attribution and licence

{TEMPLATE_NOTICE}"""
