"""``cgan-export``: a generator checkpoint -> a validated ONNX model with metadata and a model card."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import typer

from cgan.runtime.contract import DISCLAIMER
from cgan.runtime.errors import CganError, user_errors_exit

DEFAULT_CHECKPOINT = Path("model_output/cDCGAN_generator.pth")
DEFAULT_OUT = Path("model_output/cDCGAN_generator.onnx")
DEFAULT_OUT_FP16 = Path("model_output/cDCGAN_generator_fp16.onnx")

app = typer.Typer(
    name="cgan-export",
    help=f"Export a dementia-cgan generator checkpoint to ONNX, validated against PyTorch. {DISCLAIMER}",
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


_HELP = (
    "Export a generator checkpoint to ONNX, validated against PyTorch before anything is written.\n\n"
    "The model takes z [N, z_dim] float32 and stage [N] int64 and gives image [N, 1, H, W] float32 in [-1, 1], "
    "N dynamic. BatchNorm is folded; the graph is checked with onnx.checker and shape inference, then run in "
    "onnxruntime at batch sizes 1, 7 and 64 on every stage and compared with PyTorch. Only a model within "
    "tolerance is written (atomically), with its metadata and a Hugging Face model card beside it, named after it (gen.onnx -> gen.README.md; "
    "--push-to-hub uploads it as the repository's README.md); "
    "otherwise nothing is written and the command exits 1.\n\n"
    "Default: model_output/cDCGAN_generator.pth -> model_output/cDCGAN_generator.onnx.\n\n"
    + DISCLAIMER
)


@app.command(help=_HELP)
@user_errors_exit
def export(
    checkpoint: Path = typer.Argument(
        DEFAULT_CHECKPOINT,
        help="Generator checkpoint: cgan-train's cDCGAN_generator.pth, a training checkpoint (checkpoints/ckpt_*.pt), "
        "or the original project's cDCGAN_generator.pth. Loaded as weights only, never as pickled code.",
        show_default=True,
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help=f"ONNX file to write (default: {DEFAULT_OUT}, or {DEFAULT_OUT_FP16} with --fp16). The model card goes beside it as <name>.README.md."
    ),
    opset: int = typer.Option(17, "--opset", help="ONNX opset, 17..28 (above 20 needs a recent onnxruntime wherever the model runs)."),
    fp16: bool = typer.Option(False, "--fp16", help="float16 weights and compute, float32 inputs and outputs (for GPUs)."),
    tolerance: Optional[float] = typer.Option(
        None, "--tolerance", help="Max abs difference from PyTorch allowed at validation (default: 1e-4, or 2e-2 with --fp16)."
    ),
    weights: str = typer.Option(
        "auto", "--weights", help="Which generator of a training checkpoint: auto (the EMA copy when there is one), ema or raw."
    ),
    card: bool = typer.Option(True, "--card/--no-card", help="Write the model card beside the model (<name>.README.md)."),
    overwrite: bool = typer.Option(True, "--overwrite/--no-overwrite", help="Replace an existing output file (atomically)."),
    push_to_hub: Optional[str] = typer.Option(
        None, "--push-to-hub", metavar="OWNER/REPO", help="Upload the model and card to this Hugging Face repo (needs a token: `hf auth login`)."
    ),
    private: bool = typer.Option(False, "--private", help="With --push-to-hub: create the repo as private."),
) -> None:
    """Export a checkpoint to ONNX (see _HELP)."""
    from cgan.train._deps import require, require_torch

    out = out or (DEFAULT_OUT_FP16 if fp16 else DEFAULT_OUT)
    config = ExportConfig(str(checkpoint), str(out), opset, "fp16" if fp16 else "fp32", tolerance, card, overwrite, push_to_hub)
    typer.echo(config.line())
    if tolerance is not None and not tolerance >= 0:
        raise CganError(f"--tolerance must be >= 0, got {tolerance}")
    from .hub import check_push_ready, push_to_hub as push

    if push_to_hub:
        check_push_ready(push_to_hub)  # before the export, so an impossible push costs nothing
    require_torch("cgan-export", extra="export")
    require("onnx", command="cgan-export", extra="export")
    require("onnxscript", command="cgan-export", extra="export")
    from .onnx_export import check_opset

    check_opset(opset)

    from .api import export_checkpoint

    report = export_checkpoint(
        checkpoint, out, opset=opset, fp16=fp16, tolerance=tolerance, model_card=card, overwrite=overwrite,
        weights=weights, log=typer.echo,
    )
    if report.card_path is not None:
        typer.echo(f"model card: {report.card_path}")
    typer.echo(report.summary())
    if push_to_hub:
        url = push(push_to_hub, report.path, report.card_path, private=private)
        typer.echo(f"pushed to {url}")


def main() -> None:
    app()
