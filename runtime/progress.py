"""Progress of a long loop, readable wherever the output goes.

On a terminal: a transient rich bar whose elapsed time and time left stay whole at 80 columns (the
free-text column is the one that gives way). Anywhere else (a pipe, a log file, a cluster job, CI): a
plain line at the first step and then every ``interval`` seconds — done/total, rate, elapsed, time left —
since a bar drawn into a file shows nothing until the end.

    with progress("training", total=5000, unit="step") as bar:
        for ...:
            bar.advance(stats="D 0.69  G 0.71")

Used by cgan-train, cgan-data synth and cgan-eval (torch-free, so the runtime's own commands may use it).
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TextIO

INTERVAL_ENV = "CGAN_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 15.0  # a plain line this often: a few hundred lines for an hours-long run


def interval_s() -> float:
    """Seconds between plain progress lines: ``$CGAN_PROGRESS_INTERVAL`` if it is a positive number, else 15."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, ""))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value > 0 and math.isfinite(value) else DEFAULT_INTERVAL_S


def clock(seconds: float) -> str:
    """``H:MM:SS`` (as rich's columns print it), ``-:--:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _count(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _rate(per_s: float, unit: str) -> str:
    if per_s <= 0:
        return f"- {unit}/s"
    if per_s >= 100:
        return f"{per_s:,.0f} {unit}/s"
    if per_s >= 1:
        return f"{per_s:.2f} {unit}/s"
    return f"{1 / per_s:.1f} s/{unit}"


class Progress:
    """One loop's progress: ``advance()`` after each unit of work, ``update()`` to change the text."""

    def __init__(self, description: str, total: float, *, completed: float = 0, unit: str = "step",
                 mode: str = "plain", stream: Optional[TextIO] = None, interval: Optional[float] = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.description, self.total, self.completed, self.unit = description, float(total), float(completed), unit
        self.mode = mode  # "bar", "plain" or "off"
        self.stats = ""
        self._stream = stream
        self._interval = interval_s() if interval is None else float(interval)
        self._now = now
        self._start = now()
        self._start_done = self.completed  # a resumed loop's rate counts this run's work only
        self._last_line: Optional[float] = None
        self._last_done: Optional[float] = None
        self._bar = None
        self._task = None

    # ------------------------------------------------------------ what a caller uses
    def advance(self, n: float = 1, *, stats: Optional[str] = None) -> None:
        self.completed += n
        if stats is not None:
            self.stats = stats
        if self._bar is not None:
            self._bar.update(self._task, advance=n, stats=self.stats)
        elif self.mode == "plain":
            t = self._now()
            if self._last_line is None or t - self._last_line >= self._interval:
                self._line(t)

    def update(self, *, description: Optional[str] = None, stats: Optional[str] = None) -> None:
        if description is not None:
            self.description = description
        if stats is not None:
            self.stats = stats
        if self._bar is not None:
            self._bar.update(self._task, description=self.description, stats=self.stats)

    def logger(self, fallback: Callable[[str], object]) -> Callable[[str], None]:
        """A log function for the loop's own lines (an epoch's summary): above the bar while it is drawn,
        so the bar never leaves a stale copy in the terminal; through ``fallback`` otherwise."""

        def log(message: str) -> None:
            if self._bar is not None:
                self._bar.console.print(message, markup=False, highlight=False, soft_wrap=True)
            else:
                fallback(message)

        return log

    # ------------------------------------------------------------ figures
    @property
    def elapsed(self) -> float:
        return self._now() - self._start

    def rate(self) -> float:
        """Units per second over this run so far (0 before the first)."""
        elapsed = self.elapsed
        return (self.completed - self._start_done) / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float:
        rate = self.rate()
        return (self.total - self.completed) / rate if rate > 0 else float("nan")

    def line(self) -> str:
        """The plain line: ``training: step 12/300 (4%), 1.93 step/s, elapsed 0:00:06, ETA 0:02:29; stats``."""
        pct = f" ({100 * self.completed / self.total:.0f}%)" if self.total > 0 else ""
        text = (f"{self.description}: {self.unit} {_count(self.completed)}/{_count(self.total)}{pct}, "
                f"{_rate(self.rate(), self.unit)}, elapsed {clock(self.elapsed)}, ETA {clock(self.eta())}")
        return f"{text}; {self.stats}" if self.stats else text

    # ------------------------------------------------------------ life cycle
    def _line(self, t: float) -> None:
        stream = self._stream or sys.stdout
        try:
            print(self.line(), file=stream, flush=True)
        except (BrokenPipeError, ValueError):  # the reader left, or the stream was closed: keep working
            self.mode = "off"
        self._last_line, self._last_done = t, self.completed

    def _open(self) -> None:
        if self.mode == "bar":
            self._bar = _rich_bar(self._stream)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, completed=self.completed, stats="")

    def _close(self, finished: bool) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.mode == "plain" and finished and self._last_done != self.completed and self.completed > self._start_done:
            self._line(self._now())  # where it ended, unless the last line already said so


def _rich_bar(stream: Optional[TextIO]):
    """A rich bar for an 80-column terminal: description, bar, done/total, elapsed, time left, then free text.

    The time columns never wrap or shrink; the free-text column (losses, rates) takes what is left and is
    cut with an ellipsis, so narrowing the terminal costs the statistics first, never the times."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress
    from rich.table import Column

    fixed = lambda: Column(no_wrap=True)  # noqa: E731
    return RichProgress(
        TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", max_width=24)),
        BarColumn(bar_width=16),
        MofNCompleteColumn(table_column=fixed()),
        TimeElapsedColumn(table_column=fixed()),
        TimeRemainingColumn(table_column=fixed()),
        TextColumn("{task.fields[stats]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
        console=Console(file=stream) if stream is not None else Console(),
        transient=True,
        expand=True,
    )


def _is_terminal(stream: Optional[TextIO]) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def progress(description: str, total: float, *, completed: float = 0, unit: str = "step", enabled: bool = True,
             stream: Optional[TextIO] = None, interval: Optional[float] = None) -> Iterator[Progress]:
    """A :class:`Progress` for the ``with`` block: a bar on a terminal, plain lines elsewhere, nothing when
    ``enabled`` is false (``--quiet``, or a process other than the first). ``stream`` defaults to stdout."""
    mode = "off" if not enabled else ("bar" if _is_terminal(stream) else "plain")
    bar = Progress(description, total, completed=completed, unit=unit, mode=mode, stream=stream, interval=interval)
    bar._open()
    finished = False
    try:
        yield bar
        finished = True
    finally:
        bar._close(finished)
