"""Small real models for the runtime tests, built once per test process.

``model_file("gen32")`` is a 32-px Generator exported with cgan.export (weights scaled up from the
DCGAN init so that images span the output range and differ by stage); the others are broken
variants of it for the error tests. The fixtures ``model`` (gen32's path) and ``gen`` (gen32 loaded
on the CPU) are taken by importing them into a test module (``from _models import gen, model``).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest

TRAINING_DATA = "untrained test weights (tests/_models.py)"

_ROOT: Path | None = None


def _root() -> Path:
    global _ROOT
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="cgan-test-models-"))
        atexit.register(shutil.rmtree, _ROOT, True)
    return _ROOT


@functools.lru_cache(maxsize=None)
def model_file(kind: str = "gen32") -> Path:
    """The path of a test model; kinds: gen32, no_metadata, bad_inputs, nan (outputs NaN), nan3 (NaN for
    stage 3 only), truncated, not_onnx."""
    out = _root() / f"{kind}.onnx"
    if kind == "gen32":
        import torch

        from cgan.export.api import export_generator
        from cgan.train.models import Generator

        torch.manual_seed(0)
        g = Generator(img_size=32, width=64)
        with torch.no_grad():
            for m in g.modules():
                if isinstance(m, torch.nn.ConvTranspose2d):
                    m.weight.normal_(0.0, 0.1)
                elif isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_(0.0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        export_generator(g, out, model_card=False, provenance={"training_data": TRAINING_DATA})
    elif kind == "no_metadata":
        import onnx

        model = onnx.load(model_file("gen32"))
        del model.metadata_props[:]
        onnx.save(model, out)
    elif kind == "bad_inputs":
        import onnx

        model = onnx.load(model_file("gen32"))  # rename input 'stage' -> 'label': breaks the contract, keeps the metadata
        for inp in model.graph.input:
            if inp.name == "stage":
                inp.name = "label"
        for node in model.graph.node:
            node.input[:] = ["label" if i == "stage" else i for i in node.input]
        onnx.save(model, out)
    elif kind == "nan":
        import numpy as np
        import onnx
        from onnx import numpy_helper

        model = onnx.load(model_file("gen32"))  # every weight of the last layer NaN: a diverged model, metadata intact
        last = max((i for i, t in enumerate(model.graph.initializer) if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 4),
                   key=lambda i: i)
        tensor = model.graph.initializer[last]
        model.graph.initializer[last].CopyFrom(numpy_helper.from_array(np.full(tuple(tensor.dims), np.nan, np.float32), tensor.name))
        onnx.save(model, out)
    elif kind == "nan3":
        import numpy as np
        import onnx
        from onnx import numpy_helper

        model = onnx.load(model_file("gen32"))  # the label embedding's row for stage 3 NaN: broken for that stage only
        (emb,) = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and list(t.dims) == [4, 4]]
        table = numpy_helper.to_array(emb).copy()
        table[3] = np.nan
        emb.CopyFrom(numpy_helper.from_array(table, emb.name))
        onnx.save(model, out)
    elif kind == "truncated":
        data = model_file("gen32").read_bytes()
        out.write_bytes(data[: len(data) // 2])
    elif kind == "not_onnx":
        out.write_text("this is not an ONNX model\n")
    else:
        raise KeyError(kind)
    return out


@pytest.fixture(scope="module")
def model() -> str:
    """The path of gen32, as load() and the commands take it."""
    return str(model_file("gen32"))


@pytest.fixture(scope="module")
def gen(model):
    """gen32 loaded on the CPU."""
    from cgan.runtime import load

    return load(model, provider="cpu")

