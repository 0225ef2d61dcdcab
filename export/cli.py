"""``cgan-export``: a generator checkpoint -> a validated ONNX model with metadata and a model card."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import typer

from cgan.runtime.contract import DISCLAIMER, LAST_EXPORT, LAST_GENERATOR, MODEL_FILE_FP16, MODEL_FILE_INT8, OUTPUT_DIR
from cgan.runtime.errors import CganError, user_errors_exit
from cgan.runtime.help_style import command_class, page, typer_app

DEFAULT_CHECKPOINT = LAST_GENERATOR
DEFAULT_OUT = LAST_EXPORT
DEFAULT_OUT_FP16 = OUTPUT_DIR / MODEL_FILE_FP16
DEFAULT_OUT_INT8 = OUTPUT_DIR / MODEL_FILE_INT8

app = typer_app("cgan-export", f"Export a dementia-cgan generator checkpoint to ONNX, validated against PyTorch. {DISCLAIMER}")


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: str
    out: str
    opset: int
    precision: str
    tolerance: Optional[float]
    card: bool
    overwrite: bool
    push_to_hub: Optional[str]

    def line(self) -> str:
        values = asdict(self)
        if values["tolerance"] is None:
            values["tolerance"] = "default"
        return "cgan-export " + " ".join(f"{k}={v}" for k, v in values.items())


SUMMARY = "Export a generator checkpoint to ONNX (fp32, fp16 or int8), validated against PyTorch before anything is written."
_HELP = f"{SUMMARY} Default: {LAST_GENERATOR} -> {LAST_EXPORT}.\n\n{DISCLAIMER}\n\n{page('cgan-export')}"
PANELS = {
    "Output": ["out", "card", "overwrite"],
    "Precision and checks": ["opset", "fp16", "int8", "int8_mode", "max_fp32_layers", "tolerance", "weights"],
    "Hugging Face Hub": ["push_to_hub", "private"],
}


@app.command(help=_HELP, cls=command_class(PANELS))
@user_errors_exit
def export(
    checkpoint: Path = typer.Argument(
        DEFAULT_CHECKPOINT,
        help="Generator checkpoint: cgan-train's cDCGAN_generator.pth, a training checkpoint (checkpoints/ckpt_*.pt), "
        "or the original project's cDCGAN_generator.pth. Loaded as weights only, never as pickled code. "
        "With --int8 also an fp32 .onnx written by cgan-export, or 'default' for the model embedded in the package "
        "(then torch is not needed).",
        show_default=True,
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help=f"ONNX file to write (default: {DEFAULT_OUT}; {DEFAULT_OUT_FP16} with --fp16; {DEFAULT_OUT_INT8} with --int8). The model card goes beside it as <name>.README.md."
    ),
    opset: int = typer.Option(17, "--opset", help="ONNX opset, 17..28 (above 20 needs a recent onnxruntime wherever the model runs)."),
    fp16: bool = typer.Option(False, "--fp16", help="float16 weights and compute, float32 inputs and outputs (for GPUs)."),
    int8: bool = typer.Option(
        False, "--int8", help="int8 model for CPUs and edge boxes (see --int8-mode); CHECKPOINT may also be an fp32 .onnx from "
        "cgan-export or 'default'. Refused, writing nothing, when any pixel of 256 images per stage is more than 16 grey levels "
        "off the fp32 model, the 99.9th percentile more than 4, PSNR below 40 dB or MAE above 1.5.",
    ),
    int8_mode: str = typer.Option(
        "size", "--int8-mode", help="With --int8: size (int8 weights, float32 activations: 4x smaller, float32 speed) or speed "
        "(int8 weights and activations: int8 kernels, larger error).",
    ),
    max_fp32_layers: int = typer.Option(2, "--max-fp32-layers", help="With --int8: at most this many layers (the costliest, measured) stay fp32."),
    tolerance: Optional[float] = typer.Option(
        None, "--tolerance", help="Max abs difference from PyTorch allowed at validation (default: 1e-4, or 2e-2 with --fp16)."
    ),
    weights: str = typer.Option(
        "auto", "--weights", help="Which generator of a training checkpoint: auto (the EMA copy when there is one), ema or raw."
    ),
    card: bool = typer.Option(True, "--card/--no-card", help="Write the model card beside the model (<name>.README.md)."),
    overwrite: bool = typer.Option(False, "--overwrite/--no-overwrite", help="Replace an existing model file and card (atomically); without it an existing one is refused, as by every other command."),
    push_to_hub: Optional[str] = typer.Option(
        None, "--push-to-hub", metavar="OWNER/REPO", help="Upload the model and card to this Hugging Face repo (needs a token: `hf auth login`)."
    ),
    private: bool = typer.Option(False, "--private", help="With --push-to-hub: create the repo as private."),
) -> None:
    """Export a checkpoint to ONNX (see _HELP)."""
    from cgan.runtime.deps import require, require_torch

    if fp16 and int8:
        raise CganError("--fp16 and --int8 exclude each other; choose one")
    if int8_mode not in ("size", "speed"):
        raise CganError(f"unknown --int8-mode {int8_mode!r}; expected size or speed")
    if max_fp32_layers < 0:
        raise CganError(f"--max-fp32-layers must be >= 0, got {max_fp32_layers}")
    out = out or (DEFAULT_OUT_FP16 if fp16 else DEFAULT_OUT_INT8 if int8 else DEFAULT_OUT)
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"
    config = ExportConfig(str(checkpoint), str(out), opset, precision, tolerance, card, overwrite, push_to_hub)
    typer.echo(config.line())
    if tolerance is not None and not tolerance >= 0:
        raise CganError(f"--tolerance must be >= 0, got {tolerance}")
    from .hub import check_push_ready

    if push_to_hub:
        check_push_ready(push_to_hub)  # before the export, so an impossible push costs nothing
    if int8 and (checkpoint.suffix.lower() == ".onnx" or str(checkpoint) == "default"):
        require("onnx", command="cgan-export", extra="export")
        from .int8_export import export_int8

        _finish(export_int8(str(checkpoint), out, mode=int8_mode, model_card=card, overwrite=overwrite, max_fp32_layers=max_fp32_layers,
                            log=typer.echo), push_to_hub, private)  # fmt: skip
        return
    require_torch("cgan-export", extra="export")
    require("onnx", command="cgan-export", extra="export")
    require("onnxscript", command="cgan-export", extra="export")
    from .onnx_export import check_opset

    check_opset(opset)

    if int8:
        from .int8_export import export_int8

        report = export_int8(
            checkpoint, out, mode=int8_mode, model_card=card, overwrite=overwrite, max_fp32_layers=max_fp32_layers, log=typer.echo,
            opset=opset, tolerance=tolerance, weights=weights,
        )
    else:
        from .api import export_checkpoint

        report = export_checkpoint(
            checkpoint, out, opset=opset, fp16=fp16, tolerance=tolerance, model_card=card, overwrite=overwrite,
            weights=weights, log=typer.echo,
        )
    _finish(report, push_to_hub, private)


def _finish(report, push_to_hub: Optional[str], private: bool) -> None:
    from .hub import push_to_hub as push

    if report.card_path is not None:
        typer.echo(f"model card: {report.card_path}")
    typer.echo(report.summary())
    if push_to_hub:
        url = push(push_to_hub, report.path, report.card_path, private=private)
        typer.echo(f"pushed to {url}")


def main() -> None:
    app()
