"""Where generated images go: file names, layouts, PNG and npy writers, the contact sheet.

Every file appears whole or not at all (written under a temporary name, then renamed). PNG encoding
runs on a pool of writer threads while the session computes the next batch: zlib and the file
system release the GIL, so the two overlap.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import struct
import tempfile
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .contract import DISCLAIMER, OASIS_FOLDERS
from .errors import CganError, OutputError, raise_if_interrupted
from .fileio import atomic_path, atomic_write_bytes, atomic_write_text, os_reason, preallocated_npy

LAYOUTS = ("flat", "oasis")
FORMATS = ("png", "npy", "none")
PNG_LEVEL = 1  # zlib level: 1 costs a fraction of 6 and the files are a few % larger
INDEX_DIGITS = 8  # stage0_seed0_00000042.png: sorts by stage, then seed, then index; wider where a run needs it


# ---------------------------------------------------------------- names and places

def index_digits(last: int) -> int:
    """Digits of the index in a run's names: 8, or as many as its largest index needs (so its names sort)."""
    return max(INDEX_DIGITS, len(str(last)))


def image_name(stage: int, seed: int, k: int, ext: str = "png", digits: int = INDEX_DIGITS) -> str:
    """``stage{s}_seed{seed}_{k:08d}.{ext}``: tells the stage, the seed and the image index k."""
    return f"stage{stage}_seed{seed}_{k:0{digits}d}.{ext}"


def stack_name(stage: int, seed: int, start: int, n: int) -> str:
    """``stage{s}_seed{seed}_{first:08d}-{last:08d}.npy``: one float32 stack of a stage's images."""
    digits = index_digits(start + n - 1)
    return f"stage{stage}_seed{seed}_{start:0{digits}d}-{start + n - 1:0{digits}d}.npy"


def stage_dir(out: Path, layout: str, stage: int) -> Path:
    """The folder for a stage's files: ``out`` itself (flat), or its Kaggle OASIS folder name (oasis)."""
    if layout == "flat":
        return out
    if layout == "oasis":
        return out / OASIS_FOLDERS[stage]
    raise OutputError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def check_layout(layout: str, num_classes: int) -> None:
    if layout not in LAYOUTS:
        raise OutputError(f"unknown --layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if layout == "oasis" and num_classes != len(OASIS_FOLDERS):
        raise OutputError(
            f"--layout oasis writes the {len(OASIS_FOLDERS)} Kaggle OASIS folders, but this model has {num_classes} stages; use --layout flat"
        )


class PlannedNames:
    """The file names a run plans in one folder, from several parts (stages, a contact sheet): iterable,
    sized, and with an ``in`` that never walks them, so checking a run of a billion names against a
    folder costs one listing of the folder, not a billion strings."""

    fast_contains = True

    def __init__(self, parts: Iterable[Any] = ()) -> None:
        self.parts = list(parts)

    def add(self, part: Any) -> "PlannedNames":
        self.parts.append(part)
        return self

    def __iter__(self):
        return itertools.chain.from_iterable(self.parts)

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __contains__(self, name: object) -> bool:
        return any(name in p for p in self.parts)


class _PngNames:
    """``image_name(stage, seed, k)`` for k in ``start .. start+n-1``, made on demand."""

    def __init__(self, stage: int, seed: int, start: int, n: int, digits: int) -> None:
        self.stage, self.seed, self.start, self.n, self.digits = stage, seed, start, n, digits
        self._prefix = f"stage{stage}_seed{seed}_"

    def __iter__(self):
        return (image_name(self.stage, self.seed, k, digits=self.digits) for k in range(self.start, self.start + self.n))

    def __len__(self) -> int:
        return self.n

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not name.startswith(self._prefix) or not name.endswith(".png"):
            return False
        index = name[len(self._prefix) : -4]
        return len(index) == self.digits and index.isdigit() and self.start <= int(index) < self.start + self.n


def planned_files(
    out: Path, *, layout: str, fmt: str, stages: Sequence[int], seed: int, start: int, n: int
) -> dict[Path, PlannedNames]:
    """The files a run will write, as folder -> file names, every stage's (lazy for PNGs: a million names
    are never held at once)."""
    files: dict[Path, PlannedNames] = {}
    digits = index_digits(start + n - 1)
    for s in stages:
        folder = stage_dir(out, layout, s)
        if fmt == "png":
            names: Any = _PngNames(s, seed, start, n, digits)
        elif fmt == "npy":
            stack = stack_name(s, seed, start, n)
            names = [stack, stack[:-4] + ".json"]
        elif fmt == "none":
            continue
        else:
            raise OutputError(f"unknown --format {fmt!r}; expected one of {', '.join(FORMATS)}")
        files.setdefault(folder, PlannedNames()).add(names)
    return files


def min_png_bytes(shape: tuple[int, ...], text: dict[str, str] | None = None) -> int:
    """A lower bound on the size of one PNG file of ``shape``: its head and text chunks, the smallest
    image data zlib can make (all pixels equal) and the end chunk."""
    rows = png_rows(np.zeros((1, *shape), dtype=np.uint8))[0]
    return len(png_head(shape, text)) + len(_chunk(b"IDAT", zlib.compress(rows, 9))) + len(_PNG_END)


def stack_bytes(n: int, channels: int, img_size: int) -> int:
    return n * channels * img_size * img_size * 4


def prepare_dirs(folders: Iterable[Path]) -> None:
    """Create the output folders and check that files can be written there."""
    for folder in dict.fromkeys(folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".cgan-write-test.", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise OutputError(f"cannot write to {folder} ({os_reason(folder, exc)}); choose another --out") from None


# ---------------------------------------------------------------- PNG

_PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


_PNG_END = _chunk(b"IEND", b"")


def png_head(shape: tuple[int, ...], text: dict[str, str] | None = None) -> bytes:
    """Signature, IHDR and tEXt chunks of a PNG for uint8 images of ``shape`` ``(H, W)`` or ``(H, W, C)``."""
    h, w = shape[:2]
    c = shape[2] if len(shape) == 3 else 1
    if len(shape) not in (2, 3) or c not in _PNG_COLOR_TYPE:
        raise ValueError(f"expected uint8 [H, W] or [H, W, C] with C in 1..4, got shape {tuple(shape)}")
    parts = [_PNG_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, _PNG_COLOR_TYPE[c], 0, 0, 0))]
    for key, value in (text or {}).items():
        parts.append(_chunk(b"tEXt", key.encode("latin-1", "replace")[:79] + b"\0" + value.encode("latin-1", "replace")))
    return b"".join(parts)


def png_rows(pixels: np.ndarray) -> np.ndarray:
    """Images ``[b, H, W]`` or ``[b, H, W, C]`` uint8 -> PNG scanlines ``[b, H, 1 + W*C]``, every row "Up"-filtered
    (filter byte 2, then each byte minus the byte above it; the first row minus zero). One numpy pass per batch."""
    img = np.ascontiguousarray(pixels, dtype=np.uint8)
    b, h = img.shape[:2]
    flat = img.reshape(b, h, -1)
    rows = np.empty((b, h, flat.shape[2] + 1), dtype=np.uint8)
    rows[:, :, 0] = 2
    rows[:, 0, 1:] = flat[:, 0]
    np.subtract(flat[:, 1:], flat[:, :-1], out=rows[:, 1:, 1:])
    return rows


def png_bytes(pixels: np.ndarray, text: dict[str, str] | None = None, compress_level: int = PNG_LEVEL) -> bytes:
    """Encode one uint8 image, ``[H, W]`` (8-bit grayscale) or ``[H, W, C]``, as PNG with optional tEXt chunks.

    Written directly (rows "Up"-filtered, then zlib) rather than through PIL: about a third of the CPU
    of PIL's adaptive filtering at a similar size, and zlib releases the GIL while it compresses.
    """
    head = png_head(pixels.shape, text)
    rows = png_rows(pixels[None])[0]
    return head + _chunk(b"IDAT", zlib.compress(rows, compress_level)) + _PNG_END


class PngWriter:
    """Writes batches of uint8 images as PNG files on a pool of threads, at most ``max_pending`` batches queued.

    ``submit`` blocks when the queue is full (so memory stays bounded) and re-raises the first write
    error; ``close`` waits for everything and re-raises too. ``on_written(count)`` is called from the
    writer threads after each batch (for the progress bar).
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        max_pending: int | None = None,
        text: dict[str, str] | None = None,
        on_written: Callable[[int], None] | None = None,
        compress_level: int = PNG_LEVEL,
    ) -> None:
        self.workers = workers or default_writers()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="cgan-png")
        # Not a BoundedSemaphore: a Ctrl-C inside the pool's submit may come after the batch was queued, and the
        # slot is then released twice (once by submit, once by the batch); one more batch may queue, nothing fails.
        self._slots = threading.Semaphore(max_pending or 2 * self.workers + 2)
        self._text = dict(text or {})
        self._on_written = on_written
        self._compress = compress_level
        self._error: BaseException | None = None
        self.written = 0
        self._lock = threading.Lock()
        # Batches being written, and whether close(cancel=True) has begun: a Ctrl-C that lands while the pool
        # starts a thread leaves that thread unknown to the pool (shutdown does not join it), so close waits
        # for the batches themselves, and a batch that starts after a cancelling close writes nothing.
        self._idle = threading.Condition(self._lock)
        self._running = 0
        self._cancelled = False

    def submit(self, pixels: np.ndarray, paths: Sequence[Path], text: dict[str, str] | None = None) -> None:
        """Queue ``pixels[i]`` -> ``paths[i]`` (with ``text`` chunks added to the writer's); don't modify the array afterwards."""
        raise_if_interrupted()
        self._raise_error()
        self._slots.acquire()
        try:
            fut = self._pool.submit(self._write, pixels, list(paths), text)
        except BaseException:
            self._slots.release()
            raise
        fut.add_done_callback(self._done)

    def _write(self, pixels: np.ndarray, paths: list[Path], text: dict[str, str] | None) -> None:
        with self._lock:
            if self._cancelled:
                self._slots.release()
                return
            self._running += 1
        try:
            head = png_head(pixels.shape[1:], {**self._text, **(text or {})})
            rows = png_rows(pixels)
            for i, path in enumerate(paths):
                if self._error is not None:
                    return
                data = head + _chunk(b"IDAT", zlib.compress(rows[i], self._compress)) + _PNG_END
                try:
                    atomic_write_bytes(path, data)
                except OSError as exc:
                    raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from None
            with self._lock:
                self.written += len(paths)
            if self._on_written is not None:
                self._on_written(len(paths))
        finally:
            with self._lock:
                self._running -= 1
                self._idle.notify_all()
            self._slots.release()

    def _done(self, fut: Future) -> None:
        if fut.cancelled():  # cancelled by close(cancel=True) after an error or Ctrl-C: nothing to report
            return
        exc = fut.exception()
        if exc is not None and self._error is None:
            self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the queued batches (``cancel``: only for those already being written; the rest are
        dropped), then re-raise the first write error (not when cancelling)."""
        if cancel:
            with self._lock:
                self._cancelled = True
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        with self._lock:
            while self._running:
                self._idle.wait()
        if not cancel:
            self._raise_error()

    def __enter__(self) -> "PngWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(cancel=exc_type is not None)


def default_writers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


# ---------------------------------------------------------------- npy

class NpyStackWriter:
    """Streams one stage's float32 images into ``path`` (a .npy memory map under a temporary name), then
    renames it and writes the JSON sidecar ``path.with_suffix('.json')``."""

    def __init__(self, path: Path, shape: tuple[int, ...], sidecar: dict[str, Any]) -> None:
        self.path = path
        self.sidecar = sidecar
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(path))
        try:  # preallocated: a disk that fills is an error now, not a SIGBUS while images are written
            self.array = preallocated_npy(self._tmp, np.float32, shape, target=path)
        except OutputError as exc:
            self._stack.__exit__(type(exc), exc, None)
            raise
        except OSError as exc:
            self._stack.__exit__(OSError, exc, None)
            raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from None

    def write(self, offset: int, images: np.ndarray) -> None:
        self.array[offset : offset + len(images)] = images

    def finish(self) -> None:
        raise_if_interrupted()
        try:
            self.array.flush()
            del self.array
            self._stack.close()  # renames the stack onto its name
            atomic_write_text(self.path.with_suffix(".json"), json.dumps(self.sidecar, indent=2) + "\n")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path} ({exc.strerror or exc})") from None

    def abort(self) -> None:
        if hasattr(self, "array"):
            del self.array
        self._stack.__exit__(CganError, CganError("aborted"), None)


# ---------------------------------------------------------------- contact sheet

def contact_sheet(
    cells: Sequence[Sequence[np.ndarray]],
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    min_cell: int = 64,
) -> Any:
    """A labelled grid (PIL ``L`` image) of uint8 ``[H, W]`` cells: one label per row on the left,
    optional column labels on top, an optional title line. Small images are enlarged (nearest) to ``min_cell``."""
    from PIL import Image, ImageDraw, ImageFont

    rows = len(cells)
    cols = max((len(r) for r in cells), default=0)
    if rows == 0 or cols == 0:
        raise OutputError("nothing to put on the contact sheet")
    h, w = cells[0][0].shape[:2]
    scale = max(1, -(-min_cell // max(h, w)))
    ch, cw = h * scale, w * scale
    try:
        font = ImageFont.load_default(size=max(11, min(18, ch // 6)))
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))

    def text_size(text: str) -> tuple[int, int]:
        left, top, right, bottom = measure.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    gap, pad = 2, 6
    line_h = max(text_size("Ag")[1], 10) + 2 * pad
    label_w = max(text_size(t)[0] for t in row_labels) + 2 * pad
    if col_labels:
        cw = max(cw, max(text_size(t)[0] for t in col_labels) + 2 * pad)
    top = (line_h if title else 0) + (line_h if col_labels else 0)
    width = label_w + cols * (cw + gap)
    height = top + rows * (ch + gap)
    if title:
        width = max(width, text_size(title)[0] + 2 * pad)
    sheet = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(sheet)
    y0 = 0
    if title:
        draw.text((pad, pad), title, fill=200, font=font)
        y0 += line_h
    if col_labels:
        for j, label in enumerate(col_labels):
            tw, _ = text_size(label)
            draw.text((label_w + j * (cw + gap) + (cw - tw) // 2, y0 + pad), label, fill=255, font=font)
    for i, row in enumerate(cells):
        y = top + i * (ch + gap)
        _, th = text_size(row_labels[i])
        draw.text((pad, y + (ch - th) // 2), row_labels[i], fill=255, font=font)
        for j, cell in enumerate(row):
            img = Image.fromarray(np.ascontiguousarray(cell))
            if scale > 1:
                img = img.resize((w * scale, h * scale), Image.NEAREST)
            x = label_w + j * (cw + gap) + (cw - w * scale) // 2
            sheet.paste(img.convert("L"), (x, y))
    return sheet


def save_image(image: Any, path: Path) -> None:
    """Save a PIL image atomically (format from the suffix, PNG when it has none)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            image.save(tmp, format=None if path.suffix else "PNG")
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from None
    except ValueError as exc:  # PIL: unknown extension
        raise OutputError(f"cannot write {path} ({exc}); use a .png file name") from None


def disclaimer_text() -> dict[str, str]:
    return {"Software": "dementia-cgan", "Comment": "Synthetic image. " + DISCLAIMER}
