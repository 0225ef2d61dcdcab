"""Dataset layouts: which folders of a dataset hold which stage (shared by ``cgan-train`` and ``cgan-run --balance``).

Layouts, tried in this order on ``DIR`` and then on ``DIR/Data``:

- explicit classes (``classes=["a", "b", ...]``): one sub-folder per class, in that stage order;
- the Kaggle OASIS layout: the four folders of :data:`cgan.runtime.contract.OASIS_FOLDERS`;
- ``stage0 ... stageK``.

Folder names match case-insensitively (and ignoring spaces, ``_`` and ``-``). Images (PNG, JPEG, BMP,
TIFF) are found recursively in each class folder; hidden files and folders are skipped. Pure Python:
the trainer decodes what :func:`list_images` finds, the runtime only counts it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .contract import OASIS_FOLDERS
from .errors import CganError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


class DataError(CganError):
    """A dataset folder that is missing, unrecognisable, empty or unreadable."""


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.lower())


@dataclass
class Layout:
    """A recognised dataset layout: which kind, the folder holding the class folders, and those folders in stage order."""

    kind: str  # "oasis" | "stages" | "classes"
    root: Path  # the folder holding the class folders
    class_dirs: list[Path]

    @property
    def class_names(self) -> list[str]:
        return [d.name for d in self.class_dirs]


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise DataError(f"cannot read {folder}: {exc.strerror or exc}") from None


def _match(folder: Path, wanted: Sequence[str]) -> tuple[list[Path | None], list[Path]]:
    """Sub-folders of ``folder`` matching ``wanted`` names (normalised), in ``wanted`` order, and all sub-folders."""
    subs = _subdirs(folder)
    by_norm: dict[str, list[Path]] = {}
    for d in subs:
        by_norm.setdefault(_norm(d.name), []).append(d)
    found: list[Path | None] = []
    for name in wanted:
        hits = by_norm.get(_norm(name), [])
        exact = [d for d in hits if d.name == name]
        if len(hits) > 1 and not exact:
            raise DataError(f"{folder} has several folders matching {name!r}: {', '.join(d.name for d in hits)}")
        found.append(exact[0] if exact else hits[0] if hits else None)
    return found, subs


def _candidates(data: Path) -> list[Path]:
    out = [data]
    out += [d for d in _subdirs(data) if d.name.lower() == "data"]
    return out


def find_layout(data: Path, classes: Sequence[str] | None = None, *, flag: str = "--data") -> Layout:
    """Recognise the layout of ``data`` (see the module doc) or raise :class:`DataError` saying what was
    expected; ``flag`` is the option that named the folder, for the messages."""
    data = Path(data).expanduser()
    if not data.exists():
        raise DataError(f"data folder {data} does not exist")
    if not data.is_dir():
        raise DataError(f"{flag} {data} is not a folder; give the folder holding the class folders")
    roots = _candidates(data)
    if classes is not None:
        classes = [c.strip() for c in classes]
        if not classes or any(not c for c in classes):
            raise DataError(f"--classes needs a comma list of folder names, got {classes!r}")
        if len({_norm(c) for c in classes}) != len(classes):
            raise DataError(f"--classes has duplicates: {', '.join(classes)}")
        best: tuple[int, Path, list[Path | None], list[Path]] | None = None
        for root in roots:
            found, subs = _match(root, classes)
            if all(found):
                return Layout("classes", root, [d for d in found if d is not None])
            hits = sum(d is not None for d in found)
            if best is None or hits > best[0]:
                best = (hits, root, found, subs)
        assert best is not None
        _, root, found, subs = best
        missing = [c for c, d in zip(classes, found) if d is None]
        raise DataError(
            f"unknown class folder(s) {', '.join(repr(m) for m in missing)} in {root}; "
            f"found: {_listing(subs)}"
        )
    found_names: list[str] = []
    for root in roots:
        found, subs = _match(root, OASIS_FOLDERS)
        if all(found):
            return Layout("oasis", root, [d for d in found if d is not None])
        if any(found):
            missing = [c for c, d in zip(OASIS_FOLDERS, found) if d is None]
            raise DataError(
                f"{root} looks like the OASIS layout but lacks {', '.join(repr(m) for m in missing)}; "
                f"found: {_listing(subs)} (pass --classes to use other folders)"
            )
        stage_dirs: dict[int, Path] = {}
        for d in subs:
            if m := re.fullmatch(r"stage(\d+)", _norm(d.name)):
                if int(m.group(1)) in stage_dirs:  # `Stage 1` beside `stage1`: one of them would be ignored
                    raise DataError(f"{root} has two folders for stage {int(m.group(1))}: {stage_dirs[int(m.group(1))].name!r} and "
                                    f"{d.name!r}; merge them into one")
                stage_dirs[int(m.group(1))] = d
        if stage_dirs:
            k = max(stage_dirs) + 1
            missing = [f"stage{i}" for i in range(k) if i not in stage_dirs]
            if missing:
                raise DataError(f"{root} has stage folders but lacks {', '.join(missing)}; found: {_listing(subs)}")
            return Layout("stages", root, [stage_dirs[i] for i in range(k)])
        found_names += [d.name for d in subs]
    expected = ", ".join(repr(f) for f in OASIS_FOLDERS)
    raise DataError(
        f"no dataset layout recognised in {data}: expected the Kaggle OASIS folders {expected} "
        f"(in it or in its Data/), or stage0..stage3, or name your class folders with --classes; "
        f"found: {_listing([Path(n) for n in found_names])}"
    )


def _listing(dirs: Sequence[Path]) -> str:
    names = [d.name for d in dirs]
    if not names:
        return "no sub-folders"
    shown = ", ".join(repr(n) for n in names[:12])
    return shown + (f" and {len(names) - 12} more" if len(names) > 12 else "")


def list_images(layout: Layout) -> list[list[Path]]:
    """Image files per class (recursive, sorted; hidden files, non-image extensions and links to nothing skipped).
    A class folder (or a folder in it) that cannot be read is a :class:`DataError`, not an empty class."""
    out = []

    def unreadable(exc: OSError) -> None:
        raise DataError(f"cannot read {exc.filename} ({exc.strerror or exc}); make it readable or move it out of the dataset")

    for d in layout.class_dirs:
        files = []
        for dirpath, dirnames, filenames in os.walk(d, onerror=unreadable):
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
            for name in filenames:
                if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                    path = Path(dirpath) / name
                    if os.path.isfile(path):  # a dangling link is no image
                        files.append(path)
        out.append(sorted(files))
    return out


# the first bytes of each image format read here: a file named *.png that starts otherwise is no image
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")


def looks_like_image(path: Path) -> bool:
    """Whether ``path`` starts as a PNG, JPEG, BMP or TIFF file does (a text file renamed *.png does not)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith(_SIGNATURES)
