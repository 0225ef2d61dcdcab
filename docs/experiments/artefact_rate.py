"""The implausible-anatomy rate of several models on many more images than one evaluation draws, on the
same noise for every model, with the thresholds a ``cgan-eval`` report set (its real train-side images).

    python docs/experiments/artefact_rate.py REPORT.json MODEL [MODEL ...] [--n 1024] [--seed 100]

One evaluation flags images out of 1,024 (256 per stage): 0.5% and 0.9% are 5 and 9 images, too few to
tell two models apart. Here every model draws ``--n`` images per stage from the same noise (paired), the
rule of :mod:`cgan.train.eval.artefacts` flags them against the report's thresholds, and each rate is
printed with its Wilson 95% interval; beside it, the images flagged by this model but not by the first
one and the other way round (the paired counts of McNemar's test), and its exact two-sided p-value.
``default`` names the embedded model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided p-value of McNemar's test: ``b`` and ``c`` the discordant pairs, each split 1/2 under the null."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def flagged(model: str, limits: dict[str, float], n: int, seed: int, stages: int) -> np.ndarray:
    """``[stages, n]`` booleans: which of the model's images the rule flags."""
    from cgan.runtime import load
    from cgan.train.eval.artefacts import flags, scores

    generator = load(None if model == "default" else model)
    return np.stack([flags(scores(generator.generate(s, n, seed=seed)), limits) for s in range(stages)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a cgan-eval report.json (its artefact thresholds)")
    parser.add_argument("models", nargs="+", help="ONNX files, or 'default'; the first is the reference")
    parser.add_argument("--n", type=int, default=1024, help="images per stage (default 1024)")
    parser.add_argument("--seed", type=int, default=100, help="noise seed (default 100: not an evaluation's)")
    args = parser.parse_args(argv)
    section = json.loads(args.report.read_text())["artefacts"]
    limits, names = section["thresholds"], section["stage_names"]
    first = None
    print(f"| model | flagged / images | rate [95%] | per stage ({' / '.join(names)}) | "
          "flagged here only / in the first only | p (McNemar) |")
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for model in args.models:
        f = flagged(model, limits, args.n, args.seed, len(names))
        k, total = int(f.sum()), f.size
        lo, hi = wilson(k, total)
        per = " / ".join(f"{100 * v:.1f}%" for v in f.mean(1))
        if first is None:
            first, paired = f, "—"
            p = "—"
        else:
            b, c = int((f & ~first).sum()), int((first & ~f).sum())
            paired, p = f"{b} / {c}", f"{mcnemar_p(b, c):.2g}"
        print(f"| {model} | {k} / {total} | {100 * k / total:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}] | {per} | {paired} | {p} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
