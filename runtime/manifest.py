"""``generated.csv``: which files of a folder are generated, and everything needed to make each again.

One row per generated image: ``file`` (relative to the folder holding the manifest, ``/``-separated),
``stage`` (the stage index), ``model_sha256`` (of the ``.onnx`` file), ``seed``, ``k`` (the image
index) and ``noise_version``. With those and the model, image k is regenerated exactly
(:func:`regenerate`), or excluded from a training set by its name. The file is always replaced whole
(written under a temporary name, then renamed).
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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read the manifest {path} ({getattr(exc, 'strerror', None) or exc})") from None
    import csv

    reader = csv.DictReader(io.StringIO(text))
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
    return rows


def write_manifest(path: str | os.PathLike, rows: Iterable[ManifestRow]) -> None:
    """Replace the manifest at ``path`` with ``rows`` (sorted by stage, then k), atomically."""
    import csv

    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(FIELDS)
    for r in sorted(rows):
        out.writerow((r.file, r.stage, r.model_sha256, r.seed, r.k, r.noise_version))
    try:
        atomic_write_text(path, buf.getvalue())
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from None


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
