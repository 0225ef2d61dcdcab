"""The stage-code scaling baseline of the levers comparison (docs/levers.md): no training.

Writes a copy of an exported dcgan generator whose stage-embedding table is pushed away from its mean,
``E' = mean(E) + alpha * (E - mean(E))`` (per stage alpha if several are given), and records alpha in
the copy's metadata (``cgan.stage_code_scale``). It is a measured reference for the trained levers —
how much stage identity the generator can show with no training, and at what artefact rate — and not
a recipe: the exported models it makes are not shipped.

    python docs/experiments/alpha_scale.py default 1.5 runs/levers/alpha1.5.onnx
    python docs/experiments/alpha_scale.py model.onnx 1.2,1,1,1.5 out.onnx    # one alpha per stage
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

EMBEDDING = "label_emb.weight"


def scale_stage_code(model: onnx.ModelProto, alphas: np.ndarray) -> onnx.ModelProto:
    table = next((t for t in model.graph.initializer if t.name == EMBEDDING), None)
    if table is None:
        raise SystemExit(f"the model has no {EMBEDDING} initializer (only dcgan exports carry the stage table)")
    emb = numpy_helper.to_array(table).astype(np.float64)
    if alphas.size not in (1, emb.shape[0]):
        raise SystemExit(f"give one alpha or {emb.shape[0]} (one per stage), got {alphas.size}")
    mean = emb.mean(axis=0, keepdims=True)
    scaled = mean + alphas.reshape(-1, 1) * (emb - mean)
    table.CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), EMBEDDING))
    props = {p.key: p for p in model.metadata_props}
    text = ",".join(f"{a:g}" for a in alphas.ravel())
    if "cgan.stage_code_scale" in props:
        props["cgan.stage_code_scale"].value = text
    else:
        model.metadata_props.add(key="cgan.stage_code_scale", value=text)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an fp32 dcgan .onnx, or 'default' for the embedded model")
    parser.add_argument("alpha", help="a scale, or one per stage separated by commas")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.model == "default":
        from cgan.runtime.resolve import EMBEDDED_DEFAULT
        args.model = str(EMBEDDED_DEFAULT)
    alphas = np.array([float(a) for a in args.alpha.split(",")], dtype=np.float64)
    model = scale_stage_code(onnx.load(args.model), alphas)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(args.out)
    print(f"{args.out}: stage code scaled by {args.alpha} around its mean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
