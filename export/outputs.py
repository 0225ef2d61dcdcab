"""Where an exported model goes: checked before the slow part, so a bad --out costs nothing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ExportError


def check_output(out: Path, *, overwrite: bool) -> None:
    """Fail before the slow part if ``out`` cannot be written."""
    if out.is_dir():
        raise ExportError(f"output {out} is a directory; give a file name such as {out / 'cDCGAN_generator.onnx'}")
    if out.exists() and not overwrite:
        raise ExportError(f"output {out} already exists; pass --overwrite to replace it")
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"output {out} should end in .onnx")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".probe", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ExportError(f"cannot write to {out.parent} ({exc.strerror or exc}); choose another --out") from None
