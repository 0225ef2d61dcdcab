"""Files appear whole or not at all: write to a temporary sibling, then rename.

Every temporary name carries the writer's pid — ``.{name}.{pid}.{token}.tmp[{suffix}]`` — so that a
later run can tell the leftovers of a killed process from a file another live process is writing
(:func:`cgan.runtime.outputs.clean_dead_temps`). The token is 8 random hex digits followed by 8 that
check them against the name and pid (:func:`our_temp`): a later run removes only names that prove they
were made here, never a user's file or folder that merely looks like one (``.holiday.20190704.photos.tmp``). A full disk becomes a :class:`DiskFullError` naming
the file, never a bare ``OSError`` or, for memory maps, a ``SIGBUS``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import zlib
from pathlib import Path
from typing import Iterator

from .errors import DiskFullError

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
# ".{name}.{pid}.{token}.tmp" with an optional suffix after it (".npy", ".pt", ...); see temp_name
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]{16})\.tmp(?:\.[^.]+)?$")


def _temp_check(name: str, pid: str, nonce: str) -> str:
    return f"{zlib.crc32(('cgan-temp' + chr(0) + name + chr(0) + pid + chr(0) + nonce).encode('utf-8', 'surrogateescape')):08x}"


def temp_name(name: str, suffix: str = "", *, pid: int | None = None) -> str:
    """A fresh temporary name for ``name``: ``.{name}.{pid}.{nonce}{check}.tmp{suffix}`` (see :func:`our_temp`)."""
    pid_text = str(os.getpid() if pid is None else pid)
    nonce = os.urandom(4).hex()
    return f".{name}.{pid_text}.{nonce}{_temp_check(name, pid_text, nonce)}.tmp{suffix}"


def our_temp(name: str) -> "re.Match[str] | None":
    """The parts (``name``, ``pid``) of a temporary name made by :func:`temp_name`, or None for any other
    name: a random token must carry its check digits, which a name typed by a user never does by chance."""
    m = TEMP_NAME.match(name)
    if m is None or m["token"][8:] != _temp_check(m["name"], m["pid"], m["token"][:8]):
        return None
    return m


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib  # here, not at the top: cgan-run's start imports this module and rarely hashes

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Free space (for this user) on the file system holding ``folder`` or its nearest existing parent."""
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def os_reason(path: str | os.PathLike, exc: OSError) -> str:
    """Why ``path`` could not be made or written, for a one-line error: the OS's words, except where ``path``
    (or a folder above it) is a symlink that dangles or loops, which the OS calls "File exists"."""
    p = Path(path)
    for link in (p, *p.parents):
        if link.is_symlink():
            try:
                link.stat()
            except OSError as problem:
                target = os.readlink(link)
                if problem.errno == errno.ELOOP:
                    return f"{link} is a symlink that loops (to {target})"
                return f"{link} is a symlink to {target}, which does not exist"
    return exc.strerror or str(exc)


def check_space(folder: str | os.PathLike, need: int, what: str | os.PathLike) -> None:
    """Raise :class:`DiskFullError` if ``folder``'s file system has less than ``need`` bytes free for ``what``."""
    free = free_bytes(folder)
    if free is not None and need > free:
        raise DiskFullError(
            f"not enough space for {what}: it needs {human_bytes(need)} and {Path(folder)} has {human_bytes(free)} free; "
            "free some space or write elsewhere"
        )


def is_disk_full(exc: BaseException, folder: str | os.PathLike | None = None) -> bool:
    """Whether ``exc`` says the disk is full: ENOSPC/EDQUOT/EFBIG, or a writer's error (torch.save raises
    ``RuntimeError … unexpected pos``) while ``folder``'s file system has (almost) nothing left."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    if isinstance(exc, (OSError, RuntimeError)) and folder is not None:
        free = free_bytes(folder)
        return free is not None and free < 64 * 1024
    return False


def disk_full(path: str | os.PathLike) -> DiskFullError:
    """The one-line error for a full disk while writing ``path``."""
    free = free_bytes(Path(path).parent)
    left = f" ({human_bytes(free)} free)" if free is not None else ""
    return DiskFullError(f"cannot write {path}: no space left on its disk{left}; free some space or write elsewhere")


def _create_temp(path: Path, *, keep_suffix: bool = True, mode: int = 0o600) -> tuple[int, Path]:
    """Create a new temporary file beside ``path`` (never an existing name, never through a symlink); the
    target's suffix is kept so that writers choosing a format by extension work on it."""
    for _ in range(100):
        tmp = path.with_name(temp_name(path.name, path.suffix if keep_suffix else ""))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))  # pragma: no cover - 100 clashes of 32 random bits


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file keeps the target's suffix so that writers choosing a format by extension
    (PIL, torch.save, onnx.save) behave as they would on the real name. On any failure it is removed;
    a full disk is re-raised as :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    fd, tmp_path = _create_temp(path)
    os.close(fd)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; the result should read like any other file
        os.replace(tmp_path, path)
    except BaseException as exc:
        full = isinstance(exc, (OSError, RuntimeError)) and is_disk_full(exc, path.parent)
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if full and not isinstance(exc, DiskFullError):
            raise disk_full(path) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` under a temporary name, then rename: the file appears whole or not at all.

    One open, write, close and rename — cheap enough for thousands of small image files. The temporary
    name is fresh for every call (a random token), so concurrent writers never share one.
    """
    path = Path(path)
    try:
        fd, tmp = _create_temp(path, keep_suffix=False, mode=0o644)
    except OSError as exc:
        if exc.errno in _FULL:
            raise disk_full(path) from None
        raise
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _FULL:
            raise disk_full(path) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def preallocated_npy(tmp: str | os.PathLike, dtype, shape: tuple[int, ...], *, target: str | os.PathLike):
    """A writable ``.npy`` memory map at ``tmp`` whose blocks are all allocated up front.

    A memory map over a sparse file dies with ``SIGBUS`` when the disk fills while pages are written;
    here free space is checked first, then the file is preallocated (``posix_fallocate``, or zeros
    written in chunks where the file system has no fallocate), so a full disk is a
    :class:`DiskFullError` naming ``target`` before any image is computed.
    """
    import numpy as np

    tmp, target = Path(tmp), Path(target)
    dtype = np.dtype(dtype)
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize + 4096
    check_space(tmp.parent, need, target)
    try:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)})
            offset = f.tell()
        size = offset + need - 4096
        fd = os.open(tmp, os.O_RDWR)
        try:
            _allocate(fd, offset, size)
        finally:
            os.close(fd)
        return np.memmap(tmp, dtype=dtype, mode="r+", offset=offset, shape=tuple(shape))
    except OSError as exc:
        if exc.errno in _FULL:
            raise disk_full(target) from None
        raise
    except (ValueError, OverflowError) as exc:
        raise DiskFullError(f"cannot write {target}: {exc}") from None


def _allocate(fd: int, start: int, end: int) -> None:
    if end <= start:
        os.ftruncate(fd, end)
        return
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, end)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
                raise
    chunk = b"\0" * (1 << 20)
    os.lseek(fd, start, os.SEEK_SET)
    left = end - start
    while left > 0:
        left -= os.write(fd, chunk[: min(left, len(chunk))])
