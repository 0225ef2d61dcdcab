"""cgan-export's options, one dataclass field each: :class:`ExportOptions`. Each field made with
:func:`~cgan.train.flags.flag` carries its command-line name and help, and the command's signature is built
from them (export/cli.py), as cgan-train's is from :class:`~cgan.train.options.TrainConfig`: an option is
written once. Torch-free, so ``cgan-export --help`` works without torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cgan.runtime.contract import LAST_EXPORT, LAST_GENERATOR, MODEL_FILE_FP16, MODEL_FILE_INT8, OUTPUT_DIR
from cgan.runtime.errors import CganError
from cgan.train.flags import flag

DEFAULT_CHECKPOINT = LAST_GENERATOR
DEFAULT_OUT = LAST_EXPORT
DEFAULT_OUT_FP16 = OUTPUT_DIR / MODEL_FILE_FP16
DEFAULT_OUT_INT8 = OUTPUT_DIR / MODEL_FILE_INT8
INT8_MODES = ("size", "speed")


@dataclass(frozen=True)
class ExportOptions:
    """Everything cgan-export is asked to do; a field's name (``max_fp32_layers`` -> ``--max-fp32-layers``),
    default and help are the command's option."""

    checkpoint: Path = flag(DEFAULT_CHECKPOINT, "CHECKPOINT", argument=True,
        help="Generator checkpoint: cgan-train's cDCGAN_generator.pth, a training checkpoint (checkpoints/ckpt_*.pt), "
        "or the original project's cDCGAN_generator.pth. Loaded as weights only, never as pickled code. "
        "With --int8 also an fp32 .onnx written by cgan-export, or 'default' for the model embedded in the package "
        "(then torch is not needed).")
    out: Optional[Path] = flag(None, "--out",
        help=f"ONNX file to write (default: {DEFAULT_OUT}; {DEFAULT_OUT_FP16} with --fp16; {DEFAULT_OUT_INT8} with --int8). The model card goes beside it as <name>.README.md.")
    opset: int = flag(17, "--opset", help="ONNX opset, 17..28 (above 20 needs a recent onnxruntime wherever the model runs).")
    fp16: bool = flag(False, "--fp16", help="float16 weights and compute, float32 inputs and outputs (for GPUs).")
    int8: bool = flag(False, "--int8",
        help="int8 model for CPUs and edge boxes (see --int8-mode); CHECKPOINT may also be an fp32 .onnx from "
        "cgan-export or 'default'. Refused, writing nothing, when any pixel of 256 images per stage is more than 16 grey levels "
        "off the fp32 model, the 99.9th percentile more than 4, PSNR below 40 dB or MAE above 1.5.")
    int8_mode: str = flag("size", "--int8-mode",
        help="With --int8: size (int8 weights, float32 activations: 4x smaller, float32 speed) or speed "
        "(int8 weights and activations: int8 kernels, larger error).")
    max_fp32_layers: int = flag(2, "--max-fp32-layers", help="With --int8: at most this many layers (the costliest, measured) stay fp32.")
    tolerance: Optional[float] = flag(None, "--tolerance",
        help="Max abs difference from PyTorch allowed at validation (default: 1e-4, or 2e-2 with --fp16).")
    weights: str = flag("auto", "--weights",
        help="Which generator of a training checkpoint: auto (the EMA copy when there is one), ema or raw.")
    card: bool = flag(True, "--card/--no-card", help="Write the model card beside the model (<name>.README.md).")
    overwrite: bool = flag(False, "--overwrite/--no-overwrite",
        help="Replace an existing model file and card (atomically); without it an existing one is refused, as by every other command.")
    push_to_hub: Optional[str] = flag(None, "--push-to-hub", metavar="OWNER/REPO",
        help="Upload the model and card to this Hugging Face repo (needs a token: `hf auth login`).")
    private: bool = flag(False, "--private", help="With --push-to-hub: create the repo as private.")

    def validate(self) -> None:
        """Raise :class:`CganError` (one line naming the option) for settings that cannot work together."""
        if self.fp16 and self.int8:
            raise CganError("--fp16 and --int8 exclude each other; choose one")
        if self.int8_mode not in INT8_MODES:
            raise CganError(f"unknown --int8-mode {self.int8_mode!r}; expected size or speed")
        if self.max_fp32_layers < 0:
            raise CganError(f"--max-fp32-layers must be >= 0, got {self.max_fp32_layers}")

    @property
    def precision(self) -> str:
        return "fp16" if self.fp16 else "int8" if self.int8 else "fp32"

    @property
    def out_path(self) -> Path:
        """``--out``, or the default file of this precision."""
        return self.out or (DEFAULT_OUT_FP16 if self.fp16 else DEFAULT_OUT_INT8 if self.int8 else DEFAULT_OUT)

    def line(self) -> str:
        """The configuration as the command prints it first."""
        values = {"checkpoint": self.checkpoint, "out": self.out_path, "opset": self.opset, "precision": self.precision,
                  "tolerance": "default" if self.tolerance is None else self.tolerance, "card": self.card,
                  "overwrite": self.overwrite, "push_to_hub": self.push_to_hub}
        return "cgan-export " + " ".join(f"{k}={v}" for k, v in values.items())
