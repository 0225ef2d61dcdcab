"""Graph rewrites that let ONNX Runtime's int8 kernels run the generator; exact in float32.

ONNX Runtime has no quantized ConvTranspose on CPU: a QDQ ConvTranspose is dequantized and run in
float32. Two rewrites turn the generator's layers into operators that do have int8 kernels:

* ``ConvTranspose`` with stride 2, kernel 4, pad 1 (every upsampling layer) -> ``Conv`` with kernel 2
  over the input padded by 1 and ``4 * C_out`` output channels, ``DepthToSpace`` (block 2) and a
  ``Slice`` that crops the one-pixel border. Output pixel ``2m + r`` of the unpadded transposed
  convolution is ``x[m] W[r] + x[m-1] W[r+2]`` (per axis), so the output channel of phase
  ``(rh, rw)`` takes the kernel taps ``W[rh + 2(1 - th), rw + 2(1 - tw)]`` at position ``(th, tw)``.
* ``ConvTranspose`` with stride 1 and no padding over a 1x1 input (the first layer) -> a
  ``Gemm`` with the kernel laid out as ``[C_in, C_out * kh * kw]`` and the bias
  repeated per pixel, between two ``Reshape``.

A ``Relu`` that alone consumes a rewritten layer moves ahead of the ``DepthToSpace`` (both are
per-element or pure moves, so they commute), where it fuses with the ``Conv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ValidationError


@dataclass(frozen=True)
class RewriteReport:
    """Which ConvTranspose nodes became what."""

    to_conv: tuple[str, ...]  # stride 2 -> Conv + DepthToSpace + Slice
    to_matmul: tuple[str, ...]  # 1x1 input, stride 1 -> Reshape + Gemm + Reshape
    kept: tuple[str, ...]  # ConvTranspose nodes left as they were

    @property
    def rewritten(self) -> tuple[str, ...]:
        return self.to_conv + self.to_matmul


def upsample_kernel(weight: np.ndarray) -> np.ndarray:
    """ConvTranspose weight ``[C_in, C_out, 4, 4]`` (stride 2, pad 1) -> Conv weight ``[4 * C_out, C_in, 2, 2]``.

    Output channel ``(rh * 2 + rw) * C_out + c`` is the sub-pixel phase ``(rh, rw)`` that DepthToSpace
    (mode DCR) puts at ``(2h + rh, 2w + rw)``.
    """
    cin, cout, kh, kw = weight.shape
    if (kh, kw) != (4, 4):
        raise ValueError(f"expected a 4x4 kernel, got {kh}x{kw}")
    out = np.empty((4 * cout, cin, 2, 2), dtype=weight.dtype)
    for rh in range(2):
        for rw in range(2):
            block = slice((rh * 2 + rw) * cout, (rh * 2 + rw + 1) * cout)
            for th in range(2):
                for tw in range(2):
                    out[block, :, th, tw] = weight[:, :, rh + 2 * (1 - th), rw + 2 * (1 - tw)].T
    return out


def rewrite_for_int8(model: Any, *, kernel: Any = None) -> tuple[Any, RewriteReport]:
    """A copy of ``model`` with its ConvTranspose layers rewritten as the module docstring says.

    ``kernel`` maps a ConvTranspose weight to the Conv weight (default :func:`upsample_kernel`); a
    test passes a wrong one to show the exporter's validation catches it. Nodes the rewrite does not
    cover (other strides, groups, dilations, output padding, weights that are not initializers) stay.
    """
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    kernel = kernel or upsample_kernel
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    shapes = _spatial_shapes(shape_inference.infer_shapes(model))
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    new_nodes: list[Any] = []
    new_inits: list[Any] = []
    moved_relu: set[int] = set()
    to_conv, to_matmul, kept = [], [], []
    for node in graph.node:
        if id(node) in moved_relu:
            continue
        if node.op_type != "ConvTranspose":
            new_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight_name = node.input[1]
        if weight_name not in inits or int(attrs.get("group", 1)) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])) \
                or any(p != 0 for p in attrs.get("output_padding", [0, 0])) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            kept.append(node.name)
            new_nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[weight_name])
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
        if bias is None:
            bias = np.zeros(weight.shape[1], dtype=weight.dtype)
        strides = list(attrs.get("strides", [1, 1]))
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        ksize = list(attrs.get("kernel_shape", weight.shape[2:]))
        relu = _lone_relu(node, consumers, outputs)
        out_name = relu.output[0] if relu is not None else node.output[0]
        if relu is not None:
            moved_relu.add(id(relu))
        base = node.name or weight_name
        if strides == [2, 2] and pads == [1, 1, 1, 1] and ksize == [4, 4]:
            new_inits += [numpy_helper.from_array(kernel(weight).astype(np.float32), f"{base}.conv_weight"),
                          numpy_helper.from_array(np.tile(bias, 4).astype(np.float32), f"{base}.conv_bias")]
            conv_out = f"{base}.conv"
            chain = [helper.make_node("Conv", [node.input[0], f"{base}.conv_weight", f"{base}.conv_bias"], [conv_out], name=node.name,
                                      kernel_shape=[2, 2], pads=[1, 1, 1, 1], strides=[1, 1])]
            if relu is not None:
                chain.append(helper.make_node("Relu", [conv_out], [f"{base}.relu"], name=relu.name))
                conv_out = f"{base}.relu"
            new_inits += [_i64(f"{base}.crop_start", [1, 1]), _i64(f"{base}.crop_end", [-1, -1]), _i64(f"{base}.crop_axes", [2, 3])]
            chain += [helper.make_node("DepthToSpace", [conv_out], [f"{base}.d2s"], name=f"{base}.DepthToSpace", blocksize=2, mode="DCR"),
                      helper.make_node("Slice", [f"{base}.d2s", f"{base}.crop_start", f"{base}.crop_end", f"{base}.crop_axes"], [out_name],
                                       name=f"{base}.crop")]
            to_conv.append(node.name)
        elif strides == [1, 1] and pads == [0, 0, 0, 0] and shapes.get(node.input[0]) == (1, 1):
            cin, cout, kh, kw = weight.shape
            new_inits += [numpy_helper.from_array(weight.reshape(cin, cout * kh * kw).astype(np.float32), f"{base}.matmul_weight"),
                          numpy_helper.from_array(np.repeat(bias, kh * kw).astype(np.float32), f"{base}.matmul_bias"),
                          _i64(f"{base}.flat_shape", [0, cin]), _i64(f"{base}.image_shape", [0, cout, kh, kw])]
            chain = [helper.make_node("Reshape", [node.input[0], f"{base}.flat_shape"], [f"{base}.flat"], name=f"{base}.flatten"),
                     helper.make_node("Gemm", [f"{base}.flat", f"{base}.matmul_weight", f"{base}.matmul_bias"], [f"{base}.mm"], name=node.name)]
            last = f"{base}.mm"
            if relu is not None:
                chain.append(helper.make_node("Relu", [last], [f"{base}.relu"], name=relu.name))
                last = f"{base}.relu"
            chain.append(helper.make_node("Reshape", [last, f"{base}.image_shape"], [out_name], name=f"{base}.unflatten"))
            to_matmul.append(node.name)
        else:
            if relu is not None:
                moved_relu.discard(id(relu))
            kept.append(node.name)
            new_nodes.append(node)
            continue
        new_nodes += chain

    used = {name for n in new_nodes for name in n.input}
    old_inits = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(old_inits + [t for t in new_inits if t.name in used])
    del graph.value_info[:]
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx's own error types
        raise ValidationError(f"the int8 rewrite produced an invalid graph ({str(exc).splitlines()[0][:200]})") from None
    return model, RewriteReport(tuple(to_conv), tuple(to_matmul), tuple(kept))


def _i64(name: str, values: list[int]) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _lone_relu(node: Any, consumers: dict[str, list[Any]], outputs: set[str]) -> Any:
    """The Relu that is the only consumer of ``node``'s output (and the output is not a graph output), else None."""
    users = consumers.get(node.output[0], [])
    if len(users) == 1 and users[0].op_type == "Relu" and node.output[0] not in outputs:
        return users[0]
    return None


def _spatial_shapes(model: Any) -> dict[str, tuple[int, int]]:
    """Known (H, W) of every rank-4 tensor after shape inference."""
    out = {}
    for v in list(model.graph.value_info) + list(model.graph.input):
        dims = v.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
            out[v.name] = (dims[2].dim_value, dims[3].dim_value)
    return out
