"""Where an exported model goes: checked before the slow part, so a bad --out costs nothing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cgan.runtime.contract import MODEL_FILE
from cgan.runtime.errors import OutputError
from cgan.runtime.outputs import check_free, clean_dead_temps

from .card import card_path_for
from .errors import ExportError


def check_output(out: Path, *, overwrite: bool, card: bool = True) -> None:
    """Fail before the slow part if ``out`` (or its card beside it) cannot be written; clear killed runs'
    temporary files."""
    if out.is_dir():
        raise ExportError(f"output {out} is a directory; give a file name such as {out / MODEL_FILE}")
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"output {out} should end in .onnx")
    try:
        check_free({out.parent: [out.name] + ([card_path_for(out).name] if card else [])}, overwrite=overwrite)
    except OutputError as exc:
        raise ExportError(str(exc)) from None
    clean_dead_temps(out.parent)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".probe", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ExportError(f"cannot write to {out.parent} ({exc.strerror or exc}); choose another --out") from None
