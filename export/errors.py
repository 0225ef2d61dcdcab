"""Export errors: each one a single line that says which input was wrong and what to do."""

from __future__ import annotations

from cgan.runtime.errors import CganError
from cgan.train.store.read import ArchitectureError, CheckpointError  # noqa: F401 - raised while reading the checkpoint to export


class ExportError(CganError):
    """Export could not produce a valid model; nothing was written."""


class OpsetError(ExportError):
    """An ONNX opset outside the range this exporter produces and checks."""


class ValidationError(ExportError):
    """The exported graph does not reproduce the torch Generator within tolerance, or breaks the contract."""
