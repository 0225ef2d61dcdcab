"""How far a trained stage code has moved from a reference one, in the stage-code scaling's terms.

For each checkpoint or exported model given after the reference, the stage-embedding table's deviations
from its own mean, ``D = E - mean(E)``, are compared with the reference's, ``D0``: the least-squares
``alpha`` with ``D ~ alpha * D0`` (the scaling ``alpha_scale.py`` applies with no training), the part of
``D`` that scaling cannot give (``|D - alpha D0| / |D|``), and each stage's spread ``|D_s| / |D0_s|``.

    python docs/experiments/stage_code_spread.py runs/levers/stage-ac/checkpoints/ckpt_000000300.pt \\
        runs/levers/stage-ac/checkpoints/ckpt_000000*.pt
    python docs/experiments/stage_code_spread.py default runs/levers/r3-ac500-cutout/model.onnx

A checkpoint (``.pt``, read with torch) or a generator file is read for its generator's table; an
exported model (``.onnx``) or ``default`` (the embedded default model) for its initializer.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

EMBEDDING = "label_emb.weight"


def stage_table(source: str) -> np.ndarray:
    """The ``[stages, code]`` stage-embedding table of a checkpoint, generator file, ONNX model or ``default``."""
    if source == "default" or source.endswith(".onnx"):
        import onnx
        from onnx import numpy_helper

        if source == "default":
            from cgan.runtime.resolve import EMBEDDED_DEFAULT

            source = str(EMBEDDED_DEFAULT)
        model = onnx.load(source)
        table = next((t for t in model.graph.initializer if t.name == EMBEDDING), None)
        if table is None:
            raise SystemExit(f"{source}: no {EMBEDDING} initializer (only dcgan generators carry the stage table)")
        return numpy_helper.to_array(table).astype(np.float64)
    import torch

    saved = torch.load(source, map_location="cpu", weights_only=False)
    weights = saved.get("generator", saved) if isinstance(saved, dict) else None
    if not isinstance(weights, dict) or EMBEDDING not in weights:
        raise SystemExit(f"{source}: no generator with a {EMBEDDING} table in it")
    return weights[EMBEDDING].detach().double().numpy()


def spread(table: np.ndarray, reference: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(alpha, the share not along the reference, per-stage spread) of ``table`` against ``reference``."""
    if table.shape != reference.shape:
        raise SystemExit(f"stage tables of different shapes: {table.shape} and {reference.shape}")
    d, d0 = table - table.mean(0), reference - reference.mean(0)
    alpha = float((d * d0).sum() / (d0 * d0).sum())
    off = float(np.linalg.norm(d - alpha * d0) / np.linalg.norm(d))
    return alpha, off, np.linalg.norm(d, axis=1) / np.linalg.norm(d0, axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", help="checkpoint, generator file, ONNX model or 'default'")
    parser.add_argument("models", nargs="+", help="the stage codes to compare with it")
    args = parser.parse_args(argv)
    reference = stage_table(args.reference)
    print("| model | alpha (least squares) | not along the reference | per-stage spread |")
    print("| --- | ---: | ---: | --- |")
    for source in args.models:
        alpha, off, per_stage = spread(stage_table(source), reference)
        print(f"| {source} | {alpha:.3f} | {off:.2f} | {' / '.join(f'{s:.2f}' for s in per_stage)} |")


if __name__ == "__main__":
    sys.exit(main())
