"""Balancing a dataset: count each stage's real images, plan the generated ones, write what is missing.

A plan gives every stage a number of generated images: by default enough to bring each stage to the
largest stage's count; with ``ratio`` R, floor(R x real); with ``target`` N, enough to reach N. Stage
s's generated images are images k = 0, 1, ... of (model, seed, s) under the noise contract, so a plan
is a pure function of the counts, and a bigger plan extends a smaller one: a second run writes only
the indices that are missing, and the union equals one run of the bigger plan.

The files go into the dataset's own layout (its class-folder names) under an output folder, with a
manifest (:mod:`cgan.runtime.manifest`) naming each generated file. Files listed in that manifest are
never counted as real, even where the output folder is the dataset itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, Sequence

from .errors import CganError, DiskFullError, OutputError
from .fileio import disk_full, sha256_file
from .layout import DataError, Layout, find_layout, list_images, looks_like_image
from .manifest import MANIFEST_NAME, ManifestLog, ManifestRow, read_manifest

LAYOUT_WORDS = {"oasis": "OASIS layout", "stages": "stage-folder layout", "classes": "class-folder layout"}


class BalanceError(CganError, ValueError):
    """A balancing request that cannot be planned: bad ratio or target, or a dataset that does not fit the model."""


MAX_RATIO = 10_000  # generated images per real one (OASIS's rarest stage needs ~140 to match the largest)
MAX_TARGET = 10**9  # images per stage


def _ratio(ratio: float | str | Fraction) -> Fraction:
    """``--ratio`` as an exact fraction (floor(0.29 x 100) is 29, not 28), within 0..:data:`MAX_RATIO`. Checked
    as a float first: ``Fraction("1e999999999")`` would work out a billion-digit number before any bound is seen."""
    text = str(ratio).strip()
    try:
        approx = float(text)
    except ValueError:
        approx = None
    if approx is None or approx != approx or len(text) > 64:
        raise BalanceError(f"--ratio must be a number between 0 and {MAX_RATIO:,}, got {ratio!r}")
    if not 0 <= approx <= MAX_RATIO:
        raise BalanceError(f"--ratio must be between 0 and {MAX_RATIO:,}, got {text}")
    if approx == 0:  # zero, or below the smallest float (1e-999999999): no image at any count
        return Fraction(0)
    return Fraction(text)


def plan_counts(
    real: Sequence[int], *, ratio: float | str | Fraction | None = None, target: int | None = None, stages: Sequence[int] | None = None
) -> tuple[int, ...]:
    """Generated images per stage for ``real`` images per stage (see the module doc); stages outside
    ``stages`` (when given) get none."""
    if ratio is not None and target is not None:
        raise BalanceError("give --ratio or --target, not both")
    real = [int(c) for c in real]
    if any(c < 0 for c in real):
        raise BalanceError(f"image counts must be >= 0, got {real}")
    if ratio is not None:
        r = _ratio(ratio)
        want = [int(r * c) for c in real]
    elif target is not None:
        if isinstance(target, bool) or not isinstance(target, int) or target < 1:
            raise BalanceError(f"--target must be a whole number >= 1, got {target!r}")
        if target > MAX_TARGET:
            raise BalanceError(f"--target must be at most {MAX_TARGET:,} images per stage, got {target:,}")
        want = [max(0, target - c) for c in real]
    else:
        top = max(real, default=0)
        want = [top - c for c in real]
    if stages is not None:
        chosen = set(stages)
        want = [w if s in chosen else 0 for s, w in enumerate(want)]
    return tuple(want)


@dataclass(frozen=True)
class BalancePlan:
    """How many images each stage has (``real``) and gets generated (``generate``), and where they go
    (``folders``: each stage's folder relative to the output root, as named in the dataset)."""

    real: tuple[int, ...]
    generate: tuple[int, ...]
    folders: tuple[str, ...]
    source: str = ""  # e.g. "OASIS layout at /data/oasis"

    @property
    def total(self) -> int:
        return sum(self.generate)

    def rows(self, names: Sequence[str] | None = None) -> list[tuple[str, int, int, int]]:
        """(stage label, real, generated, real + generated) per stage."""
        names = names or self.folders
        return [(f"{s} {names[s]}", r, g, r + g) for s, (r, g) in enumerate(zip(self.real, self.generate))]


def read_dataset(data: str | os.PathLike, *, classes: Sequence[str] | None = None, exclude: set[Path] = frozenset(),
                 flag: str = "--balance") -> tuple[Layout, list[int]]:
    """The layout of ``data`` and its real images per stage (files in ``exclude``, resolved paths, not counted)."""
    layout = find_layout(Path(data), classes, flag=flag)
    counts = []
    for files in list_images(layout):  # real images only: a text file named *.png is not one
        counts.append(sum(1 for f in files if (not exclude or f.resolve() not in exclude) and looks_like_image(f)))
    return layout, counts


def balance_plan(
    data: str | os.PathLike, *, ratio: float | str | None = None, target: int | None = None, stages: Sequence[int] | None = None,
    classes: Sequence[str] | None = None, exclude: set[Path] = frozenset(),
) -> BalancePlan:
    """The plan for the dataset folder ``data`` (any layout ``cgan-train`` reads); see :func:`plan_counts`."""
    layout, real = read_dataset(data, classes=classes, exclude=exclude)
    want = plan_counts(real, ratio=ratio, target=target, stages=stages)
    folders = tuple(d.relative_to(layout.root).as_posix() for d in layout.class_dirs)
    return BalancePlan(tuple(real), want, folders, f"{LAYOUT_WORDS[layout.kind]} at {layout.root}")


def plan_words(plan: BalancePlan, *, ratio=None, target: int | None = None, stages: Sequence[int] | None = None,
               stage_names: Sequence[str] | None = None) -> str:
    """What a plan does, in the words of the plan line: which stages, to what count, and what --ratio means."""
    every = stages is None or set(stages) >= set(range(len(plan.real)))
    if every:
        who = "every stage"
    else:
        names = stage_names or plan.folders
        who = " and ".join(f"stage {s} ({names[s]})" for s in sorted(set(stages)))
    if ratio is not None:
        words = (f"--ratio {ratio}: {who} gets floor({ratio} x its real images) generated, so a stage gets more the more "
                 "real images it has (the default, or --target N, tops up the rare stages instead)")
    elif target is not None:
        words = f"{who} to {target:,} images, real and generated"
    else:
        words = f"{who} to the largest stage's {max(plan.real, default=0):,} images"
    return words if every else f"{words}; the other stages unchanged"


# ---------------------------------------------------------------- writing

@dataclass(frozen=True)
class BalanceJob:
    """A plan placed in an output folder: what is there already and which indices each stage still needs."""

    plan: BalancePlan
    out: Path  # the folder holding the stage folders and the manifest
    rows: tuple[ManifestRow, ...]  # the manifest's rows whose files still exist
    missing: tuple[tuple[int, ...], ...]  # per stage: the image indices k to write now
    listed: tuple[ManifestRow, ...] = ()  # the manifest as read when planning

    @property
    def to_write(self) -> int:
        return sum(len(m) for m in self.missing)

    @property
    def manifest(self) -> Path:
        return self.out / MANIFEST_NAME


def _find_layout(data: Path, stage_names: Sequence[str] | None) -> Layout:
    """The dataset's layout; for a model trained on other class folders (``cgan-train --classes``), whose
    stage names are those folders' names, the folders named after its stages."""
    try:
        return find_layout(data, flag="--balance")
    except DataError:
        if not stage_names:
            raise
        try:
            return find_layout(data, list(stage_names), flag="--balance")
        except DataError:
            pass
        raise


def output_root(data: Path, layout: Layout, out: Path) -> Path:
    """Where stage folders and the manifest go: ``out``, or the dataset's class-folder root when ``out`` is the dataset."""
    o = out.resolve()
    return layout.root if o in (data.resolve(), layout.root.resolve()) else out


def plan_job(
    data: Path, out: Path, *, model_sha256: str, seed: int, noise_version: int, ratio=None, target=None,
    stages: Sequence[int] | None = None, num_classes: int | None = None, stage_names: Sequence[str] | None = None,
    png_bytes: int | None = None,
) -> BalanceJob:
    """Read the dataset and the output folder's manifest; plan; and list the indices still to write. With
    ``png_bytes`` (a lower bound on one image file), a plan the disk can never hold is refused first."""
    layout = _find_layout(Path(data), stage_names)
    if num_classes is not None and len(layout.class_dirs) != num_classes:
        raise BalanceError(
            f"--balance {data}: the dataset has {len(layout.class_dirs)} class folders ({', '.join(layout.class_names)}) "
            f"but the model makes {num_classes} stages; balance a dataset with one folder per stage of the model"
        )
    _check_out_outside_classes(layout, Path(out))
    root = output_root(Path(data), layout, Path(out))
    folders = [d.relative_to(layout.root).as_posix() for d in layout.class_dirs]
    rows = read_manifest(root / MANIFEST_NAME)
    for r in rows:
        theirs = (r.model_sha256, r.seed, r.noise_version)
        if theirs != (model_sha256, seed, noise_version):
            raise OutputError(
                f"{root / MANIFEST_NAME} lists images of model sha256 {r.model_sha256[:12]}..., seed {r.seed}, noise version "
                f"{r.noise_version}, not of this run's (sha256 {model_sha256[:12]}..., seed {seed}, noise version {noise_version}); "
                "balance with that model and seed, or choose another --out"
            )
    present = _checked_rows(root / MANIFEST_NAME, rows, root, folders)
    listed = {(root / r.file).resolve() for r in present}
    if root.resolve() != layout.root.resolve():  # images generated into the dataset earlier are not real either
        theirs = layout.root / MANIFEST_NAME
        listed |= {(layout.root / r.file).resolve() for r in _checked_rows(theirs, read_manifest(theirs), layout.root, folders)}
    classes = layout.class_names if layout.kind == "classes" else None
    plan = balance_plan(data, ratio=ratio, target=target, stages=stages, classes=classes, exclude=listed)
    if png_bytes is not None:  # counted, not listed: a plan of 10^12 images is refused before any list is built
        from .fileio import check_space

        check_space(root, png_bytes * max(0, plan.total - len(present)),
                    f"{max(0, plan.total - len(present)):,} PNG files")
    have = [set() for _ in plan.generate]
    for r in present:
        if 0 <= r.stage < len(have):
            have[r.stage].add(r.k)
    missing = tuple(tuple(k for k in range(n) if k not in have[s]) for s, n in enumerate(plan.generate))
    return BalanceJob(plan, root, tuple(present), missing, tuple(rows))


def _check_out_outside_classes(layout: Layout, out: Path) -> None:
    """Refuse an ``out`` that is (or is inside) a class folder: other stages' images would land in that
    stage's folder and be read as that stage."""
    o = out.resolve()
    for s, d in enumerate(layout.class_dirs):
        folder = d.resolve()
        if o == folder or folder in o.parents:
            raise BalanceError(
                f"--out {out} is inside the dataset's class folder {d} (stage {s}): images of the other stages would be "
                f"read as stage {s}; give the dataset folder itself ({layout.root}) or a folder outside it"
            )


def _checked_rows(manifest: Path, rows: Sequence[ManifestRow], root: Path, folders: Sequence[str]) -> list[ManifestRow]:
    """The rows of ``manifest`` whose files exist, once every row is checked to name a plain file directly
    in its stage's class folder (``folders``, relative to ``root``), named by its stage, seed and index as
    this module names it. A row whose file is missing (never written by a killed run, or removed since) is left out: it is written again."""
    import stat

    present = []
    for r in rows:
        where = f"{manifest}: the row of {r.file!r}"
        if not 0 <= r.stage < len(folders):
            raise OutputError(f"{where} has stage {r.stage}, but the dataset has stages 0 to {len(folders) - 1}; fix or remove the row")
        parent, _, name = r.file.rpartition("/")
        if parent != folders[r.stage] or not name:
            raise OutputError(f"{where} does not name a file directly in stage {r.stage}'s class folder {folders[r.stage]}/, "
                              "where cgan-run --balance writes; fix or remove the row")
        index = re.fullmatch(rf"stage{r.stage}_seed{r.seed}_(\d+)\.png", name)
        if index is None or int(index.group(1)) != r.k:
            raise OutputError(f"{where} does not name image {r.k} of stage {r.stage} and seed {r.seed} as cgan-run --balance "
                              f"names it (stage{r.stage}_seed{r.seed}_{r.k:08d}.png); fix or remove the row")
        try:
            st = os.lstat(root / r.file)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OutputError(f"{where}: cannot read {root / r.file} ({exc.strerror or exc})") from None
        if not stat.S_ISREG(st.st_mode):
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise OutputError(f"{where} names {what}, not a generated image; fix or remove the row")
        present.append(r)
    return present


def runs(ks: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indices -> (first, count) of each run of consecutive ones: [0, 1, 2, 7, 8] -> [(0, 3), (7, 2)]."""
    out: list[tuple[int, int]] = []
    for k in ks:
        if out and out[-1][0] + out[-1][1] == k:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((k, 1))
    return out


def plan_table(job: BalanceJob, names: Sequence[str]) -> str:
    """The plan as printed before writing: per stage, real, generated in the plan, already there, to write now."""
    p = job.plan
    head = ("stage", "real", "generated", "total", "there", "to write")
    lines = []
    for s, folder in enumerate(p.folders):
        there = p.generate[s] - len(job.missing[s])
        lines.append((f"{s} {folder}", f"{p.real[s]:,}", f"{p.generate[s]:,}", f"{p.real[s] + p.generate[s]:,}", f"{there:,}", f"{len(job.missing[s]):,}"))
    lines.append(("all", f"{sum(p.real):,}", f"{p.total:,}", f"{sum(p.real) + p.total:,}", f"{p.total - job.to_write:,}", f"{job.to_write:,}"))
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
    fmt = lambda r: "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(head), *map(fmt, lines)])


def write_job(gen, job: BalanceJob, *, seed: int, noise_version: int, model_sha256: str, batch_size: int | None = None,
              writers: int | None = None, overwrite: bool = False, on_written: Callable[[int], None] | None = None) -> int:
    """Write the missing images of ``job`` with ``gen`` and update the manifest; returns how many were written.

    Planned names are checked first (refused if one exists and is not in the manifest, unless
    ``overwrite``) and the output folder is locked. Each batch's rows are added to the manifest before
    its files are written (:class:`~cgan.runtime.manifest.ManifestLog`), so no generated file is ever
    unlisted, even after ``kill -9``; at the end, or after a failure or an interrupt, the manifest is
    rewritten to list exactly the files that exist (each appears whole or not at all), so the next run
    writes only the rest.
    """
    from .outputs import check_free, locked_folders, refuse_if_in_use
    from .writers import PngWriter, disclaimer_text, image_name, index_digits, prepare_dirs

    out = job.out
    folders = [out / f for f in job.plan.folders]
    digits = index_digits(max((n - 1 for n in job.plan.generate), default=0))
    names = {s: [image_name(s, seed, k, digits=digits) for k in ks] for s, ks in enumerate(job.missing) if ks}

    def planned() -> dict:
        files: dict[Path, list[str]] = {}
        for s, ns in names.items():
            files.setdefault(folders[s], []).extend(ns)
        return files

    refuse_if_in_use(out)  # another run's files are not ones to --overwrite
    check_free(planned(), overwrite=overwrite)
    made = [f for f in dict.fromkeys([out, *folders]) if not f.exists()]
    written: list[ManifestRow] = []
    try:
        with locked_folders([out], "cgan-run --balance", clean=folders):
            check_free(planned(), overwrite=overwrite)  # again, now that no other run can write here
            if read_manifest(job.manifest) != list(job.listed):
                raise OutputError(f"{job.manifest} changed while this run was planning; run it again")
            prepare_dirs([folders[s] for s in names])
            info = gen.info
            bs = batch_size or gen.default_batch_size
            text = {**disclaimer_text(), "cgan.model": gen.path.name, "cgan.training_data": gen.training_data,
                    "cgan.seed": str(seed), "cgan.noise_version": str(noise_version)}
            fresh = not os.path.lexists(job.manifest)
            log = ManifestLog(job.manifest, job.rows)
            png = PngWriter(workers=writers, text=text, on_written=on_written)
            try:
                for s, ks in enumerate(job.missing):
                    for k0, n in runs(ks):
                        for batch in gen.batches(s, n, seed=seed, start=k0, batch_size=bs, noise_version=noise_version):
                            b = len(batch.images)
                            ks_now = range(batch.start, batch.start + b)
                            paths = [folders[s] / image_name(s, seed, k, digits=digits) for k in ks_now]
                            try:
                                log.add(ManifestRow(stage=s, k=k, file=p.relative_to(out).as_posix(), model_sha256=model_sha256,
                                                    seed=seed, noise_version=noise_version) for k, p in zip(ks_now, paths))
                            except DiskFullError:  # no room to list the batch: its first image is the one that failed
                                raise disk_full(paths[0]) from None
                            png.submit(gen.to_uint8(batch.images), paths, {"cgan.stage": f"{s} {info.stage_names[s]}"})
                png.close()
            except BaseException:
                png.close(cancel=True)
                written = _completed(job, names, folders, seed, noise_version, model_sha256)
                with contextlib.suppress(OSError, CganError):  # the first failure (it names the image) is the one reported
                    log.finish([*job.rows, *written])
                    if fresh and not job.rows and not written:  # a run that wrote nothing leaves no manifest
                        os.unlink(job.manifest)
                raise
            written = _completed(job, names, folders, seed, noise_version, model_sha256)
            log.finish([*job.rows, *written])
    except BaseException:
        for folder in reversed(made):  # a run that wrote nothing leaves no empty folder it made
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    return len(written)


def _completed(job: BalanceJob, names: dict, folders: list, seed: int, noise_version: int, sha: str) -> list[ManifestRow]:
    """Rows for the planned files that now exist (all of them after a success; the finished ones after a failure)."""
    rows = []
    for s, ns in names.items():
        folder = folders[s]
        try:
            present = set(os.listdir(folder))
        except OSError:
            continue
        for k, name in zip(job.missing[s], ns):
            if name in present:
                rel = (folder / name).relative_to(job.out).as_posix()
                rows.append(ManifestRow(stage=s, k=k, file=rel, model_sha256=sha, seed=seed, noise_version=noise_version))
    return rows


def run_balance(gen, data: Path, out: Path, *, seed: int, noise_version: int, ratio=None, target=None,
                stages: Optional[Sequence[int]] = None, batch_size: Optional[int] = None, writers: Optional[int] = None,
                overwrite: bool = False, echo: Callable[[str], None] = print, progress=None) -> str:
    """``cgan-run --balance``: plan, print the plan, write the missing images. Returns the summary line.

    ``progress(total)``, where given, is a context manager yielding ``advance(count)`` (called from the
    writer threads) for runs of more than one batch."""
    from .writers import min_png_bytes

    sha = sha256_file(gen.path)
    info = gen.info
    shape = (info.img_size, info.img_size) + ((info.channels,) if info.channels > 1 else ())
    job = plan_job(Path(data), Path(out), model_sha256=sha, seed=seed, noise_version=noise_version, ratio=ratio, target=target,
                   stages=stages, num_classes=info.num_classes, stage_names=info.stage_names, png_bytes=min_png_bytes(shape))
    how = plan_words(job.plan, ratio=ratio, target=target, stages=stages, stage_names=info.stage_names)
    echo(f"balance plan for {job.plan.source} ({how}; seed {seed}, noise version {noise_version}) into {job.out}:")
    echo(plan_table(job, job.plan.folders))
    if job.to_write == 0:
        return (f"nothing to do: {job.out} already holds the {job.plan.total:,} generated images of this plan "
                f"(listed in {job.manifest})")
    started = time.perf_counter()
    with contextlib.ExitStack() as bars:
        advance = bars.enter_context(progress(job.to_write)) if progress is not None and job.to_write > (batch_size or gen.default_batch_size) else None
        n = write_job(gen, job, seed=seed, noise_version=noise_version, model_sha256=sha, batch_size=batch_size, writers=writers,
                      overwrite=overwrite, on_written=advance)
    seconds = max(time.perf_counter() - started, 1e-9)
    return (f"wrote {n:,} PNG images to {job.out} in {seconds:.1f} s ({n / seconds:.0f} images/s, {gen.engine}, {gen.provider}); "
            f"{job.manifest} lists all {job.plan.total:,} generated images of the plan")
