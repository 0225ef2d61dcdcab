"""User-facing errors and the one place that turns them into a CLI exit.

Library code raises :class:`CganError` (or a subclass) with a message that says what was wrong and
what to do; only the command-line entry points turn it into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class CganError(Exception):
    """A user mistake or an unusable input: printed as one line, never as a traceback."""


class ModelError(CganError):
    """A model file that is missing, unreadable or breaks the model contract."""


class StageError(CganError, ValueError):
    """A stage number or name that the model does not have."""


class OutputError(CganError):
    """An output location that cannot be used: unwritable, full, in use by another run, or holding files we would overwrite."""


class DiskFullError(OutputError):
    """No space left where a file was being written (raised instead of the bare OSError, naming the file)."""


def check_least(option: str, value: int | float | None, least: int) -> None:
    """A number given to ``option`` below ``least`` is a :class:`CganError` naming it (None: not given)."""
    if value is not None and value < least:
        raise CganError(f"{option} must be {'>= 0' if least == 0 else f'at least {least}'}, got {value}")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-blank line of ``exc``'s message, stripped and cut to ``limit`` characters (its type
    name when the message is empty): how a library's multi-line exception is quoted inside our one-line errors."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


def user_errors_exit(func: F) -> F:
    """Decorate a CLI command: a :class:`CganError` becomes ``error: <message>`` and exit code 1; stdout and
    stderr that cannot be written drop the messages, never the work (:mod:`.streams`)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .streams import forgiving_streams

        with forgiving_streams():  # a closed stdout or stderr (`>&-`, `| head -1`) never stops the work
            try:
                return func(*args, **kwargs)
            except CganError as exc:
                print(f"error: {exc}", file=sys.stderr)
                raise SystemExit(1) from None
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
