"""The standard streams as command-line tools keep them: a closed or abandoned stdout/stderr never stops the work.

``cgan-run >&-`` starts without a stdout, ``2>&-`` without a stderr; ``cgan-run | head -1`` loses its
reader after the first line. As standard Unix tools do, the messages then go nowhere and the work goes
on: the exit code says whether the work was done, not whether its messages were read, and no
traceback is printed about a stream nobody reads. A closed descriptor 1 or 2 is pointed at /dev/null
first, so that no file the command opens can take its number and receive its messages.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Iterator

_GONE = (errno.EPIPE, errno.EBADF, errno.ECONNRESET)


def _devnull_onto(fd: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


class _Forgiving:
    """A text stream that drops what it cannot deliver: once its reader is gone (EPIPE) its descriptor is
    pointed at /dev/null, and the rest of the run's messages, buffered ones included, go there."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def _gone(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            _devnull_onto(self._stream.fileno())

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            self._gone()
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def forgiving_streams() -> Iterator[None]:
    """While a command runs: stdout and stderr that cannot be written (closed at start, or a reader that left)
    swallow its messages instead of stopping it. Restores the streams it replaced when the command ends."""
    saved = {name: getattr(sys, name) for name in ("stdout", "stderr")}
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = saved[name]
        if isinstance(stream, _Forgiving):
            continue
        if stream is None:  # the descriptor was closed when Python started
            if not _open(fd):
                _devnull_onto(fd)
            stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        setattr(sys, name, _Forgiving(stream))
    try:
        yield
    finally:
        for name, stream in saved.items():
            current = getattr(sys, name)
            if isinstance(current, _Forgiving) and not isinstance(stream, _Forgiving):
                current.flush()  # what is still buffered, delivered or dropped here rather than at exit
                setattr(sys, name, stream if stream is not None else current)
