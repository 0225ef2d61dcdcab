"""The levers page's progression strip: for each model, the same noise drawn at every stage.

    python docs/experiments/progression_strip.py OUT.png NAME=MODEL [NAME=MODEL ...] [--seed 3] [--n 2]

One block per model (its name above it), one row per noise (images 0..n-1 of the seed), one column per
stage: a model whose stages differ shows it along each row, a model that tears tissue shows it anywhere.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cgan.runtime import load


def strip(models: list[tuple[str, str]], seed: int, n: int, size: int = 128) -> Image.Image:
    blocks = []
    stage_names = None
    for name, path in models:
        gen = load(path)
        stage_names = stage_names or gen.info.stage_names
        rows = [np.concatenate([gen.generate(stage=s, n=n, seed=seed)[k] for s in range(gen.info.num_classes)], axis=1)
                for k in range(n)]
        blocks.append((name, np.concatenate(rows, axis=0)))
    scale = size / blocks[0][1].shape[0] * n
    label_h, header_h = 18, 18
    width = int(blocks[0][1].shape[1] * scale)
    height = header_h + sum(label_h + int(b.shape[0] * scale) for _, b in blocks)
    sheet = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    col = width // len(stage_names)
    for i, stage in enumerate(stage_names):
        draw.text((i * col + 4, 2), f"{i} {stage}", fill=0, font=font)
    y = header_h
    for name, block in blocks:
        draw.text((4, y + 2), name, fill=0, font=font)
        y += label_h
        img = Image.fromarray(block).resize((width, int(block.shape[0] * scale)), Image.Resampling.LANCZOS)
        sheet.paste(img, (0, y))
        y += img.height
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("models", nargs="+", help="NAME=MODEL (a path, hf:..., or 'default')")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--n", type=int, default=2)
    args = parser.parse_args(argv)
    models = [(m.split("=", 1)[0], None if m.split("=", 1)[1] == "default" else m.split("=", 1)[1]) for m in args.models]
    strip(models, args.seed, args.n).save(args.out, optimize=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
