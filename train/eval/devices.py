"""The torch device cgan-eval's judges and checkpoints run on, chosen once."""

from __future__ import annotations

import torch

from cgan.runtime.errors import CganError


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise CganError("--device cuda: CUDA is not available (no GPU or a CPU-only torch build); use --device cpu or auto")
        return torch.device("cuda")
    if requested == "cpu":
        return torch.device("cpu")
    raise CganError(f"--device {requested!r} is unknown; choose auto, cpu or cuda")
