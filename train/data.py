"""Training images: find a dataset's layout, decode every image once into an on-disk uint8 cache.

The layouts (explicit classes, the Kaggle OASIS folders, ``stage0 ... stageK``, in ``DIR`` or
``DIR/Data``) are recognised by :mod:`cgan.runtime.layout`, shared with ``cgan-run --balance``.
Images (PNG, JPEG, BMP, TIFF, any mode, any size) are found recursively in each class folder,
converted to grayscale and resized to a square ``img_size`` (PIL bilinear, which filters when shrinking, as the original's
torchvision ``Resize`` did). Other files are ignored; images that fail to decode are skipped,
counted and named (``strict=True`` raises instead).

The cache (``images-<key>.npy``, memory-mapped, plus ``meta.json``) lives in
``<cache dir>/datasets/<hash of folder, img_size, classes>/``. Its key hashes the source file list
(relative path, size, mtime) and the image size, so a changed dataset is rebuilt; it is written to a
temporary file and renamed, and ``meta.json`` is replaced last, so a killed build never leaves a
cache that is used half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cgan.runtime.contract import OASIS_FOLDERS
from cgan.runtime.errors import DiskFullError
from cgan.runtime.fileio import atomic_path, atomic_write_text, preallocated_npy
# the layout logic lives in the runtime (cgan-run --balance reads the same layouts); re-exported here
from cgan.runtime.layout import IMAGE_EXTENSIONS, DataError, Layout, find_layout, list_images  # noqa: F401
from cgan.runtime.outputs import clean_dead_temps
from cgan.runtime.progress import progress

from . import synth

CACHE_VERSION = "1"
DEFAULT_SYNTH_N = 8000
DEFAULT_SYNTH_SEED = 0

Log = Callable[[str], object]


@dataclass
class ImageSet:
    """Decoded training images and their stage labels."""

    images: np.ndarray  # uint8 [N, H, W], usually a np.memmap of the on-disk cache
    labels: np.ndarray  # int64 [N], stage index
    class_names: list[str]  # folder names in stage order
    description: str
    skipped: list[str] = field(default_factory=list)  # files that failed to decode (relative paths)
    cache_path: Path | None = None  # the .npy the images are mapped from
    rebuilt: bool = False  # whether this call decoded the images (False: read from the cache)
    files: list[str] | None = None  # each image's path relative to the data root (subject ids come from it)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_names)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)


def default_cache_dir() -> Path:
    """``$CGAN_CACHE``, else ``$XDG_CACHE_HOME/dementia-cgan``, else ``~/.cache/dementia-cgan``."""
    if os.environ.get("CGAN_CACHE"):
        return Path(os.environ["CGAN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "dementia-cgan"


# ---------------------------------------------------------------- decoding

def decode_image(path: Path, img_size: int) -> np.ndarray:
    """One image file as uint8 ``[img_size, img_size]`` grayscale. Raises on unreadable files."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            # high bit depth (medical exports): stretch the value range to 0..255 instead of clipping
            a = np.asarray(im, dtype=np.float64)
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
            gray = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")
        elif im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            gray = im.convert("RGBA").convert("L")
        else:
            gray = im.convert("L")
        if gray.size != (img_size, img_size):
            gray = gray.resize((img_size, img_size), Image.Resampling.BILINEAR)
        return np.asarray(gray, dtype=np.uint8)


def _fingerprint(files: Sequence[Sequence[Path]], root: Path, img_size: int, names: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "img_size": img_size, "classes": list(names)}).encode())
    for label, group in enumerate(files):
        for f in group:
            try:
                st = f.stat()
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:  # a broken link: keyed as such, and skipped as unreadable when decoded
                size, mtime = -1, -1
            h.update(f"{label}\0{f.relative_to(root).as_posix()}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()[:24]


def _decode_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _build_cache(entry: Path, key: str, files: list[Path], labels: np.ndarray, img_size: int,
                 root: Path, log: Log) -> tuple[Path, np.ndarray, list[str]]:
    """Decode ``files`` into ``entry/images-<key>.npy``; return its path, the kept labels and the skipped files."""
    entry.mkdir(parents=True, exist_ok=True)
    final = entry / f"images-{key}.npy"
    n = len(files)
    ok = np.zeros(n, dtype=bool)
    errors: dict[int, str] = {}
    clean_dead_temps(entry)
    with atomic_path(final) as tmp:
        arr = _cache_array(tmp, (n, img_size, img_size), final)

        def work(span: range) -> int:
            # PIL releases the GIL while decoding and resizing, so threads decode in parallel
            for i in span:
                try:
                    arr[i] = decode_image(files[i], img_size)
                    ok[i] = True
                except Exception as exc:  # PIL raises many types for broken files; name the file, move on
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    errors[i] = f"{type(exc).__name__}: {first}".rstrip(": ")
            return len(span)

        spans = [range(s, min(s + 64, n)) for s in range(0, n, 64)]
        with progress("decoding images", total=n, unit="image") as bar, ThreadPoolExecutor(_decode_workers()) as pool:
            for done in pool.map(work, spans):
                bar.advance(done)
        if not ok.all():
            kept = np.flatnonzero(ok)
            with atomic_path(tmp) as ctmp:  # the kept images, compacted, then renamed onto tmp
                compact = _cache_array(ctmp, (len(kept), img_size, img_size), final)
                for s in range(0, len(kept), 4096):
                    compact[s : s + 4096] = arr[kept[s : s + 4096]]
                compact.flush()
                del arr, compact
        else:
            arr.flush()
            del arr
    skipped = [f"{files[i].relative_to(root).as_posix()} ({errors[i]})" for i in sorted(errors)]
    return final, labels[ok], skipped


def _cache_array(tmp: Path, shape: tuple[int, ...], final: Path) -> np.ndarray:
    """A preallocated uint8 memory map for the cache (free space checked first: a full disk is one line, not a SIGBUS)."""
    try:
        return preallocated_npy(tmp, np.uint8, shape, target=final)
    except DiskFullError as exc:
        raise DiskFullError(f"{exc} (the image cache: set --cache-dir or $CGAN_CACHE to a disk with room)") from None


def _entry_dir(cache_dir: Path, kind: str, ident: str) -> Path:
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return cache_dir / "datasets" / f"{kind}-{digest}"


def _read_meta(entry: Path) -> dict | None:
    try:
        return json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


STALE_TEMP_S = 3600  # temporary files older than this are leftovers of killed builds


def _prune(entry: Path, keep: Path) -> None:
    """Remove stale cache files beside ``keep``: images of older keys, and temporary files of builds
    killed long ago (recent ones may belong to a build running in another process, e.g. another rank)."""
    now = time.time()
    for f in entry.iterdir():
        try:
            if f == keep or f.name == "meta.json":
                continue
            if f.name.startswith("images-") or (f.name.startswith(".") and now - f.stat().st_mtime > STALE_TEMP_S):
                f.unlink()
        except OSError:
            pass


# ---------------------------------------------------------------- the entry point

def load_image_set(data: Path | None, *, img_size: int = 128, classes: list[str] | None = None,
                   strict: bool = False, cache_dir: Path | None = None, log: Log = print) -> ImageSet:
    """The training images of ``data``, cached (see :func:`_load_image_set`); a cache folder that cannot be
    written (read-only, not a folder) is one line naming it and the way out."""
    where = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        return _load_image_set(data, img_size=img_size, classes=classes, strict=strict, cache_dir=cache_dir, log=log)
    except OSError as exc:
        name = Path(exc.filename) if getattr(exc, "filename", None) else None
        # the cache folder, a file in it, or a parent that could not be made (a read-only HOME: ~/.cache)
        if name is None or not (name.absolute().is_relative_to(where.absolute()) or where.absolute().is_relative_to(name.absolute())):
            raise
        raise DataError(f"cannot write the image cache {name} ({exc.strerror or exc}); "
                        "set --cache-dir or $CGAN_CACHE to a writable folder") from None


def _load_image_set(data: Path | None, *, img_size: int = 128, classes: list[str] | None = None,
                    strict: bool = False, cache_dir: Path | None = None, log: Log = print) -> ImageSet:
    """The training images of ``data`` (or, with ``data=None``, of the default synthetic set), cached.

    Logs the layout, the per-stage counts and any skipped files. Raises :class:`DataError` for a
    missing folder, an unrecognised layout, unknown ``classes``, a class without images, or (with
    ``strict``) the first image that fails to decode.
    """
    if img_size < 8:
        raise DataError(f"image size must be at least 8 px, got {img_size}")
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if data is None:
        return _synthetic_set(img_size, cache_dir, log)
    data = Path(data).expanduser()
    layout = find_layout(data, classes)
    files = list_images(layout)
    names = layout.class_names
    empty = [n for n, group in zip(names, files) if not group]
    if empty:
        raise DataError(
            f"class folder(s) {', '.join(repr(e) for e in empty)} in {layout.root} hold no images "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}); every stage needs images"
        )
    flat = [f for group in files for f in group]
    labels = np.repeat(np.arange(len(names), dtype=np.int64), [len(g) for g in files])
    root = layout.root.resolve()
    key = _fingerprint(files, layout.root, img_size, names)
    entry = _entry_dir(cache_dir, "dir", json.dumps([str(root), img_size, names]))
    meta = _read_meta(entry)
    cache = entry / f"images-{key}.npy"
    rebuilt = False
    images = None
    if meta and meta.get("key") == key:
        kept_labels = np.asarray(meta["labels_counts"], dtype=np.int64)
        images = open_cached(cache, int(kept_labels.sum()), img_size, log)
    if images is not None:
        kept = np.repeat(np.arange(len(names), dtype=np.int64), kept_labels)
        skipped = list(meta.get("skipped", []))
        log(f"using cached images {cache}")
    else:
        log(f"decoding {len(flat):,} images from {layout.root} into the cache at {img_size} px ...")
        cache, kept, skipped = _build_cache(entry, key, flat, labels, img_size, layout.root, log)
        counts = np.bincount(kept, minlength=len(names))
        atomic_write_text(entry / "meta.json", json.dumps({
            "key": key, "root": str(root), "img_size": img_size, "class_names": names,
            "labels_counts": counts.tolist(), "skipped": skipped, "version": CACHE_VERSION,
        }, indent=1))
        _prune(entry, cache)
        rebuilt = True
    if skipped:
        if strict:
            raise DataError(f"unreadable image {layout.root / skipped[0]} (strict mode stops at the first one; "
                            "fix or remove it, or drop --strict to skip it)")
        log(f"skipped {len(skipped)} unreadable image(s): " + "; ".join(skipped[:10])
            + (f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""))
    if images is None:
        images = np.load(cache, mmap_mode="r")
    counts = np.bincount(kept, minlength=len(names))
    lost = [n for n, c in zip(names, counts) if c == 0]
    if lost:
        raise DataError(f"no readable images in class folder(s) {', '.join(repr(n) for n in lost)} of {layout.root}")
    kind = {"oasis": "OASIS layout", "stages": "stage-folder layout", "classes": "class-folder layout"}[layout.kind]
    desc = f"{kind} at {root} ({len(kept):,} images)"
    log(f"{desc}: " + ", ".join(f"{n}: {int(c):,}" for n, c in zip(names, counts)))
    return ImageSet(images=images, labels=kept, class_names=names, description=desc, skipped=skipped,
                    cache_path=cache, rebuilt=rebuilt, files=_kept_files(flat, layout.root, skipped))


def _kept_files(flat: Sequence[Path], root: Path, skipped: Sequence[str]) -> list[str]:
    """Relative paths of the decoded images, in cache order (``skipped`` entries read ``"<path> (<error>)"``)."""
    gone = {entry[:i] for entry in skipped for i in range(len(entry)) if entry.startswith(" (", i)}
    rel = (f.relative_to(root).as_posix() for f in flat)
    return [r for r in rel if r not in gone]


def _synthetic_set(img_size: int, cache_dir: Path, log: Log, n: int = DEFAULT_SYNTH_N,
                   seed: int = DEFAULT_SYNTH_SEED) -> ImageSet:
    """The default synthetic set, rendered straight into the cache at ``img_size`` once."""
    names = list(OASIS_FOLDERS)
    key = hashlib.sha256(f"synth{synth.SYNTH_VERSION}-{n}-{seed}-{img_size}".encode()).hexdigest()[:24]
    entry = _entry_dir(cache_dir, "synth", f"{n}-{seed}-{img_size}")
    cache = entry / f"images-{key}.npy"
    meta = _read_meta(entry)
    desc = f"synthetic OASIS-like set v{synth.SYNTH_VERSION}, MNI ICBM152 2009 anatomy (n={n}, seed={seed})"
    rebuilt = False
    images = open_cached(cache, n, img_size, log) if meta and meta.get("key") == key else None
    if images is None:
        log(f"no --data given: rendering the built-in {desc} at {img_size} px into {entry} (once) ...")
        entry.mkdir(parents=True, exist_ok=True)
        clean_dead_temps(entry)
        with atomic_path(cache) as tmp:
            arr = _cache_array(tmp, (n, img_size, img_size), cache)
            _, labels = synth.render_set(n, seed=seed, img_size=img_size, out=arr)
            arr.flush()
            del arr
        atomic_write_text(entry / "meta.json", json.dumps({
            "key": key, "labels": labels.tolist(), "class_names": names, "version": CACHE_VERSION,
        }))
        _prune(entry, cache)
        rebuilt = True
    else:
        labels = np.asarray(meta["labels"], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(names))
    log(f"no --data given: using the built-in {desc}: " + ", ".join(f"{a}: {int(c):,}" for a, c in zip(names, counts)))
    return ImageSet(images=images if images is not None else np.load(cache, mmap_mode="r"), labels=labels, class_names=names, description=desc,
                    cache_path=cache, rebuilt=rebuilt, files=synth.set_files(n, seed))


def open_cached(path: Path, count: int, img_size: int, log: Log = print) -> np.ndarray | None:
    """The cache file ``path`` as a read-only memory map of ``count`` uint8 images of ``img_size`` px; None (and
    the caller builds it again) when it is missing, cut short (a full disk, an interrupted copy) or of another shape."""
    if not path.is_file():
        return None
    try:
        images = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:  # numpy: "mmap length is greater than file size", a cut-short header
        log(f"the cached images {path} are unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): building them again")
        return None
    if images.dtype != np.uint8 or images.shape != (count, img_size, img_size):
        log(f"the cached images {path} hold {images.shape} {images.dtype}, not {count} images of {img_size} px: building them again")
        return None
    return images


def remove_cache(cache_dir: Path | None = None) -> Path:
    """Delete the whole dataset cache; returns the folder removed."""
    folder = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "datasets"
    shutil.rmtree(folder, ignore_errors=True)
    return folder
