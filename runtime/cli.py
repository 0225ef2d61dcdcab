"""``cgan-run``: generate stage-conditioned brain-MRI slices from an ONNX model, without torch."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn, Optional, Sequence

from .contract import DISCLAIMER, parse_stages
from .manifest import MANIFEST_NAME
from .noise import NOISE_VERSION, NOISE_VERSIONS
from .errors import CganError, user_errors_exit

DEFAULT_OUT = Path("generated")
GRID_IMAGES = 16  # images per stage on a --grid sheet
PROGRESSION_ROWS = 32  # samples on a --progression sheet


@dataclass(frozen=True)
class RunConfig:
    """Everything a run was asked to do (printed at start, saved in npy sidecars)."""

    model: Optional[str]
    stages: tuple[int, ...]
    n: int
    seed: int
    start: int
    out: str
    layout: str
    format: str
    grid: Optional[str]
    progression: bool
    batch_size: Optional[int]
    provider: str
    threads: Optional[int]
    writers: Optional[int]
    overwrite: bool
    noise_version: int = NOISE_VERSION
    engine: str = "auto"

    def line(self) -> str:
        values = asdict(self)
        values["stages"] = ",".join(map(str, self.stages))
        values["model"] = self.model or "default"
        values["batch_size"] = self.batch_size or "default"
        return "cgan-run " + " ".join(f"{k}={v}" for k, v in values.items() if v is not None)


_HELP = (
    "Generate synthetic brain-MRI slices of chosen dementia stages with an exported dementia-cgan model, "
    "on ONNX Runtime (CPU or GPU; no torch needed).\n\n"
    "Writes --n images per stage as 8-bit grayscale PNGs at the model's size, named "
    "stage{S}_seed{SEED}_{K:08d}.png, into --out (default generated/), or into the four Kaggle OASIS folder "
    "names with --layout oasis. Image K of a (model, seed, stage) never changes: --start K continues a "
    "sequence, so a job split over processes or machines equals one run.\n\n"
    "Model: --model PATH.onnx or hf:OWNER/REPO, hf:OWNER/REPO/FILE, hf:OWNER/REPO@REVISION/FILE (Hugging Face Hub; honours HF_HOME, HF_HUB_CACHE, "
    "HF_HUB_OFFLINE), else model_output/cDCGAN_generator.onnx, else the model shipped with the package. "
    "The model, its training data and the provider are always printed.\n\n"
    "Existing files are never overwritten without --overwrite; every file appears whole or not at all.\n\n"
    + DISCLAIMER
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: <what>`` on stderr and exit code 2, no usage dump.

    The command line is parsed with the standard library rather than typer/click: those cost ~25-30 ms
    of imports on every start (measured with ``python -X importtime``), a tenth of ``cgan-run --n 1``.
    """

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


class _ParagraphHelp(argparse.HelpFormatter):
    """Wraps the description paragraph by paragraph (argparse's default joins them into one)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        return "\n\n".join(textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent) for p in text.split("\n\n"))


def _whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cgan-run", description=_HELP, formatter_class=_ParagraphHelp, allow_abbrev=False)
    opt = parser.add_argument
    opt("--stage", "-s", default="all", metavar="STAGE",
        help="Stage: a number (0-3), a name (case-insensitive: non-demented, very-mild, mild, moderate), a comma list, or all (default).")
    opt("--n", "-n", type=_whole, default=16, metavar="N", help="Images per stage (default 16).")
    opt("--out", "-o", type=Path, default=None, metavar="DIR", help=f"Output folder (default: {DEFAULT_OUT}/).")
    opt("--layout", default="flat", help="flat (default): all files in --out; oasis: one Kaggle OASIS folder per stage (Non Demented, ...).")
    opt("--format", dest="fmt", default="png", metavar="FORMAT",
        help="png (default): one 8-bit PNG per image; npy: one float32 stack (n, 1, H, W) per stage, values -1..1, with a JSON sidecar; none: no image files (with --grid).")
    opt("--grid", type=Path, default=None, metavar="FILE.png", help=f"Also write a labelled contact sheet (PNG): one row per stage, its first {GRID_IMAGES} images.")
    opt("--progression", action="store_true",
        help=f"Contact sheet of the same noise at every stage: one row per sample (first {PROGRESSION_ROWS}), one column per stage (default file: OUT/progression.png).")
    opt("--seed", type=_whole, default=0, help="Seed of the noise sequence (default 0).")
    opt("--start", type=_whole, default=0, metavar="K", help="Index of the first image in the sequence (for split jobs; default 0).")
    opt("--batch-size", "-b", type=_whole, default=None, metavar="B", help="Images per session call (default: 64 on CPU, 256 on GPU).")
    opt("--model", "-m", default=None, metavar="MODEL",
        help="PATH.onnx, or hf:OWNER/REPO with optional @REVISION and /FILE (default: model_output/cDCGAN_generator.onnx, else the embedded model).")
    opt("--provider", default="auto", help="auto (default: CUDA when available, else CPU), cpu, cuda, or any ONNX Runtime provider name.")
    opt("--engine", default="auto", metavar="ENGINE",
        help="onnxruntime, openvino (CPU only; pip install 'dementia-cgan[openvino]'), or auto (default: openvino when it is installed, "
             "the provider is the CPU and --n is at least 512, where it was measured faster; else onnxruntime). The engine is printed.")
    opt("--threads", type=_whole, default=None, help="CPU threads for the model (default: onnxruntime's, one per core).")
    opt("--writers", type=_whole, default=None, help="PNG writer threads (default: one per core, at most 4).")
    opt("--overwrite", action="store_true", help="Replace files that already exist.")
    opt("--noise-version", type=_whole, default=NOISE_VERSION, metavar="V",
        help="Noise contract: 2 (default; portable Philox, the browser page draws the same), or 1 (numpy default_rng, to regenerate images of runs made before version 2).")
    opt("--balance", type=Path, default=None, metavar="DATA",
        help="Balance the dataset folder DATA (OASIS class folders or stage0..stageK, as cgan-train reads): count each stage, print the plan, "
             "then write the generated images that bring every stage to the largest stage's count, in DATA's layout under --out, "
             f"with a manifest {MANIFEST_NAME}. A second run writes only what is missing.")
    opt("--ratio", default=None, metavar="R", help="With --balance: generate floor(R x real) images per stage instead.")
    opt("--target", type=_whole, default=None, metavar="N", help="With --balance: bring every stage to N images (real + generated) instead.")
    opt("--quiet", "-q", action="store_true", help="Only the one line naming the model and provider (on stderr), and errors.")
    opt("--version", action="version", version=f"%(prog)s {_version()}")
    return parser  # fmt: skip


def _version() -> str:
    from . import __version__

    return __version__


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
def run(
    stage: str = "all",
    n: int = 16,
    out: Optional[Path] = None,
    layout: str = "flat",
    fmt: str = "png",
    grid: Optional[Path] = None,
    progression: bool = False,
    seed: int = 0,
    start: int = 0,
    batch_size: Optional[int] = None,
    model: Optional[str] = None,
    provider: str = "auto",
    threads: Optional[int] = None,
    writers: Optional[int] = None,
    overwrite: bool = False,
    noise_version: int = NOISE_VERSION,
    balance: Optional[Path] = None,
    ratio: Optional[str] = None,
    target: Optional[int] = None,
    quiet: bool = False,
    engine: str = "auto",
) -> None:
    """Generate images (see _HELP)."""
    out_dir = out if out is not None else DEFAULT_OUT
    if balance is None and (ratio is not None or target is not None):
        raise CganError("--ratio and --target plan a --balance run; give --balance DATA too")
    if balance is not None:
        _check_balance_args(balance, ratio=ratio, target=target, layout=layout, fmt=fmt, grid=grid, progression=progression, start=start)
    _check_args(n=n, seed=seed, start=start, batch_size=batch_size, threads=threads, writers=writers, layout=layout, fmt=fmt)
    if noise_version not in NOISE_VERSIONS:
        raise CganError(f"unknown --noise-version {noise_version}; expected one of {', '.join(map(str, NOISE_VERSIONS))}")
    if grid is not None and grid.suffix.lower() != ".png":
        raise CganError(f"--grid {grid}: the contact sheet is a PNG; give a file name ending in .png")
    if progression and grid is None:
        grid = out_dir / "progression.png"

    from .api import load
    from .writers import check_layout

    # One image per stage: unpacked fp32 weights start ~60 ms sooner and cost little for so few calls (measured; see SessionSettings).
    images = n if balance is None else _balance_size(balance, ratio=ratio, target=target) if engine == "auto" else None
    gen = load(model, provider=provider, threads=threads, prepack="auto" if n == 1 else True, engine=engine, images=images,
               log=None if quiet else (lambda msg: _echo(msg, err=True)))
    stages = tuple(parse_stages(stage, gen.info.stage_names))
    if balance is not None:
        from .balance import run_balance

        _echo(gen.describe(), err=True)
        if gen.isa_notice:
            _echo(gen.isa_notice, err=True)
        summary = run_balance(
            gen, balance, out_dir, seed=seed, noise_version=noise_version, ratio=ratio, target=target,
            stages=stages if stage != "all" else None, batch_size=batch_size, writers=writers, overwrite=overwrite,
            echo=(lambda msg: None) if quiet else _echo, progress=None if quiet else _progress,
        )  # fmt: skip
        if not quiet:
            _echo(summary)
        return
    check_layout(layout, gen.info.num_classes)
    config = RunConfig(
        model=model or f"{gen.model.kind}:{gen.path}", stages=stages, n=n, seed=seed, start=start, out=str(out_dir), layout=layout, format=fmt,
        grid=str(grid) if grid else None, progression=progression, batch_size=batch_size, provider=provider,
        threads=threads, writers=writers, overwrite=overwrite, noise_version=noise_version, engine=gen.engine,
    )  # fmt: skip
    _echo(gen.describe(), err=True)
    if gen.isa_notice:
        _echo(gen.isa_notice, err=True)
    if not quiet:
        _echo(config.line())
    result = generate_to_disk(gen, config, quiet=quiet)
    if not quiet:
        _echo(result)


def _check_args(*, n: int, seed: int, start: int, batch_size: Optional[int], threads: Optional[int], writers: Optional[int], layout: str, fmt: str) -> None:
    from .writers import FORMATS, LAYOUTS

    if n < 1:
        raise CganError(f"--n must be at least 1, got {n}")
    if seed < 0:
        raise CganError(f"--seed must be >= 0, got {seed}")
    if start < 0:
        raise CganError(f"--start must be >= 0, got {start}")
    if batch_size is not None and batch_size < 1:
        raise CganError(f"--batch-size must be at least 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise CganError(f"--threads must be at least 1, got {threads}")
    if writers is not None and writers < 1:
        raise CganError(f"--writers must be at least 1, got {writers}")
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
    from .outputs import check_free, locked_folders
    from .writers import index_digits, planned_files, prepare_dirs, stack_bytes

    info = gen.info
    out = Path(config.out)
    grid = Path(config.grid) if config.grid else None

    def plan() -> dict:
        files = planned_files(out, layout=config.layout, fmt=config.format, stages=config.stages, seed=config.seed, start=config.start, n=config.n)
        if grid is not None:
            files[grid.parent] = itertools.chain(files.get(grid.parent, ()), [grid.name])
        return files

    folders = list(plan())
    check_free(plan(), overwrite=config.overwrite)
    if config.format == "npy":
        need = stack_bytes(config.n, info.channels, info.img_size) * len(config.stages)
        check_space(out, need, f"{len(config.stages)} npy stack(s) of {config.n:,} images")
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

    from .writers import NpyStackWriter, PngWriter, disclaimer_text, image_name, save_image, stack_name, stage_dir

    info = gen.info
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
    progress = None if quiet or total <= bs else _progress()
    task = progress.add_task("generating", total=total) if progress else None

    def advance(count: int) -> None:
        if progress is not None:
            progress.advance(task, count)

    started = time.perf_counter()
    png = PngWriter(workers=config.writers, text=model_text, on_written=advance) if config.format == "png" else None
    stack: NpyStackWriter | None = None
    try:
        if progress is not None:
            progress.start()
        for s in config.stages:
            folder = stage_dir(out, config.layout, s)
            if config.format == "npy":
                stack = NpyStackWriter(
                    folder / stack_name(s, config.seed, config.start, config.n),
                    (config.n, info.channels, info.img_size, info.img_size),
                    _sidecar(gen, config, s),
                )
            for batch in gen.batches(s, config.n, seed=config.seed, start=config.start, batch_size=bs, noise_version=config.noise_version):
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
    finally:
        if progress is not None:
            progress.stop()
    seconds = time.perf_counter() - started

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
        "run": json.loads(json.dumps(asdict(config))),
        "disclaimer": DISCLAIMER,
    }


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} images/s" if speed else "- images/s")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


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
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(0)
