"""User-facing errors and the one place that turns them into a CLI exit.

Library code raises :class:`CganError` (or a subclass) with a message that says what was wrong and
what to do; only the command-line entry points turn it into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
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


_interrupted = False


def _on_sigint(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C reached this command, even one that was swallowed on its way.

    A Ctrl-C is a KeyboardInterrupt raised wherever the main thread happens to be, and some code swallows
    it: one that lands while an extension module is being imported (measured here: nilearn importing
    ``xml.etree``'s C part, 2 of 12 interrupted ``cgan-data synth`` runs went on to the end and exit 0).
    The commands remember every Ctrl-C, and the places that publish results ask here first.
    """
    if _interrupted:
        raise KeyboardInterrupt


def _catch_interrupts():
    """Remember each Ctrl-C from now on (see :func:`raise_if_interrupted`); returns the handler to restore,
    or None where nothing was installed: outside the main thread, or where SIGINT is not Python's default
    handler (a job started with Ctrl-C ignored, or an application's own handler)."""
    global _interrupted
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        return None
    _interrupted = False
    signal.signal(signal.SIGINT, _on_sigint)
    return previous


def user_errors_exit(func: F) -> F:
    """Decorate a CLI command: a :class:`CganError` becomes ``error: <message>`` and exit code 1, a Ctrl-C
    ``interrupted`` and exit code 130 (every Ctrl-C is remembered: :func:`raise_if_interrupted`); stdout and
    stderr that cannot be written drop the messages, never the work (:mod:`.streams`)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        global _interrupted
        from .streams import forgiving_streams

        previous = _catch_interrupts()
        try:
            with forgiving_streams():  # a closed stdout or stderr (`>&-`, `| head -1`) never stops the work
                try:
                    return func(*args, **kwargs)
                except CganError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    raise SystemExit(1) from None
                except KeyboardInterrupt:
                    print("interrupted", file=sys.stderr)
                    raise SystemExit(130) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
                _interrupted = False

    return wrapper  # type: ignore[return-value]
