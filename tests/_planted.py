"""Broken models for the fault table and its direct tests, planted from the small test model (tests/_models.py).

``planted_model(kind, out)`` writes one of: ``stages5`` (metadata declaring 5 stages on the 4-stage graph),
``zdim_huge`` (metadata ``z_dim`` 10^11, the graph's z width left open), ``beyond`` (the image output scaled by 1.05 after the tanh: values
past [-1, 1], as a float32 tanh at saturation gives by a rounding step).
"""

from __future__ import annotations

import json
from pathlib import Path


def planted_model(kind: str, out: Path) -> Path:
    import onnx

    from _models import model_file
    from cgan.runtime.contract import Key

    model = onnx.load(model_file("gen32"))
    meta = {p.key: p for p in model.metadata_props}
    if kind == "stages5":
        meta[Key.NUM_CLASSES].value = "5"
        meta[Key.STAGE_NAMES].value = json.dumps(json.loads(meta[Key.STAGE_NAMES].value) + ["Severe Dementia"])
    elif kind == "zdim_huge":
        meta[Key.Z_DIM].value = str(10**11)
        (z,) = [i for i in model.graph.input if i.name == "z"]
        z.type.tensor_type.shape.dim[1].dim_param = "z_dim"  # a width the graph leaves open, as the metadata is trusted
    elif kind == "beyond":
        from onnx import helper, numpy_helper
        import numpy as np

        (output,) = model.graph.output
        for node in model.graph.node:
            node.output[:] = ["image_tanh" if o == output.name else o for o in node.output]
        model.graph.initializer.append(numpy_helper.from_array(np.array(1.05, np.float32), "beyond_scale"))
        model.graph.node.append(helper.make_node("Mul", ["image_tanh", "beyond_scale"], [output.name]))
    else:
        raise KeyError(kind)
    onnx.save(model, out)
    return out


def planted_checkpoint(kind: str, source: Path, out: Path) -> Path:
    """A copy of the training checkpoint ``source`` with its run settings broken: ``noconfig`` (no
    ``train_config``) or ``badconfig`` (``img_size`` the string "big")."""
    import torch

    state = torch.load(source, map_location="cpu", weights_only=False)  # our own file, written by the test's run
    if kind == "noconfig":
        del state["train_config"]
    elif kind == "badconfig":
        state["train_config"] = {**state["train_config"], "img_size": "big"}
    else:
        raise KeyError(kind)
    torch.save(state, out)
    return out
