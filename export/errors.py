"""Export errors: each one a single line that says which input was wrong and what to do."""

from __future__ import annotations

from cgan.runtime.errors import CganError


class ExportError(CganError):
    """Export could not produce a valid model; nothing was written."""


class CheckpointError(ExportError):
    """A checkpoint that is missing, unreadable, or would need pickled code to load."""


class ArchitectureError(CheckpointError):
    """A state dict that does not fit the Generator (names the keys or shapes that differ)."""


class OpsetError(ExportError):
    """An ONNX opset outside the range this exporter produces and checks."""


class ValidationError(ExportError):
    """The exported graph does not reproduce the torch Generator within tolerance, or breaks the contract."""
