"""Size-first int8: weights stored as int8 per output channel, activations kept in float32.

Each layer's weight initializer becomes an int8 tensor with one float scale per output channel
(symmetric, zero point 0) and a ``DequantizeLinear`` in front of the layer, so the file is about a
quarter of the fp32 one while every operator still computes in float32. The error is only the
weights' rounding (half a step of max|w|/127 per channel): no activation ranges, no calibration, and
no dependence on the CPU's int8 instructions. Measured on the default generator (AVX2 CPU): 57.8 dB,
worst pixel 7 and 99.9th percentile 2 grey levels over 256 images per stage, 4.0x smaller.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# Op type -> which input holds the weight and which of its axes is the output channel.
_WEIGHT_AXIS = {"Conv": (1, 0), "ConvTranspose": (1, 1), "MatMul": (1, 1)}
MIN_ELEMENTS = 1024  # smaller weights stay float32: nothing to save, and a scale per channel would cost more


def quantize_weights(model: Any, *, exclude: Sequence[str] = (), levels: int = 127) -> tuple[Any, list[str]]:
    """A copy of ``model`` (onnx.ModelProto) with its layer weights stored as int8 per output channel.

    Layers named in ``exclude`` keep float32 weights. Returns the model and the names of the layers whose
    weights were quantized. ``levels``: steps each side of zero (127 uses the int8 range; fewer is coarser).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    new_nodes, done = [], []
    for node in graph.node:
        where = _weight_input(node)
        if where is not None and node.name not in exclude:
            index, axis = where
            name = node.input[index]
            tensor = inits.get(name)
            if tensor is not None and tensor.data_type == onnx.TensorProto.FLOAT and uses.get(name) == 1:
                weight = numpy_helper.to_array(tensor)
                if weight.size >= MIN_ELEMENTS and weight.ndim >= 2:
                    q, scale = _per_channel(weight, axis, levels)
                    graph.initializer.remove(tensor)
                    graph.initializer.extend([
                        numpy_helper.from_array(q, f"{name}_int8"),
                        numpy_helper.from_array(scale, f"{name}_scale"),
                        numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), f"{name}_zero_point"),
                    ])  # fmt: skip
                    new_nodes.append(helper.make_node(
                        "DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"], [name],
                        name=f"{node.name}_weight_dequantize", axis=axis,
                    ))  # fmt: skip
                    done.append(node.name)
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    return model, done


def _weight_input(node: Any) -> tuple[int, int] | None:
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return (1, 0 if trans_b else 1)
    if node.op_type in ("Conv", "ConvTranspose"):
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if group != 1 and node.op_type == "ConvTranspose":
            return None  # per-channel axis of a grouped transposed weight is not one axis
    return _WEIGHT_AXIS.get(node.op_type)


def _per_channel(weight: np.ndarray, axis: int, levels: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per channel along ``axis``: ``weight ~= q * scale`` with q in [-levels, levels]."""
    moved = np.moveaxis(weight.astype(np.float64), axis, 0).reshape(weight.shape[axis], -1)
    peak = np.abs(moved).max(axis=1)
    scale = np.where(peak > 0, peak / float(levels), 1.0)
    shape = [1] * weight.ndim
    shape[axis] = -1
    q = np.clip(np.rint(weight / scale.reshape(shape)), -levels, levels).astype(np.int8)
    return q, scale.astype(np.float32)
