"""A folder of outputs built whole, then moved in file by file: how ``cgan-data synth`` and
``cgan-web build`` write their ``--out`` under cgan-run's rules.

The output folder is locked (:class:`~cgan.runtime.outputs.FolderLock`) for the whole run, and temporary
files and folders of killed runs there are removed first. A non-empty folder is refused without
``--overwrite``. The files are built in a hidden temporary folder inside it
(``.{command}.{pid}.{token}.tmp``, removed by the next run if this one is killed), then moved to their
planned names. The folder itself is never renamed or deleted: a file a user saved in it meanwhile stays,
and a planned name that appeared meanwhile is never replaced without ``--overwrite`` (the move is a hard
link, which fails rather than replace); then nothing of this run is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from .errors import OutputError, raise_if_interrupted
from .fileio import disk_full, is_disk_full, our_temp, temp_name
from .outputs import LOCK_NAME, check_free, locked_folders

_NO_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def user_entries(folder: Path) -> list[str]:
    """What is in ``folder`` apart from a lock file and temporary files of ours (sorted names)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n != LOCK_NAME and not our_temp(n))


class StagedFolder:
    """The temporary folder ``tmp`` inside ``out``; :meth:`publish` moves its files to their places in ``out``."""

    def __init__(self, out: Path, tmp: Path, overwrite: bool) -> None:
        self.out, self.tmp, self.overwrite = out, tmp, overwrite

    def publish(self, relpaths: Iterable[str]) -> None:
        """Move ``tmp/rel`` to ``out/rel`` for each ``rel``, in order (so the last one marks a whole set).

        Without ``overwrite``, a file that exists at a planned name is never replaced: the run is refused
        naming it, and the files this call already moved are removed again. After a Ctrl-C, even one
        swallowed on its way, nothing is moved (KeyboardInterrupt).
        """
        raise_if_interrupted()
        rels = list(relpaths)
        plan: dict[Path, list[str]] = {}
        for rel in rels:
            dest = self.out / rel
            plan.setdefault(dest.parent, []).append(dest.name)
        check_free(plan, overwrite=self.overwrite)  # the user may have saved files here since the start
        moved: list[Path] = []
        made: list[Path] = []
        try:
            for rel in rels:
                src, dest = self.tmp / rel, self.out / rel
                if not dest.parent.is_dir():
                    for parent in reversed([dest.parent, *dest.parent.parents]):
                        if not parent.exists():
                            parent.mkdir()
                            made.append(parent)
                if self.overwrite:
                    os.replace(src, dest)
                else:
                    _move_no_clobber(src, dest)
                moved.append(dest)
        except BaseException as exc:
            if not self.overwrite:  # nothing of a refused or failed run stays (replaced files are gone anyway)
                for dest in reversed(moved):
                    with contextlib.suppress(OSError):
                        dest.unlink()
                for folder in reversed(made):
                    with contextlib.suppress(OSError):
                        folder.rmdir()
            if isinstance(exc, FileExistsError):
                check_free(plan, overwrite=False)  # names what appeared, in the usual words
                raise OutputError(f"{exc.filename} appeared while this run wrote {self.out}; nothing was replaced") from None
            if isinstance(exc, OSError):
                raise as_output_error(exc, self.out) from None
            raise


def _move_no_clobber(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest`` unless ``dest`` exists (FileExistsError), atomically where hard links work."""
    try:
        os.link(src, dest)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(dest):  # a file system without hard links: check, then rename
            raise FileExistsError(errno.EEXIST, "exists", str(dest)) from None
        os.replace(src, dest)
        return
    os.unlink(src)


def as_output_error(exc: OSError, out: Path) -> OutputError:
    """One line for an OSError met while writing ``out``: a full disk, a read-only or unwritable place."""
    where = Path(exc.filename) if getattr(exc, "filename", None) else out
    parts = where.parts
    for i, part in enumerate(parts):  # a file in our temporary folder is named by the place it was going to
        if our_temp(part):
            where = out.joinpath(*parts[i + 1:])
            break
    if is_disk_full(exc, out if out.exists() else out.parent):
        return disk_full(where)
    return OutputError(f"cannot write {where} ({exc.strerror or exc}); choose another --out")


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike, command: str, *, overwrite: bool) -> Iterator[StagedFolder]:
    """Lock ``out`` (creating it), clean what killed runs left there, refuse it if it holds anything
    (unless ``overwrite``), and yield a :class:`StagedFolder` whose temporary folder is removed at exit.
    A folder this call created is removed again if the run fails and leaves it empty."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder")
    made = [p for p in (out, *out.parents) if not p.exists()]
    try:
        with locked_folders([out], command):
            if not overwrite and user_entries(out):
                raise OutputError(f"{out} already exists and is not empty; choose another --out or pass --overwrite")
            tmp = out / temp_name(command.replace(" ", "-"))
            try:
                tmp.mkdir()
            except OSError as exc:
                raise as_output_error(exc, out) from None
            try:
                yield StagedFolder(out, tmp, overwrite)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        for folder in made:  # innermost first: the folders this run created, if they stayed empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
