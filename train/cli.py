"""``cgan-train``: train the conditional DCGAN (or continue a run with --resume). Torch is imported
only once the command runs, so ``--help`` works without it."""

from __future__ import annotations

import inspect
import os
import typing
from typing import Any

import typer

from cgan.runtime.contract import DISCLAIMER
from cgan.runtime.errors import user_errors_exit
from cgan.runtime.helptext import unwrap

from .options import TrainConfig, options

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


def train(ctx: typer.Context, **values: Any) -> None:
    """The command; its options are :class:`~cgan.train.options.TrainConfig`'s flag fields (see :func:`_signature`)."""
    from cgan.runtime.deps import require_torch

    for f in options():
        parse = f.metadata["cli"]["parse"]
        if parse is not None:
            values[f.name] = parse(values[f.name])
    require_torch("cgan-train")
    from .loop.run import train as run_training

    config = TrainConfig(**values)
    given = {name for name in ctx.params if _given(ctx, name)}
    result = run_training(config, log=typer.echo, given=given)
    if config.quiet and os.environ.get("RANK", "0") == "0":
        typer.echo(f"{result.steps} steps; generator {result.generator}")


def _signature() -> inspect.Signature:
    """``train``'s signature as typer reads it: ``ctx``, then one typer option per flag field of TrainConfig,
    with the field's default, type and help."""
    hints = typing.get_type_hints(TrainConfig)
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for f in options():
        cli = f.metadata["cli"]
        params.append(inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, annotation=cli["type"] or hints[f.name],
            default=typer.Option(f.default, *cli["decls"].split(" "), help=cli["help"]),
        ))
    return inspect.Signature(params)


train.__signature__ = _signature()
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}
app.command(help=unwrap(HELP))(user_errors_exit(train))


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether flag ``name`` was set on the command line (or by an environment variable), not left at its default.
    By name: typer 0.28 vendors click, so its ParameterSource is not click's."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def main() -> None:
    app()


if __name__ == "__main__":  # `python -m cgan.train.cli`, e.g. under torchrun
    main()
