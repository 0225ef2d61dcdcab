"""``cgan-eval``: measure a generator against real images with two judges (reference stage networks).
Torch is imported only once the command runs, so ``--help`` works without it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cgan.runtime.contract import DISCLAIMER, EVAL_DIR, LAST_EXPORT
from cgan.runtime.errors import CganError, user_errors_exit
from cgan.runtime.help_style import command_class, page, typer_app
from cgan.train.options import class_list as class_list_of

SUMMARY = ("Measure how stage-faithful, realistic and varied a generator's images are, against real images "
           "and two reference judges.")
app = typer_app("cgan-eval", f"{SUMMARY} {DISCLAIMER}")
HELP = (f"{SUMMARY} MODEL defaults to what cgan-run uses: {LAST_EXPORT}, else the embedded default model. "
        f"--quick: a smoke check of a few minutes, never a verdict.\n\n{DISCLAIMER}\n\n{page('cgan-eval')}")
PANELS = {
    "Model and data": ["model_option", "data", "classes", "group_regex", "holdout", "cache_dir"],
    "Measurement": ["n", "seed", "judges", "judge_epochs", "gate", "margin", "retrain", "quick"],
    "Learning curve (--augment), balance study (--balance-study)": [
        "augment", "balance_study", "ratio", "repeats", "augment_max", "augment_epochs", "augment_judges"],
    "Output and device": ["out", "overwrite", "device", "threads"],
}


@app.command(help=HELP, cls=command_class(PANELS))
@user_errors_exit
def evaluate(
    model: Optional[str] = typer.Argument(None, help="Generator: .onnx path, hf:OWNER/REPO or hf:OWNER/REPO/FILE, or a .pth/.pt checkpoint (default: the last export, else the embedded default)."),
    model_option: Optional[str] = typer.Option(None, "--model", "-m", help="The same as MODEL, as cgan-run takes it."),
    data: Optional[Path] = typer.Option(None, "--data", help="Real images: Kaggle OASIS layout, stage0..stageN, or class folders named by --classes (default: the judge set, synthetic subjects that share none with the set a generator trains on)."),
    classes: Optional[str] = typer.Option(None, "--classes", help='Class folders in stage order, e.g. "a,b,c,d".'),
    n: int = typer.Option(256, "--n", help="Generated images per stage."),
    seed: int = typer.Option(0, "--seed", help="Noise seed for the generated images, the split and the judges."),
    out: Path = typer.Option(EVAL_DIR, "--out", help="Folder for report.json, report.md and samples.png."),
    group_regex: Optional[str] = typer.Option(None, "--group-regex", help="Regular expression whose first group (or whole match) in a file's relative path is its subject (default: OASIS names, OAS1_0001_MR1... -> OAS1_0001)."),
    holdout: float = typer.Option(0.2, "--holdout", help="Share of each stage's subjects held out."),
    judges: str = typer.Option("small,deep", "--judges", help="Judges to use, comma-separated: small, deep."),
    judge_epochs: int = typer.Option(30, "--judge-epochs", help="Epochs a judge trains (one learning-rate cycle; the epoch with the best validation accuracy is kept)."),
    gate: float = typer.Option(0.8, "--gate", help="Competence gate: held-out balanced accuracy a judge needs to give a verdict."),
    margin: float = typer.Option(0.10, "--margin", help="Conditional-accuracy gap between judges that is flagged as a disagreement."),
    retrain: bool = typer.Option(False, "--retrain-judges", help="Train the judges again even if cached ones exist."),
    augment: bool = typer.Option(False, "--augment", help="Run the learning curve (10/25/50/100% of the real subjects; real only / real + generated / generated only)."),
    ratio: Optional[float] = typer.Option(None, "--ratio", help="With --augment: generated images added per real image of a stage (default: a fixed pool, the largest stage's real count, per stage)."),
    repeats: int = typer.Option(3, "--repeats", help="With --augment: seeds per arm and fraction; with --balance-study: draws of training subjects per size (at least 3)."),
    augment_max: int = typer.Option(2000, "--augment-max-per-stage", help="With --augment: most generated images per stage (cost)."),
    augment_epochs: int = typer.Option(8, "--augment-epochs", help="With --augment or --balance-study: epochs of every fit (at most --judge-epochs; an epoch is one pass over the fit side where that is under 2,560 images)."),
    augment_judges: str = typer.Option("small", "--augment-judges", help="With --augment: judge architectures the curve trains (small, deep or small,deep)."),
    balance_study: bool = typer.Option(False, "--balance-study", help="Run the balance study instead of the evaluation: do generated top-ups beat a balanced sampler or a weighted loss?"),
    quick: bool = typer.Option(False, "--quick", help="A smoke check of a few minutes: never a verdict."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the report already in --out."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoded-image and judge cache (default: $CGAN_CACHE, $XDG_CACHE_HOME/dementia-cgan or ~/.cache/dementia-cgan)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu or cuda: for the judges, checkpoints and the ONNX provider."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for torch and ONNX Runtime (1 is fastest for these small networks on a shared CPU)."),
) -> None:
    from cgan.runtime.deps import require_torch
    from cgan.runtime.resolve import one_model

    model = one_model(model, model_option)
    require_torch("cgan-eval")
    from .augment import CurveConfig
    from .evaluate import QUICK_EPOCHS, QUICK_N
    from .evaluate import EvalConfig, evaluate as run_eval
    from .judges import JudgeConfig, default_judges
    from .report import summary

    class_list = class_list_of(classes)
    wanted = [j.strip() for j in judges.split(",") if j.strip()]
    if not wanted or any(j not in ("small", "deep") for j in wanted) or len(set(wanted)) != len(wanted):
        raise CganError(f"--judges {judges!r}: expected small, deep or small,deep")
    if judge_epochs < 1:
        raise CganError(f"--judge-epochs must be at least 1, got {judge_epochs}")
    if not 0.0 <= gate <= 1.0:
        raise CganError(f"--gate must be within 0..1, got {gate}")
    if quick:
        n, judge_epochs = min(n, QUICK_N), min(judge_epochs, QUICK_EPOCHS)
    configs: list[JudgeConfig] = [c for c in default_judges(seed=seed, gate=gate, max_epochs=judge_epochs) if c.arch in wanted]
    archs = tuple(a.strip() for a in augment_judges.split(",") if a.strip())
    if not archs or any(a not in ("small", "deep") for a in archs):
        raise CganError(f"--augment-judges {augment_judges!r}: expected small, deep or small,deep")
    if augment and balance_study:
        raise CganError("--augment and --balance-study are separate runs; give one of them")
    aug = CurveConfig(repeats=repeats, ratio=ratio, max_per_stage=augment_max, epochs=augment_epochs,
                      archs=archs) if augment else None
    if aug is not None:
        aug.validate()
    study = None
    if balance_study:
        from .balance_study import StudyConfig

        study = StudyConfig(repeats=repeats, epochs=augment_epochs)
        study.validate()
    config = EvalConfig(model=model, data=data, classes=class_list, cache_dir=cache_dir, n=n, seed=seed, out=out,
                        judges=configs, retrain=retrain, device=device, threads=threads, group_regex=group_regex,
                        holdout=holdout, margin=margin, augment=aug, quick=quick, overwrite=overwrite,
                        balance_study=study)
    config.validate()
    from .evaluate import check_out

    check_out(out, overwrite=overwrite)
    result = run_eval(config, log=typer.echo)
    typer.echo("")
    if study is not None:
        from .balance_report import study_summary

        typer.echo(study_summary(result.report))
    else:
        typer.echo(summary(result.report))
    typer.echo(f"wrote {', '.join(str(p) for p in result.files.values())} ({result.report['timing_s']['total']:.0f} s)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
