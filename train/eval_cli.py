"""``cgan-eval``: measure a generator against real images with a reference stage classifier.
Torch is imported only once the command runs, so ``--help`` works without it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cgan.runtime.contract import DISCLAIMER
from cgan.runtime.errors import CganError, user_errors_exit

app = typer.Typer(
    name="cgan-eval",
    help=f"Measure how stage-faithful, realistic and diverse a generator's images are. {DISCLAIMER}",
    add_completion=False,
    pretty_exceptions_enable=False,
)

HELP = (
    "Measure a generator (an .onnx file, hf:OWNER/REPO, or a .pth/.pt checkpoint) against real images. "
    "MODEL defaults to what cgan-run uses: model_output/cDCGAN_generator.onnx (the last export), else the "
    "embedded default model. Real images come from --data (any layout cgan-train reads) or, without it, the "
    "built-in synthetic OASIS-like set.\n\n"
    "A reference stage classifier (a small CNN, images resized to 64 px) is trained on the real images with a "
    "stratified, seeded 20% held-out split and class-balanced sampling, and cached under the data cache "
    "(keyed by dataset and settings) so later runs reuse it; its held-out accuracy is the ceiling. Then --n "
    "images per stage are generated (image k of a stage uses the same noise as cgan-run --seed) and measured: "
    "conditional accuracy (the classifier on generated images, per stage, with the confusion matrix); "
    "Fréchet distance in the classifier's feature space next to the real-vs-real baseline (held-out vs "
    "train, same number of images); diversity (mean pairwise distance within a stage, in feature and pixel "
    "space, generated vs real); and, on the synthetic set, the atrophy markers measured from the images.\n\n"
    "Writes report.json, report.md and samples.png (generated beside real, per stage) to --out, prints the "
    "table and whether the bar of issue 7 is met (conditional accuracy >= 0.8 overall and >= 0.6 per stage, "
    "FD within 3x the baseline, diversity at least half of real, ceiling >= 0.9, n >= 256).\n\n"
    "Why domain metrics and not Inception FID: Inception weights cannot be downloaded in this project's "
    "environment, and a network trained on colour photographs says little about grayscale brain slices; a "
    "classifier trained on the data itself measures what matters here, that each stage looks like that "
    "stage. Inception FID is not offered.\n\n"
    f"{DISCLAIMER}"
)


@app.command(help=HELP)
@user_errors_exit
def evaluate(
    model: Optional[str] = typer.Argument(None, help="Generator: .onnx path, hf:OWNER/REPO or hf:OWNER/REPO/FILE, or a .pth/.pt checkpoint (default: the last export, else the embedded default)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Real images: Kaggle OASIS layout, stage0..stageN, or class folders named by --classes (default: the built-in synthetic set)."),
    classes: Optional[str] = typer.Option(None, "--classes", help='Class folders in stage order, e.g. "a,b,c,d".'),
    n: int = typer.Option(256, "--n", help="Generated images per stage."),
    seed: int = typer.Option(0, "--seed", help="Noise seed for the generated images (and the real subsets)."),
    out: Path = typer.Option(Path("model_output") / "eval", "--out", help="Folder for report.json, report.md and samples.png."),
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="Reference classifier file: used if it exists, else trained and saved there (default: cached under the data cache dir)."),
    retrain: bool = typer.Option(False, "--retrain-classifier", help="Train the reference classifier again even if a cached one exists."),
    classifier_epochs: int = typer.Option(6, "--classifier-epochs", help="Epochs for training the reference classifier."),
    classifier_size: int = typer.Option(64, "--classifier-size", help="Image size the classifier sees (images are resized)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoded-image and classifier cache (default: $CGAN_CACHE, $XDG_CACHE_HOME/dementia-cgan or ~/.cache/dementia-cgan)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu or cuda: for the classifier, checkpoints and the ONNX provider."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch and ONNX Runtime (default: their choice)."),
) -> None:
    from ._deps import require_torch

    require_torch("cgan-eval")
    from .classifier import ClassifierConfig
    from .eval import EvalConfig, bar_lines, calibration_line, evaluate as run_eval, summary_table

    class_list = [c.strip() for c in classes.split(",") if c.strip()] if classes is not None else None
    if classes is not None and not class_list:
        raise CganError(f"--classes {classes!r} names no class; give folder names in stage order, e.g. \"a,b,c,d\"")
    if classifier_size < 8:
        raise CganError(f"--classifier-size must be at least 8, got {classifier_size}")
    if classifier_epochs < 1:
        raise CganError(f"--classifier-epochs must be at least 1, got {classifier_epochs}")
    config = EvalConfig(
        model=model, data=data, classes=class_list, cache_dir=cache_dir, n=n, seed=seed, out=out,
        classifier=classifier, retrain_classifier=retrain, device=device, threads=threads,
        classifier_config=ClassifierConfig(epochs=classifier_epochs, input_size=classifier_size),
    )
    config.validate()
    result = run_eval(config, log=typer.echo)
    report = result.report
    typer.echo("")
    typer.echo(summary_table(report))
    if calibration_line(report):
        typer.echo(calibration_line(report))
    typer.echo("")
    bar = report["passes_bar"]
    typer.echo(f"bar: {'all criteria met' if bar['all_met'] else 'not all criteria met'}")
    for line in bar_lines(report):
        typer.echo(line)
    typer.echo(f"wrote {result.files['json']}, {result.files['markdown']}, {result.files['figure']} "
               f"({report['timing_s']['total']:.0f} s)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
