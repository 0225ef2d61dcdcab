"""Run a command-line entry point in this process, as its console script would, and keep what it printed."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def call_main(main: Callable[[Sequence[str]], object], args: Sequence[str]) -> CliResult:
    """``main(args)`` with stdout and stderr captured; SystemExit becomes the exit code (0 when it returns)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())
