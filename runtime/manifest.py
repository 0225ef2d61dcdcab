"""``generated.csv``: which files of a folder are generated, and everything needed to make each again.

One row per generated image: ``file`` (relative to the folder holding the manifest, ``/``-separated),
``stage`` (the stage index), ``model_sha256`` (of the ``.onnx`` file), ``seed``, ``k`` (the image
index) and ``noise_version``. With those and the model, image k is regenerated exactly
(:func:`regenerate`), or excluded from a training set by its name.

While a run writes (:class:`ManifestLog`), each batch's rows are appended and synced *before* its
files are written, so a generated file is never unlisted, even after ``kill -9``; at the end (or after
a failure or an interrupt) the file is replaced whole (written under a temporary name, then renamed)
with the rows whose files exist. After a ``kill -9`` it may list a few files that were never written,
and its last line may be cut short; readers skip both, and the next run makes it exact again.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import OutputError
from .fileio import atomic_write_text, sha256_file

MANIFEST_NAME = "generated.csv"
FIELDS = ("file", "stage", "model_sha256", "seed", "k", "noise_version")


@dataclass(frozen=True, order=True)
class ManifestRow:
    """One generated image: where it is and how to make it again."""

    stage: int
    k: int
    file: str
    model_sha256: str
    seed: int
    noise_version: int


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """The rows of a manifest file; [] if there is none. A file that is not a manifest is refused, naming the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (as some editors save CSV) is not part of a column name
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read the manifest {path} ({getattr(exc, 'strerror', None) or exc})") from None
    import csv

    if text and not text.endswith("\n"):  # an append cut short by kill -9 or a full disk: its row is dropped
        head, _, last = text.rpartition("\n")
        if _row_fields(last) is None:  # (a complete last row without its newline, as an editor may save it, is kept)
            text = head + "\n" if head else ""
    reader = csv.DictReader(io.StringIO(text))
    try:
        return _rows(path, reader)
    except csv.Error as exc:  # a NUL, a field beyond csv's size limit, a broken quote
        raise OutputError(f"{path} holds a line that is not a manifest row ({exc}); fix or remove the file") from None


def _rows(path: Path, reader) -> list[ManifestRow]:
    if tuple(reader.fieldnames or ()) != FIELDS:
        raise OutputError(
            f"{path} is not a manifest of generated images (expected the columns {','.join(FIELDS)}); "
            "move it away or choose another --out"
        )
    rows = []
    for line, rec in enumerate(reader, start=2):
        try:
            rows.append(ManifestRow(
                stage=int(rec["stage"]), k=int(rec["k"]), file=rec["file"], model_sha256=rec["model_sha256"],
                seed=int(rec["seed"]), noise_version=int(rec["noise_version"]),
            ))  # fmt: skip
        except (TypeError, ValueError):
            raise OutputError(f"{path}, line {line}: expected whole numbers in stage, seed, k and noise_version; fix or remove the file") from None
        problem = file_problem(rows[-1].file)
        if problem:
            raise OutputError(f"{path}, line {line}: file {rows[-1].file!r} {problem}; fix or remove the file")
    return rows


def file_problem(rel: str) -> str:
    """What is wrong with a manifest's ``file`` value ('' if nothing): it must be a plain relative path
    (``/``-separated names, no ``..``, no control characters), as the writer records it."""
    if not rel:
        return "is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        return "holds control characters"
    if rel.startswith("/") or "\\" in rel or (len(rel) > 1 and rel[1] == ":"):
        return "is not a relative path inside the folder holding the manifest"
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "is not a plain relative path (no '..', '.' or empty parts)"
    return ""


def _row_fields(line: str) -> list[str] | None:
    """The fields of one manifest line if it is a whole row (numbers where numbers go), else None."""
    import csv

    try:
        (fields,) = list(csv.reader([line]))
    except (ValueError, csv.Error):
        return None
    if len(fields) != len(FIELDS):
        return None
    rec = dict(zip(FIELDS, fields))
    try:
        int(rec["stage"]), int(rec["seed"]), int(rec["k"]), int(rec["noise_version"])
    except ValueError:
        return None
    return fields if len(rec["model_sha256"]) == 64 else None


def _csv(rows: Iterable[ManifestRow], *, header: bool) -> str:
    import csv

    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    if header:
        out.writerow(FIELDS)
    for r in rows:
        out.writerow((r.file, r.stage, r.model_sha256, r.seed, r.k, r.noise_version))
    return buf.getvalue()


def write_manifest(path: str | os.PathLike, rows: Iterable[ManifestRow]) -> None:
    """Replace the manifest at ``path`` with ``rows`` (sorted by stage, then k), atomically."""
    try:
        atomic_write_text(path, _csv(sorted(rows), header=True))
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from None


class ManifestLog:
    """The manifest of a run in progress: :meth:`add` lists rows (appended, then synced) before their
    files are written; :meth:`finish` rewrites it to list exactly ``rows``."""

    def __init__(self, path: str | os.PathLike, rows: Iterable[ManifestRow]) -> None:
        self.path = Path(path)
        write_manifest(self.path, rows)  # exact before the first file: the listed rows whose files exist
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise OutputError(f"cannot write {self.path} ({exc.strerror or exc})") from None

    def add(self, rows: Iterable[ManifestRow]) -> None:
        """List ``rows`` now, durably (one write and one fsync for the batch)."""
        assert self._fd is not None, "ManifestLog.add after finish"
        view = memoryview(_csv(rows, header=False).encode("utf-8"))
        try:
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            from .fileio import _FULL, disk_full

            if exc.errno in _FULL:
                raise disk_full(self.path) from None
            raise OutputError(f"cannot write {self.path} ({exc.strerror or exc})") from None

    def finish(self, rows: Iterable[ManifestRow]) -> None:
        """Replace the manifest with ``rows`` (the files that exist). Without room for a new copy (a full
        disk), the file is shrunk in place instead: the rows are a subset of what it lists."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        rows = sorted(rows)
        try:
            write_manifest(self.path, rows)
        except OutputError:
            _shrink_in_place(self.path, _csv(rows, header=True).encode("utf-8"))


def _shrink_in_place(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        if os.fstat(fd).st_size < len(data):
            raise OutputError(f"cannot write {path}: no space left on its disk")
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def regenerate(row: ManifestRow, gen) -> "object":
    """The uint8 pixels of the image ``row`` lists, made again with ``gen`` (an OnnxGenerator of the same model).

    Refuses a generator whose model file differs from the one the row names.
    """
    sha = sha256_file(gen.path)
    if sha != row.model_sha256:
        raise OutputError(
            f"{row.file} was made by the model with sha256 {row.model_sha256[:12]}..., not {gen.path} ({sha[:12]}...); load that model"
        )
    return gen.generate(row.stage, 1, seed=row.seed, start=row.k, noise_version=row.noise_version)[0]
