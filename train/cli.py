"""``cgan-train``: train the conditional DCGAN (or continue a run with --resume). Torch is imported
only once the command runs, so ``--help`` works without it."""

from __future__ import annotations

import os
from typing import Any

import typer

from cgan.runtime.contract import DISCLAIMER
from cgan.runtime.errors import user_errors_exit
from cgan.runtime.help_style import command_class, page, typer_app

from .flags import command, parsed
from .options import TrainConfig

SUMMARY = ("Train the stage-conditioned DCGAN on brain-MRI slices, with the original project's defaults; "
           "--resume continues a run.")
app = typer_app("cgan-train", f"{SUMMARY} {DISCLAIMER}")
HELP = f"{SUMMARY}\n\n{DISCLAIMER}\n\n{page('cgan-train')}"

# --help groups the options (TrainConfig's flag fields) by what they are for; a new flag lands in "Other options"
PANELS = {
    "Data": ["data", "classes", "strict", "cache_dir", "workers"],
    "Length and optimiser": ["epochs", "max_steps", "batch_size", "lr_g", "lr_d", "seed"],
    "Networks": ["img_size", "z_dim", "width", "generator", "disc", "disc_width", "minibatch_std"],
    "Conditioning and stability": ["balance", "balance_power", "balanced_batches", "loss", "diffaugment", "r1", "r1_every", "aux_weight", "aux_head", "reader_weight", "tune",
                                   "tune_blocks", "freeze_bn", "freeze_d", "d_warmup", "ema", "ema_decay"],
    "Device and speed": ["device", "precision", "channels_last", "threads", "compile"],
    "Output and resume": ["out", "resume", "init_from", "sample_every", "checkpoint_every", "keep_checkpoints", "quiet"],
}


def train(ctx: typer.Context, **values: Any) -> None:
    """The command; its options are :class:`~cgan.train.options.TrainConfig`'s flag fields (see :mod:`.flags`)."""
    from cgan.runtime.deps import require_torch

    values = parsed(TrainConfig, values)
    require_torch("cgan-train")
    from .loop.run import train as run_training

    config = TrainConfig(**values)
    given = {name for name in ctx.params if _given(ctx, name)}
    result = run_training(config, log=typer.echo, given=given)
    if config.quiet and os.environ.get("RANK", "0") == "0":
        typer.echo(f"{result.steps} steps; generator {result.generator}")


app.command(help=HELP, cls=command_class(PANELS))(user_errors_exit(command(train, TrainConfig, context=True)))


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether flag ``name`` was set on the command line (or by an environment variable), not left at its default.
    By name: typer 0.28 vendors click, so its ParameterSource is not click's."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def main() -> None:
    app()


if __name__ == "__main__":  # `python -m cgan.train.cli`, e.g. under torchrun
    main()
