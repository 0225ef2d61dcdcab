"""The one output guard every writing command shares: plan, refuse, lock, clean.

1. **Plan**: a run names every file it will write before it writes one (folder -> names), and
   :func:`check_free` refuses if any of them exists (unless overwriting), saying how many and the first few.
2. **Lock**: :class:`FolderLock` puts ``.cgan.lock`` (pid, host, command) in the output folder; a second
   run into that folder is refused while the first lives. The lock is an ``flock`` where the platform
   has one (the kernel drops it when the holder dies, even by ``kill -9``), else the file alone, whose
   pid is checked: a lock of a dead process is stale and taken over. The file is removed at exit.
3. **Clean**: :func:`clean_dead_temps` removes the temporary files (see :mod:`cgan.runtime.fileio`) that
   killed processes left in a folder; files of live processes are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .errors import OutputError
from .fileio import os_reason, our_temp

LOCK_NAME = ".cgan.lock"
# The lock is opened without following a symlink at its name, and without waiting on a pipe put there.
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
SHOWN_CLASHES = 3  # existing files named in the refusal


def _hostname() -> str:
    """This machine's name, as written in lock files: ``os.uname`` where it exists (the same name as
    ``socket.gethostname``, without the ~6 ms import of socket on every cgan-run start)."""
    uname = getattr(os, "uname", None)
    if uname is not None:
        return uname().nodename
    import socket

    return socket.gethostname()


# ---------------------------------------------------------------- plan and refuse

def find_existing(files: Mapping[Path, Iterable[str]], *, limit: int = SHOWN_CLASHES) -> tuple[int, list[Path]]:
    """How many planned files already exist, and the first ``limit`` of them. Refuses a path blocked by a
    file where a folder should be, or a folder where a file should be."""
    count, first = 0, []
    for folder, names in files.items():
        for parent in (folder, *folder.parents):
            if parent.exists():
                if not parent.is_dir():
                    raise OutputError(f"cannot write under {parent}: it is a file, not a folder; choose another --out")
                break
        if not folder.is_dir():
            continue
        present = set(os.listdir(folder))  # one listing per folder, not one stat per file
        if not present:
            continue
        if isinstance(names, (set, frozenset)) or getattr(names, "fast_contains", False):
            found = (name for name in sorted(present) if name in names)  # a listing, not a walk over every planned name
        else:
            found = (name for name in names if name in present)
        for name in found:
            if (folder / name).is_dir():
                raise OutputError(f"{folder / name} is a folder where an output file should go; choose another --out")
            count += 1
            if len(first) < limit:
                first.append(folder / name)
    return count, first


def check_free(files: Mapping[Path, Iterable[str]], *, overwrite: bool, flag: str = "--overwrite") -> None:
    """Refuse, naming how many and the first few, if any planned file exists (unless ``overwrite``)."""
    count, first = find_existing(files)
    if count and not overwrite:
        shown = ", ".join(map(str, first)) + (", ..." if count > len(first) else "")
        what = "file this run would write already exists" if count == 1 else f"{count} files this run would write already exist"
        raise OutputError(f"{what} ({shown}); pass {flag} to replace {'it' if count == 1 else 'them'}, or choose another --out")


# ---------------------------------------------------------------- lock

def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def read_lock(path: Path) -> tuple[int, str, str]:
    """(pid, host, command) recorded in a lock file; (0, '', '') if unreadable."""
    try:
        pid, host, command = (path.read_text(encoding="utf-8").split("\n", 2) + ["", ""])[:3]
        return int(pid), host, command.strip()
    except (OSError, ValueError):
        return 0, "", ""


def refuse_if_in_use(folder: str | os.PathLike) -> None:
    """Before a run's own checks of its planned names: a folder whose lock file names a live process on this host
    is in use (by that process), and its files are that run's, not ones to pass --overwrite for."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | _NO_FOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        text = os.read(fd, 4096).decode("utf-8", "replace")
    finally:
        os.close(fd)
    pid, host, command = (text.split("\n", 2) + ["", ""])[:3]
    if pid.strip().isdigit() and host == _hostname() and int(pid) != os.getpid() and pid_alive(int(pid)):
        raise OutputError(f"{folder} is in use by {command.strip() or 'another run'} (pid {int(pid)}); wait for it to finish "
                          f"or choose another --out (if no run is using it, remove {path})")


class FolderLock:
    """An advisory lock on an output folder for one run: ``with FolderLock(folder, "cgan-run"): ...``.

    Raises :class:`OutputError` if another live run holds it. ``took_over`` is the pid of a dead
    holder whose stale lock was replaced (else None).
    """

    def __init__(self, folder: str | os.PathLike, command: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.took_over: int | None = None
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.folder} ({os_reason(self.folder, exc)}); choose another --out") from None
        for attempt in range(40):
            if self._try_once():
                return self
            time.sleep(0.025 * min(attempt, 4))  # another run is between creating and filling its lock, or releasing it
        raise OutputError(f"cannot lock {self.folder}: its lock file {self.path} keeps changing; is another run starting there?")

    def _try_once(self) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: the file and its pid alone
            return self._try_exclusive()
        self._check_not_planted()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o644)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):  # a link, folder or pipe put there since the check
                self._check_not_planted()
            raise OutputError(f"cannot write to {self.folder} ({exc.strerror or exc}); choose another --out") from None
        try:
            self._check_not_planted(fd)
        except BaseException:
            os.close(fd)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self._refuse()
            return False  # the holder vanished between the two steps: try again
        # the file may have been removed (by its releasing holder) between open and flock: lock the one on disk
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        pid, host, _ = read_lock(self.path)
        if pid and pid != os.getpid():
            self.took_over = pid
        self._write(fd)
        self._fd = fd
        return True

    def _check_not_planted(self, fd: int | None = None) -> None:
        """Refuse a lock path that is not a plain file of its own: a symlink (writing the lock would
        truncate whatever it points at), a folder, a pipe or device, or a hard link to another file."""
        try:
            st = os.fstat(fd) if fd is not None else os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutputError(f"cannot read {self.path} ({exc.strerror or exc}); choose another --out") from None
        if stat.S_ISREG(st.st_mode) and st.st_nlink <= 1:
            return
        what = ("a symlink" if stat.S_ISLNK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode)
                else f"a file with {st.st_nlink} hard links" if stat.S_ISREG(st.st_mode) else "not a regular file")
        raise OutputError(f"{self.path} is {what}, not a lock file of ours; nothing was written to it: "
                          "remove it (it is not needed) or choose another --out")

    def _try_exclusive(self) -> bool:  # pragma: no cover - used where fcntl is missing
        self._check_not_planted()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o644)
        except FileExistsError:
            pid, host, _ = read_lock(self.path)
            if host == _hostname() and pid and not pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                self.took_over = pid
                return False
            self._refuse()
            return False
        self._write(fd)
        self._fd = fd
        return True

    def _write(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n{_hostname()}\n{self.command}\n".encode())

    def _refuse(self) -> None:
        pid, host, command = read_lock(self.path)
        if not pid:
            return  # written a moment ago, or being removed: look again
        here = host == _hostname()
        who = f"{command or 'another run'} (pid {pid}{'' if here else ' on ' + host})"
        raise OutputError(
            f"{self.folder} is in use by {who}; wait for it to finish or choose another --out "
            f"(if no run is using it, remove {self.path})"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # before unlocking, so a waiting run locks a fresh file (it re-checks the inode)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def locked_folders(folders: Sequence[Path], command: str, *, clean: Iterable[Path] = ()):
    """Lock ``folders`` (each once, in a fixed order), then remove dead processes' temporary files in
    ``folders`` and ``clean``; yields the locks. Releases everything on exit."""
    with contextlib.ExitStack() as stack:
        locks = [stack.enter_context(FolderLock(f, command)) for f in sorted(dict.fromkeys(Path(f) for f in folders))]
        for folder in dict.fromkeys([*folders, *clean]):
            clean_dead_temps(folder)
        yield locks


# ---------------------------------------------------------------- clean

def clean_dead_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove ``.{name}.{pid}.{token}.tmp*`` files, and such folders (a staged output, see
    :mod:`cgan.runtime.staging`), of processes that no longer run; return what was removed. Only names
    whose token proves they were made by dementia-cgan (:func:`cgan.runtime.fileio.our_temp`) are touched,
    and never through a symlink."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = our_temp(entry.name)
        if not m:
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        if not is_dir and not entry.is_file(follow_symlinks=False):
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or pid_alive(pid):
            continue
        if is_dir:
            import shutil

            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.lexists(entry.path):
                removed.append(Path(entry.path))
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def command_name() -> str:
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
