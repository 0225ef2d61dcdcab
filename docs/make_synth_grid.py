"""Draw docs/synth_v2_grid.png: images of the synthetic set per stage (one row each), from a written set.

    cgan-data synth --out synth/ --n 8000 --seed 0
    python docs/make_synth_grid.py synth/ docs/synth_v2_grid.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cgan.runtime.contract import OASIS_FOLDERS
from cgan.train.synth import LABELS_CSV, read_labels

PER_ROW = 8
LABEL_W = 118


def main(root: str, out: str, size: int = 96) -> None:
    rows = read_labels(Path(root) / LABELS_CSV)
    lines = []
    for stage, name in enumerate(OASIS_FOLDERS):
        # one slice each of different subjects, the j-th subject's at the j-th of PER_ROW steps up its
        # levels, so a row runs from the temporal horns to above the ventricles
        subjects: dict[str, list[dict]] = {}
        for r in sorted((r for r in rows if r["stage"] == stage), key=lambda r: r["index"]):
            subjects.setdefault(r["subject"], []).append(r)
        groups = [sorted(g, key=lambda r: r["level"]) for g in subjects.values()]
        chosen = [groups[j % len(groups)][min(j * len(groups[j % len(groups)]) // PER_ROW, len(groups[j % len(groups)]) - 1)]
                  for j in range(PER_ROW)]
        chosen.sort(key=lambda r: r["level"])
        tiles = [np.asarray(Image.open(Path(root) / r["path"]).convert("L").resize((size, size), Image.BILINEAR))
                 for r in chosen]
        label = Image.new("L", (LABEL_W, size), 0)
        ImageDraw.Draw(label).text((4, size // 2 - 6), f"{stage} {name}", fill=255)
        lines.append(np.concatenate([np.asarray(label), *tiles], axis=1))
    Image.fromarray(np.concatenate(lines, axis=0)).save(out, optimize=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
