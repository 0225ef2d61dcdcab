"""``cgan-train``: train the conditional DCGAN (or continue a run with --resume). Torch is imported
only once the command runs, so ``--help`` works without it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from cgan.runtime.contract import DISCLAIMER, OUTPUT_DIR
from cgan.runtime.errors import CganError, user_errors_exit

app = typer.Typer(
    name="cgan-train",
    help=f"Train the stage-conditioned DCGAN on brain-MRI slices. {DISCLAIMER}",
    add_completion=False,
    pretty_exceptions_enable=False,
)


HELP = f"""Train the conditional DCGAN with the original project's defaults (10 epochs, batch 16, Adam
0.5/0.999, lr G 2e-4 / D 5e-5, BCE, DCGAN init, seed 42, 128 px, balanced sampling).

Writes to --out: cDCGAN_generator.pth (the original's format, loadable by its inference code,
plus config and provenance), training_history.csv, loss_curves.png, samples/*.png (one row per
stage, fixed noise), config.json and full checkpoints in checkpoints/ (the last 2 kept).
An --out that already holds checkpoints is refused unless --resume is given.
Multi-GPU / multi-process: launch with torchrun (DDP; NCCL on CUDA, gloo on CPU).

{DISCLAIMER}
"""


@app.command(help=HELP)
@user_errors_exit
def train(
    ctx: typer.Context,
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder: Kaggle OASIS layout (Data/ or its parent), stage0..stageN, or class folders named by --classes (default: the built-in synthetic OASIS-like set, built once and cached)."),
    classes: Optional[str] = typer.Option(None, "--classes", help='Class folders in stage order, e.g. "a,b,c,d".'),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable image instead of skipping it."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoded-image cache (default: $CGAN_CACHE, $XDG_CACHE_HOME/dementia-cgan or ~/.cache/dementia-cgan)."),
    epochs: int = typer.Option(10, "--epochs", help="Epochs in total (an epoch = as many draws as images)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps in total, counting those before --resume."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per step (per process under torchrun)."),
    lr_g: float = typer.Option(2e-4, "--lr-g", help="Generator learning rate (Adam, betas 0.5, 0.999)."),
    lr_d: float = typer.Option(5e-5, "--lr-d", help="Discriminator learning rate."),
    seed: int = typer.Option(42, "--seed", help="Seed for weights, sampling and noise."),
    img_size: int = typer.Option(128, "--img-size", help="Image size, a power of two >= 32."),
    z_dim: int = typer.Option(100, "--z-dim", help="Latent size."),
    width: int = typer.Option(512, "--width", help="Channels of the generator's first block, halved at each upsampling (the original: 512)."),
    disc: str = typer.Option("projection", "--disc", help="Discriminator: projection (the notebook's, spectral norm) or spatial (image + label-map channel)."),
    disc_width: int = typer.Option(64, "--disc-width", help="Channels of the discriminator's first conv, doubled per block (the original: 64); its cost grows with the square."),
    minibatch_std: bool = typer.Option(False, "--minibatch-std/--no-minibatch-std", help="Give the discriminator a channel with the batch's feature spread (ProGAN's minibatch standard deviation), the usual cure for a generator that gives one image per stage; not in the original."),
    balance: bool = typer.Option(True, "--balance/--no-balance", help="Balanced sampling: weight 1/class count per image, draws with replacement."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu or cuda."),
    precision: str = typer.Option("auto", "--precision", help="auto (fp16 autocast + GradScaler on CUDA, fp32 on CPU), fp32, bf16 (autocast) or fp16 (CUDA only)."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="Channels-last (NHWC) memory format for the convolutions: faster on CPU. A resumed run keeps its saved setting."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice)."),
    out: Path = typer.Option(OUTPUT_DIR, "--out", help="Output folder: generator file, checkpoints/, history, plots, samples/, config.json."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest checkpoint, exactly, with its saved config (repeat no flags); only --epochs, --max-steps (to extend it), --device, --threads, --workers, --quiet, --cache-dir, --sample-every, --checkpoint-every and --keep-checkpoints may differ, and the change is recorded in config.json."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from the G and D weights of a checkpoint (ckpt_*.pt) of another run, with fresh optimizers and this run's learning rates: fine-tuning, e.g. at a lower rate. Or a warm start from an exported generator: an fp32 .onnx that cgan-export wrote, or 'default' (the embedded default model); its generator is rebuilt from the file (checked against it in ONNX Runtime) beside a fresh discriminator (see --d-warmup). --max-steps counts this run's steps."),
    ema: bool = typer.Option(False, "--ema", help="Keep an exponential moving average of G's weights and export it."),
    ema_decay: float = typer.Option(0.999, "--ema-decay", help="EMA decay per step."),
    sample_every: int = typer.Option(1, "--sample-every", help="Write a fixed-noise sample grid every N epochs (0: at the end only)."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Write a full checkpoint every N steps (0: only at epoch ends); one is always written at each epoch end and at the end."),
    keep_checkpoints: int = typer.Option(2, "--keep-checkpoints", help="Checkpoints kept in --out/checkpoints."),
    workers: int = typer.Option(0, "--workers", help="Threads gathering batches ahead of the step (0: in the training thread)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar and no per-epoch lines."),
    # issue 15: the compiled step and the discriminator-side levers
    compile: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile the generator and discriminator (the first steps take minutes to compile; losses match eager within float tolerance, not bit for bit). Where compile is unavailable or fails, training continues eagerly after a one-line note."),
    loss: str = typer.Option("bce", "--loss", help="Adversarial loss: bce (the original's) or hinge."),
    diffaugment: str = typer.Option("", "--diffaugment", help='DiffAugment for the discriminator, applied to real and generated images alike: a comma list of color (brightness/contrast), translation (up to 1/8), cutout (a half-side square), e.g. "color,translation,cutout" [default: off]. No flips.'),
    r1: float = typer.Option(0.0, "--r1", help="R1 gradient penalty weight gamma on real images (0: off)."),
    r1_every: int = typer.Option(16, "--r1-every", help="Apply R1 every N discriminator steps, weighted by N (lazy regularisation)."),
    generator: str = typer.Option("dcgan", "--generator", help="Generator: dcgan (the original's layers; loads its checkpoint) or cbn (conditional BatchNorm: every block's scale and shift set by the stage; same inputs and output, so the export, cgan-run and the web page are unchanged)."),
    aux_weight: float = typer.Option(0.0, "--aux-weight", help="AC-GAN: a stage classifier on the (projection) discriminator's features, trained on real images' stages and generated images' asked-for stages; the generator is also scored by it. The weight of its cross-entropy (0: off)."),
    balanced_batches: bool = typer.Option(False, "--balanced-batches/--no-balanced-batches", help="Every batch holds the stages in equal shares (the stages left over take turns when the batch size is not a multiple of their count), instead of the balanced sampler's random mix; each stage's images drawn uniformly with replacement."),
    d_warmup: int = typer.Option(0, "--d-warmup", help="Train the discriminator alone for the first N steps (the generator generates but does not move): for a warm start, whose discriminator is new. Counts toward --max-steps."),
) -> None:
    from cgan.runtime.deps import require_torch

    require_torch("cgan-train")
    from .loop import TrainConfig
    from .loop import train as run_training

    class_list = [c.strip() for c in classes.split(",") if c.strip()] if classes is not None else None
    if classes is not None and not class_list:
        raise CganError(f"--classes {classes!r} names no class; give folder names in stage order, e.g. \"a,b,c,d\"")
    config = TrainConfig(
        data=data, classes=class_list, strict=strict, cache_dir=cache_dir, epochs=epochs, max_steps=max_steps,
        batch_size=batch_size, lr_g=lr_g, lr_d=lr_d, seed=seed, img_size=img_size, z_dim=z_dim, width=width, disc=disc, disc_width=disc_width,
        minibatch_std=minibatch_std,
        balance=balance, device=device, precision=precision, channels_last=channels_last, threads=threads, out=out,
        resume=resume, init_from=init_from, ema=ema, ema_decay=ema_decay, sample_every=sample_every, checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints, workers=workers, quiet=quiet,
        compile=compile, loss=loss, diffaugment=diffaugment, r1=r1, r1_every=r1_every,
        generator=generator, aux_weight=aux_weight, d_warmup=d_warmup, balanced_batches=balanced_batches,
    )
    given = {name for name in ctx.params if _given(ctx, name)}
    result = run_training(config, log=typer.echo, given=given)
    if quiet and os.environ.get("RANK", "0") == "0":
        typer.echo(f"{result.steps} steps; generator {result.generator}")


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether flag ``name`` was set on the command line (or by an environment variable), not left at its default.
    By name: typer 0.28 vendors click, so its ParameterSource is not click's."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def main() -> None:
    app()


if __name__ == "__main__":  # `python -m cgan.train.cli`, e.g. under torchrun
    main()
