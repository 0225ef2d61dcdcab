"""Optional heavy dependencies, imported only inside the commands that need them."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import CganError


def require(module: str, *, command: str, extra: str) -> ModuleType:
    """Import ``module`` or raise a one-line error naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CganError(
            f"{command} needs {module}, which is not installed; install it with: "
            f"pip install 'dementia-cgan[{extra}]'"
        ) from None


def require_torch(command: str, extra: str = "train") -> ModuleType:
    return require("torch", command=command, extra=extra)
