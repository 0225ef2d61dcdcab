"""Worker processes that never outlive the run that started them.

A run killed with ``kill -9`` cannot stop its workers, and a spawned ``ProcessPoolExecutor`` worker
waiting for its next job would wait forever (~180 MB each). So every worker asks the kernel for
SIGKILL when its parent dies (``PR_SET_PDEATHSIG`` on Linux) and, everywhere, runs a watchdog thread
that exits the process once its parent is gone. Workers ignore Ctrl-C: the terminal sends it to the
whole process group, and the parent alone decides (it cancels the queued jobs and reports one line).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Callable, Iterator, Sequence

WATCH_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def _parent_alive(pid: int) -> bool:
    if os.getppid() != pid:  # re-parented: the parent died
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _watch_parent(pid: int) -> None:
    while _parent_alive(pid):
        time.sleep(WATCH_SECONDS)
    os._exit(1)


def exit_with_parent(parent: int) -> None:
    """Make this process end when process ``parent`` ends (call it first thing in a worker)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog alone
            pass
    if not _parent_alive(parent):  # it died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="cgan-parent-watch", daemon=True).start()


def _init_worker(parent: int, initializer: Callable | None, initargs: tuple) -> None:
    exit_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def pool_map(fn: Callable, jobs: Sequence, workers: int, *, initializer: Callable | None = None,
             initargs: tuple = ()) -> Iterator:
    """``map(fn, jobs)`` in order, in up to ``workers`` spawned processes (safe after torch started threads).

    Where spawning cannot work (e.g. a script fed on stdin) the remaining jobs run in this process: the
    output is the same. If the caller stops early (an error, Ctrl-C), queued jobs are cancelled and only
    the running ones are waited for.
    """
    if workers <= 1 or len(jobs) <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, jobs)
        return
    done = 0
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(), initializer, initargs))
    try:
        for result in pool.map(fn, jobs):
            yield result
            done += 1
    except BrokenProcessPool:
        pool.shutdown(wait=True, cancel_futures=True)
        yield from map(fn, jobs[done:])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
