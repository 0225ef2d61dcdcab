"""``cgan-data``: write the synthetic OASIS-like set, or scan a dataset folder and build its cache."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cgan.runtime.contract import DISCLAIMER
from cgan.runtime.errors import CganError, user_errors_exit
from cgan.runtime.help_style import command_class, page, typer_app

app = typer_app(
    "cgan-data",
    f"Training data: write the synthetic OASIS-like set, or check a dataset folder and build its cache. {DISCLAIMER}",
    no_args_is_help=True,
)
SYNTH_SUMMARY = "Write a synthetic OASIS-like set: axial T1 slices of synthetic subjects built from the MNI template."
SCAN_SUMMARY = "Recognise a dataset's layout, print per-stage counts and skipped files, and build or refresh its cache."
SYNTH_PANELS = {"The set": ["out", "n", "seed", "img_size", "overwrite"], "Speed": ["workers"]}
SCAN_PANELS = {"Dataset": ["data", "classes", "strict"], "Cache": ["img_size", "cache_dir"]}


def _help(summary: str) -> str:
    return f"{summary}\n\n{DISCLAIMER}\n\n{page('cgan-data')}"


@user_errors_exit
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write (must not exist or be empty, unless --overwrite)."),
    n: int = typer.Option(8000, "--n", help="Number of images."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same files, byte for byte."),
    img_size: int = typer.Option(128, "--img-size", help="Image width and height in pixels."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes (default: CPU count, at most 8); does not change the output."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out, replacing the set's files there and an older set's images (other files are kept)."),
) -> None:
    """Write a synthetic OASIS-like set: axial T1 slices of synthetic subjects built from the MNI template.

    Each subject is the MNI ICBM152 2009 template (shipped with nilearn) under its own smooth random
    deformation, pose and contrast, with a stage and a hidden severity that enlarges the ventricles,
    thins the cortex, widens the sulci and shrinks the medial temporal lobe. Layout:
    OUT/<Kaggle OASIS folder>/OAS1_<subject>_MR1_mpr-1_<level>.png (folders 'Non Demented',
    'Very mild Dementia', 'Mild Dementia', 'Moderate Dementia'; several slices per subject: split by
    subject), OUT/labels.csv (subject, stage, level, ground-truth parameters and measured CSF and
    brain fractions per image) and OUT/README.md (with the template's attribution and licence).
    Stage proportions follow OASIS with a floor of 2% per stage (at least min(32, n/4) images).
    Synthetic images: research and education only, not medical images.
    """
    from cgan.runtime.deps import require

    for module in ("scipy", "nilearn"):  # the renderer's and the template's: the train extra, absent from a runtime-only install
        require(module, command="cgan-data synth", extra="train")
    from .synth import make_synthetic_set

    if workers is not None and workers < 1:
        raise CganError(f"--workers must be at least 1, got {workers}")
    make_synthetic_set(out, n=n, seed=seed, img_size=img_size, workers=workers, overwrite=overwrite, log=typer.echo)


@user_errors_exit
def scan(
    data_argument: Optional[Path] = typer.Argument(None, metavar="DATA", show_default=False,
                                                   help="Dataset folder (default: the built-in synthetic set); the same as --data."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder, as DATA (cgan-train's option name)."),
    classes: Optional[str] = typer.Option(None, "--classes", help='Class folders in stage order, e.g. "a,b,c,d" (default: OASIS folders or stage0..stageN).'),
    img_size: int = typer.Option(128, "--img-size", help="Image size the cache holds."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable image instead of skipping it."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache folder (default: $CGAN_CACHE, $XDG_CACHE_HOME/dementia-cgan or ~/.cache/dementia-cgan)."),
) -> None:
    """Recognise a dataset's layout, print per-stage counts and skipped files, and build or refresh its cache.

    Layouts: the Kaggle OASIS folders (in DATA or DATA/Data, case-insensitive), stage0..stageN, or
    any class folders named with --classes. Training with the same --img-size then reads the cache.
    Research and education only; never for clinical diagnosis.
    """
    from .data import load_image_set

    if data_argument is not None and data is not None and data_argument != data:
        raise CganError(f"two dataset folders given ({data_argument} and --data {data}); give one")
    data = data_argument if data_argument is not None else data
    class_list = [c for c in classes.split(",")] if classes is not None else None
    images = load_image_set(data, img_size=img_size, classes=class_list, strict=strict, cache_dir=cache_dir,
                            log=typer.echo)
    counts = images.class_counts()
    width = max(len(n) for n in images.class_names)
    for i, (name, count) in enumerate(zip(images.class_names, counts)):
        typer.echo(f"  stage {i}  {name:<{width}}  {int(count):>8,}")
    typer.echo(f"  total    {'':<{width}}  {len(images.labels):>8,}")
    if images.skipped:
        typer.echo(f"skipped {len(images.skipped)} unreadable file(s):")
        for s in images.skipped:
            typer.echo(f"  {s}")
    if images.cache_path is not None:
        state = "built" if images.rebuilt else "up to date"
        typer.echo(f"cache ({state}): {images.cache_path}")


# --help: the summary; the docstrings' detail is on the command's page (docs/commands/cgan-data.md)
app.command(help=_help(SYNTH_SUMMARY), cls=command_class(SYNTH_PANELS))(synth)
app.command(help=_help(SCAN_SUMMARY), cls=command_class(SCAN_PANELS))(scan)


def main() -> None:
    app()
