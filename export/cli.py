"""``cgan-export``: a generator checkpoint -> a validated ONNX model with metadata and a model card."""

from __future__ import annotations

from typing import Any

import typer

from cgan.runtime.contract import DISCLAIMER, LAST_EXPORT, LAST_GENERATOR
from cgan.runtime.errors import CganError, user_errors_exit
from cgan.runtime.help_style import command_class, page, typer_app
from cgan.train.flags import command

from .options import ExportOptions

app = typer_app("cgan-export", f"Export a dementia-cgan generator checkpoint to ONNX, validated against PyTorch. {DISCLAIMER}")


SUMMARY = "Export a generator checkpoint to ONNX (fp32, fp16 or int8), validated against PyTorch before anything is written."
_HELP = f"{SUMMARY} Default: {LAST_GENERATOR} -> {LAST_EXPORT}.\n\n{DISCLAIMER}\n\n{page('cgan-export')}"
PANELS = {
    "Output": ["out", "card", "overwrite"],
    "Precision and checks": ["opset", "fp16", "int8", "int8_mode", "max_fp32_layers", "tolerance", "weights"],
    "Hugging Face Hub": ["push_to_hub", "private"],
}


def export(**values: Any) -> None:
    """Export a checkpoint to ONNX (see _HELP); its options are :class:`~cgan.export.options.ExportOptions`'s fields."""
    from cgan.runtime.deps import require, require_torch

    options = ExportOptions(**values)
    options.validate()
    checkpoint, out, card, overwrite = options.checkpoint, options.out_path, options.card, options.overwrite
    typer.echo(options.line())
    if options.tolerance is not None and not options.tolerance >= 0:
        raise CganError(f"--tolerance must be >= 0, got {options.tolerance}")
    from .hub import check_push_ready

    if options.push_to_hub:
        check_push_ready(options.push_to_hub)  # before the export, so an impossible push costs nothing
    int8 = dict(mode=options.int8_mode, model_card=card, overwrite=overwrite, max_fp32_layers=options.max_fp32_layers,
                log=typer.echo)
    if options.int8 and (checkpoint.suffix.lower() == ".onnx" or str(checkpoint) == "default"):
        require("onnx", command="cgan-export", extra="export")
        from .int8_export import export_int8

        _finish(export_int8(str(checkpoint), out, **int8), options)
        return
    require_torch("cgan-export", extra="export")
    require("onnx", command="cgan-export", extra="export")
    require("onnxscript", command="cgan-export", extra="export")
    from .onnx_export import check_opset

    check_opset(options.opset)

    if options.int8:
        from .int8_export import export_int8

        report = export_int8(checkpoint, out, **int8, opset=options.opset, tolerance=options.tolerance,
                             weights=options.weights)
    else:
        from .api import export_checkpoint

        report = export_checkpoint(
            checkpoint, out, opset=options.opset, fp16=options.fp16, tolerance=options.tolerance, model_card=card,
            overwrite=overwrite, weights=options.weights, log=typer.echo,
        )
    _finish(report, options)


app.command(help=_HELP, cls=command_class(PANELS))(user_errors_exit(command(export, ExportOptions)))


def _finish(report, options: ExportOptions) -> None:
    from .hub import push_to_hub as push

    if report.card_path is not None:
        typer.echo(f"model card: {report.card_path}")
    typer.echo(report.summary())
    if options.push_to_hub:
        url = push(options.push_to_hub, report.path, report.card_path, private=options.private)
        typer.echo(f"pushed to {url}")


def main() -> None:
    app()
