"""``cgan-run``: generate stage-conditioned brain-MRI slices from an ONNX model, without torch."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from .contract import DISCLAIMER, parse_stages
from .errors import CganError, check_least, user_errors_exit
from .noise import NOISE_VERSIONS
from .run_options import DEFAULT_OUT, GRID_IMAGES, PROGRESSION_ROWS, RunConfig, RunOptions, build_parser

def _echo(message: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    try:
        print(message, file=stream, flush=True)
    except BrokenPipeError:
        # The reader left (`cgan-run ... | head -1`): the images still matter, the messages go nowhere from now on.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


@user_errors_exit
def run(**options: Any) -> None:
    """Generate images: ``options`` are :class:`RunOptions`' fields (the command line's options)."""
    o = RunOptions(**options)
    out_dir = o.out if o.out is not None else DEFAULT_OUT
    grid = o.grid
    if o.balance is None and (o.ratio is not None or o.target is not None):
        raise CganError("--ratio and --target plan a --balance run; give --balance DATA too")
    if o.balance is not None:
        _check_balance_args(o.balance, ratio=o.ratio, target=o.target, layout=o.layout, fmt=o.format, grid=grid,
                            progression=o.progression, start=o.start)
    _check_args(n=o.n, seed=o.seed, start=o.start, batch_size=o.batch_size, threads=o.threads, writers=o.writers,
                layout=o.layout, fmt=o.format)
    if o.noise_version not in NOISE_VERSIONS:
        raise CganError(f"unknown --noise-version {o.noise_version}; expected one of {', '.join(map(str, NOISE_VERSIONS))}")
    if grid is not None and grid.suffix.lower() != ".png":
        raise CganError(f"--grid {grid}: the contact sheet is a PNG; give a file name ending in .png")
    if grid is not None:
        _check_grid(grid)
    if o.progression and grid is None:
        grid = out_dir / "progression.png"

    from .api import load
    from .writers import check_layout

    # One image per stage: unpacked fp32 weights start ~60 ms sooner and cost little for so few calls (measured; see SessionSettings).
    images = o.n if o.balance is None else _balance_size(o.balance, ratio=o.ratio, target=o.target) if o.engine == "auto" else None
    gen = load(o.model, provider=o.device, threads=o.threads, prepack="auto" if o.n == 1 else True, engine=o.engine, images=images,
               log=None if o.quiet else (lambda msg: _echo(msg, err=True)))
    stages = tuple(parse_stages(o.stage, gen.info.stage_names))
    if o.balance is not None:
        from .balance import run_balance

        _echo(gen.describe(), err=True)
        if gen.isa_notice:
            _echo(gen.isa_notice, err=True)
        summary = run_balance(
            gen, o.balance, out_dir, seed=o.seed, noise_version=o.noise_version, ratio=o.ratio, target=o.target,
            stages=stages if o.stage != "all" else None, batch_size=o.batch_size, writers=o.writers, overwrite=o.overwrite,
            echo=(lambda msg: None) if o.quiet else _echo, progress=None if o.quiet else _progress,
        )  # fmt: skip
        if not o.quiet:
            _echo(summary)
        return
    check_layout(o.layout, gen.info.num_classes)
    config = RunConfig(**{
        **dataclasses.asdict(o), "model": o.model or f"{gen.model.kind}:{gen.path}", "stages": stages, "out": out_dir,
        "grid": grid, "engine": gen.engine,
    })  # fmt: skip
    _echo(gen.describe(), err=True)
    if gen.isa_notice:
        _echo(gen.isa_notice, err=True)
    if not o.quiet:
        _echo(config.line())
    result = generate_to_disk(gen, config, quiet=o.quiet)
    if not o.quiet:
        _echo(result)


def _check_grid(grid: Path) -> None:
    """The contact sheet's own problems, named as --grid's (not --out's)."""
    if grid.is_dir():
        raise CganError(f"--grid {grid} is a folder; give the contact sheet a file name ending in .png")
    for parent in grid.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CganError(f"--grid {grid}: {parent} is a file, not a folder; choose another place for the contact sheet")
            break


def _check_args(*, n: int, seed: int, start: int, batch_size: Optional[int], threads: Optional[int], writers: Optional[int], layout: str, fmt: str) -> None:
    from .session import check_threads
    from .writers import FORMATS, LAYOUTS

    for option, value, least in (("--n", n, 1), ("--seed", seed, 0), ("--start", start, 0), ("--batch-size", batch_size, 1),
                                 ("--threads", threads, 1), ("--writers", writers, 1)):
        check_least(option, value, least)
    check_threads(threads, "--threads")
    check_threads(writers, "--writers")
    if layout not in LAYOUTS:
        raise CganError(f"unknown --layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if fmt not in FORMATS:
        raise CganError(f"unknown --format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _balance_size(data: Path, *, ratio: Optional[str], target: Optional[int]) -> Optional[int]:
    """About how many images a --balance run makes (the whole plan, every stage), so that --engine auto can
    choose as it does for --n; None where the layout needs the model's stage names to be read."""
    from .balance import balance_plan

    try:
        return balance_plan(data, ratio=ratio, target=target).total
    except CganError:
        return None


def _check_balance_args(data: Path, *, ratio: Optional[str], target: Optional[int], layout: str, fmt: str, grid: Optional[Path],
                        progression: bool, start: int) -> None:
    """--balance writes PNGs in the dataset's own layout, its indices continuing from its manifest (checked before the model loads)."""
    from .balance import plan_counts

    plan_counts([0], ratio=ratio, target=target)  # the one-line errors for a bad --ratio or --target
    if not data.is_dir():
        raise CganError(f"--balance {data}: {'not a folder' if data.exists() else 'no such folder'}; "
                        "give a dataset folder (OASIS class folders or stage0..stageK)")
    if layout != "flat":
        raise CganError("--layout does not apply to --balance: it writes the dataset's own layout (its class-folder names)")
    if fmt != "png":
        raise CganError(f"--balance writes PNG images; --format {fmt} does not apply")
    if grid is not None or progression:
        raise CganError("--grid and --progression do not apply to --balance; make a contact sheet with a plain cgan-run")
    if start != 0:
        raise CganError("--start does not apply to --balance: each stage's indices start at 0 and continue from its manifest")


def generate_to_disk(gen, config: RunConfig, *, quiet: bool = False) -> str:
    """Run ``config`` with ``gen`` (an OnnxGenerator): files, sheet, progress. Returns the summary line.

    Every name of the run is planned and checked before anything is written (refused if one exists,
    unless ``overwrite``), the output folder is locked against other runs, and temporary files left by
    killed runs there are removed.
    """
    from .fileio import check_space
    from .outputs import check_free, locked_folders, refuse_if_in_use
    from .writers import PlannedNames, index_digits, min_png_bytes, planned_files, prepare_dirs, stack_bytes

    info = gen.info
    out = Path(config.out)
    grid = Path(config.grid) if config.grid else None

    def plan() -> dict:
        files = planned_files(out, layout=config.layout, fmt=config.format, stages=config.stages, seed=config.seed, start=config.start, n=config.n)
        if grid is not None:
            files.setdefault(grid.parent, PlannedNames()).add([grid.name])
        return files

    folders = list(plan())
    refuse_if_in_use(out)  # another run's files are not ones to --overwrite
    check_free(plan(), overwrite=config.overwrite)
    if config.format == "npy":
        need = stack_bytes(config.n, info.channels, info.img_size) * len(config.stages)
        check_space(out, need, f"{len(config.stages)} npy stack(s) of {config.n:,} images")
    elif config.format == "png":  # a lower bound: refuses at once a run the disk can never hold
        shape = (info.img_size, info.img_size) + ((info.channels,) if info.channels > 1 else ())
        need = min_png_bytes(shape) * config.n * len(config.stages)
        check_space(out, need, f"{config.n * len(config.stages):,} PNG files")
    roots = [out] if config.format != "none" else []
    if grid is not None and (not roots or out.resolve() not in (grid.parent.resolve(), *grid.parent.resolve().parents)):
        roots.append(grid.parent)
    made = [f for f in dict.fromkeys([*roots, *folders]) if not f.exists()]
    try:
        with locked_folders(roots, "cgan-run", clean=folders) as locks:
            for lock in locks:
                if lock.took_over and not quiet:
                    _echo(f"{lock.folder}: took over the lock left by pid {lock.took_over}, which no longer runs", err=True)
            check_free(plan(), overwrite=config.overwrite)  # again, now that no other run can write here
            prepare_dirs(folders)
            return _generate_locked(gen, config, out, grid, index_digits(config.start + config.n - 1), quiet=quiet)
    except BaseException:
        for folder in reversed(made):  # a failed run leaves no empty folder it made
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _generate_locked(gen, config: RunConfig, out: Path, grid: Optional[Path], digits: int, *, quiet: bool) -> str:
    import numpy as np

    from .writers import disclaimer_text, save_image

    bs = config.batch_size or gen.default_batch_size
    total = config.n * len(config.stages)
    keep = min(config.n, PROGRESSION_ROWS if config.progression else GRID_IMAGES) if grid else 0
    kept: dict[int, np.ndarray] = {}
    model_text = {
        **disclaimer_text(),
        "cgan.model": gen.path.name,
        "cgan.training_data": gen.training_data,
        "cgan.seed": str(config.seed),
        "cgan.noise_version": str(config.noise_version),
    }

    # A bar for a single batch would jump from 0 to done; skipping it also keeps rich (~0.1 s of imports
    # measured on the loaded 2-core machine) off the start path of small runs such as `cgan-run --n 1`.
    with contextlib.ExitStack() as stack_of_bars:
        advance = None if quiet or total <= bs else stack_of_bars.enter_context(_progress(total))
        seconds = _write_images(gen, config, out, digits, model_text, keep, kept, advance)

    sheet_note = ""
    if grid is not None:
        save_image(_sheet(gen, config, kept), grid)
        sheet_note = f"; contact sheet {grid}"
    what = {"png": "PNG images", "npy": "images in npy stacks", "none": "images (not saved)"}[config.format]
    where = f" to {out}" + (" (OASIS layout)" if config.layout == "oasis" else "") if config.format != "none" else ""
    return (
        f"wrote {total} {what}{where} in {seconds:.1f} s ({total / seconds:.0f} images/s, batch {bs}, "
        f"{gen.engine}, {gen.provider}){sheet_note}"
    )


def _write_images(gen, config: RunConfig, out: Path, digits: int, model_text: dict, keep: int, kept: dict,
                  progress: Optional[Callable[[int], None]]) -> float:
    """Generate and write every image of the run (keeping the first ``keep`` per stage for a sheet); the seconds it took."""
    import numpy as np

    from .writers import NpyStackWriter, PngWriter, image_name, stack_name, stage_dir

    info = gen.info
    bs = config.batch_size or gen.default_batch_size

    def advance(count: int) -> None:
        if progress is not None:
            progress(count)

    started = time.perf_counter()
    png = PngWriter(workers=config.writers, text=model_text, on_written=advance) if config.format == "png" else None
    stack: NpyStackWriter | None = None
    try:
        # every stage's first batch before the first file: a model broken (NaN) for one stage writes nothing
        batches = {s: gen.batches(s, config.n, seed=config.seed, start=config.start, batch_size=bs,
                                  noise_version=config.noise_version) for s in config.stages}
        first = {s: next(batches[s]) for s in config.stages}
        for s in config.stages:
            folder = stage_dir(out, config.layout, s)
            if config.format == "npy":
                stack = NpyStackWriter(
                    folder / stack_name(s, config.seed, config.start, config.n),
                    (config.n, info.channels, info.img_size, info.img_size),
                    _sidecar(gen, config, s),
                )
            for batch in itertools.chain([first.pop(s)], batches[s]):
                b = len(batch.images)
                offset = batch.start - config.start
                pixels = None
                if png is not None or offset < keep:
                    pixels = gen.to_uint8(batch.images)
                if offset < keep:
                    kept[s] = pixels[: keep - offset] if s not in kept else np.concatenate([kept[s], pixels[: keep - offset]])
                if png is not None:
                    ks = range(batch.start, batch.start + b)
                    png.submit(pixels, [folder / image_name(s, config.seed, k, digits=digits) for k in ks], {"cgan.stage": f"{s} {info.stage_names[s]}"})
                else:
                    if stack is not None:
                        stack.write(offset, batch.images)
                    advance(b)
            if stack is not None:
                stack.finish()
                stack = None
        if png is not None:
            png.close()
            png = None
    except BaseException:
        if png is not None:
            png.close(cancel=True)
        if stack is not None:
            stack.abort()
        raise
    return time.perf_counter() - started


def _sheet(gen, config: RunConfig, kept: dict):
    from .writers import contact_sheet

    names = gen.info.stage_names
    title = f"dementia-cgan, seed {config.seed}: synthetic images, research only"
    if config.progression:
        m = min(len(v) for v in kept.values())
        cells = [[kept[s][i] for s in config.stages] for i in range(m)]
        return contact_sheet(
            cells,
            row_labels=[f"k={config.start + i}" for i in range(m)],
            col_labels=[f"{s}: {names[s]}" for s in config.stages],
            title=title,
        )
    cells = [list(kept[s]) for s in config.stages]
    return contact_sheet(cells, row_labels=[f"{s}: {names[s]}" for s in config.stages], title=title + f", k={config.start}..")


def _sidecar(gen, config: RunConfig, stage: int) -> dict:
    info = gen.info
    return {
        "description": "float32 images [n, channels, H, W] in output_range; row i is image index start + i",
        "stage": stage,
        "stage_name": info.stage_names[stage],
        "seed": config.seed,
        "start": config.start,
        "n": config.n,
        "noise_version": config.noise_version,
        "indices": [config.start, config.start + config.n],
        "model": gen.source,
        "model_info": info.as_dict(),
        "engine": gen.engine,
        "provider": gen.provider,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "run": json.loads(json.dumps(config.record())),
        "disclaimer": DISCLAIMER,
    }


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """Progress of the images written, on stderr: a bar on a terminal; in a pipe or a log file a plain line
    at the start and every ~15 s (``$CGAN_PROGRESS_INTERVAL``), as the other long commands print. Yields
    ``advance(count)``, safe to call from the PNG writer threads."""
    import threading

    from .progress import progress

    lock = threading.Lock()
    with progress("generating", total, unit="image", stream=sys.stderr) as bar:
        def advance(count: int) -> None:
            with lock:
                bar.advance(count, stats=f"{bar.rate():,.0f} images/s" if bar.mode == "bar" else None)

        yield advance


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run; bad input exits non-zero with one line on stderr."""
    run(**vars(build_parser().parse_args(argv)))


def script() -> None:
    """The ``cgan-run`` console script: :func:`main`, then a quick exit once the run succeeded."""
    main()
    _exit_without_teardown()


def _exit_without_teardown() -> None:
    """Exit 0 now, skipping the interpreter's final teardown; return (exit normally) when that is not safe.

    Freeing every module and ONNX Runtime's environment at exit took 25-35 ms here (``import numpy,
    onnxruntime`` alone: ~27 ms), a tenth of ``cgan-run --n 1``; all of it is memory the OS reclaims
    anyway. Everything that can still matter runs first: the atexit handlers (coverage, loggers, the
    test helpers' markers) and the flush of stdout/stderr. Other live threads, or a flush that fails
    (a closed pipe), fall back to the normal exit, which reports them as usual.
    """
    import atexit
    import os
    import threading

    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if run_exitfuncs is None or threading.active_count() > 1:
        return
    run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: the descriptor was closed when the program started (`>&-`)
                stream.flush()
    except (OSError, ValueError):
        return
    os._exit(0)
