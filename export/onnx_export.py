"""Generator -> ONNX graph: fold BatchNorm, trace with torch.onnx, check the graph against the contract.

Exporter choice (checked on torch 2.13, onnx 1.23, onnxscript 0.7, onnxruntime 1.32):

- The TorchScript-based exporter (``dynamo=False``) gives a correct opset-17 graph with a dynamic
  batch (``dynamic_axes``) in ~0.5 s, but keeps eval-mode ``BatchNormalization`` nodes and warns on
  every call that it is deprecated (torch.export-based export is the default since torch 2.9).
- The torch.export-based exporter (``dynamo=True``, needs onnxscript) also gives a correct graph with a
  dynamic batch (``dynamic_shapes`` with a ``Dim``). Its own operator set starts at 18; 17 and 16
  come from onnx's version converter (checked: exact), below 16 the conversion fails and the exporter
  silently keeps 18, so we check the opset of what it returns. ~4 s per export.

We use the torch.export-based exporter: it is the path torch maintains, and its time is small next
to validation. We fold BatchNorm into the ConvTranspose weights ourselves (in a copy, float64
arithmetic) so the graph has no BatchNormalization whatever the exporter's optimiser does, and the
graph is checked (opset, domains, names, dtypes, shapes, checker) before any value is compared.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from typing import Any, Iterator

import torch
from torch import nn

from cgan.runtime.contract import INPUT_STAGE, INPUT_Z, OUTPUT_IMAGE
from cgan.runtime.errors import first_line

from .errors import OpsetError, ValidationError

# This module imports torch at the top: only torch commands import it (the CLI imports it lazily).

DEFAULT_OPSET = 17
# Checked range (torch 2.13, onnx 1.23, onnxruntime 1.32; each one exported, checked and compared with
# torch): 17..28. 17 is the lowest the exporter reaches reliably (16 happens to convert for this graph,
# 15 and below fail and the exporter silently keeps 18); 28 is the newest opset onnx 1.23 knows. An
# older onnx lowers the top to what it knows; an older onnxruntime fails validation with a clear line.
MIN_OPSET = 17
MAX_OPSET = 28
MAX_BATCH = 1 << 20

_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "torch._export", "onnxscript", "onnx_ir")


def opset_range() -> tuple[int, int]:
    """The opsets this installation can export and check: (MIN_OPSET, min(MAX_OPSET, onnx's newest))."""
    import onnx.defs

    return MIN_OPSET, min(MAX_OPSET, onnx.defs.onnx_opset_version())


def check_opset(opset: int) -> int:
    lo, hi = opset_range()
    if not isinstance(opset, int) or isinstance(opset, bool) or not lo <= opset <= hi:
        raise OpsetError(
            f"opset {opset!r} is not supported; choose {lo}..{hi} (default {DEFAULT_OPSET}): the torch.export-based "
            f"exporter cannot produce opsets below {MIN_OPSET} for this graph"
            + (f", and opsets above {hi} are unknown to the installed onnx" if hi < MAX_OPSET else f", and {MAX_OPSET} is the newest checked")
        )
    return opset


def build_inference_module(generator: Any, fp16: bool = False) -> Any:
    """A copy of ``generator`` for inference: BatchNorm folded into the ConvTranspose before it.

    ``forward(z [N, z_dim] float32, stage [N] int64) -> image [N, C, H, W] float32``. With ``fp16`` the
    weights and the computation are float16 and only the two ends are cast (float32 in and out).
    The conditional-BatchNorm generator is folded by :mod:`cgan.export.fold_cbn`.
    """
    if getattr(getattr(generator, "config", None), "arch", "dcgan") == "cbn":
        from .fold_cbn import build_cbn_inference

        return build_cbn_inference(generator, fp16=fp16)
    layers: list[nn.Module] = []
    modules = list(generator.net)
    i = 0
    while i < len(modules):
        mod = modules[i]
        nxt = modules[i + 1] if i + 1 < len(modules) else None
        if isinstance(mod, nn.ConvTranspose2d) and isinstance(nxt, nn.BatchNorm2d):
            layers.append(_fold(mod, nxt))
            i += 2
            continue
        if isinstance(mod, nn.BatchNorm2d):
            raise ValidationError("the Generator has a BatchNorm2d that does not follow a ConvTranspose2d; cannot fold it")
        layers.append(_copy_module(mod))
        i += 1
    embedding = nn.Embedding.from_pretrained(generator.label_emb.weight.detach().clone().float(), freeze=True)
    module = _InferenceGenerator(embedding, nn.Sequential(*layers), fp16=fp16).eval()
    if fp16:
        module = module.half()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def trace_to_onnx(module: Any, *, z_dim: int, opset: int) -> Any:
    """Export ``module`` (see :func:`build_inference_module`) to an in-memory ``onnx.ModelProto``."""
    from torch.export import Dim

    check_opset(opset)
    z = torch.randn(2, z_dim)
    stage = torch.tensor([0, 1], dtype=torch.int64)
    batch = Dim("N", min=1, max=MAX_BATCH)
    with _quiet():
        try:
            program = torch.onnx.export(
                module,
                (z, stage),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_Z, INPUT_STAGE],
                output_names=[OUTPUT_IMAGE],
                dynamic_shapes={"z": {0: batch}, "stage": {0: batch}},
                external_data=False,
                optimize=True,
                verify=False,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many internal types; one line is enough here
            raise ValidationError(f"torch.onnx could not export the Generator ({first_line(exc)})") from None
    model = program.model_proto
    got = _default_opset(model)
    if got != opset:
        raise OpsetError(f"the exporter produced opset {got} instead of the requested {opset}; choose {MIN_OPSET}..{opset_range()[1]}")
    return model


def check_graph(model: Any, *, z_dim: int, channels: int, img_size: int, opset: int) -> None:
    """Structure before values: opset and domains, operators, names, dtypes, inferred shapes, checker."""
    import onnx
    from onnx import TensorProto

    if _default_opset(model) != opset:
        raise ValidationError(f"graph has opset {_default_opset(model)}, expected {opset}")
    domains = {o.domain for o in model.opset_import} - {"", "ai.onnx"}
    custom = {n.domain for n in model.graph.node} - {"", "ai.onnx"}
    if domains or custom or model.functions:
        raise ValidationError(f"graph uses non-standard domains or functions {sorted(domains | custom)}; only standard ONNX is allowed")
    ops = {n.op_type for n in model.graph.node}
    if "BatchNormalization" in ops:
        raise ValidationError("graph still contains BatchNormalization; it should have been folded into the ConvTranspose weights")
    for init in model.graph.initializer:
        if init.data_location == TensorProto.EXTERNAL or init.external_data:
            raise ValidationError(f"initializer {init.name} is stored as external data; the model must be one self-contained file")
    try:
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # checker/shape inference raise onnx's own error types
        raise ValidationError(f"onnx checker rejected the graph ({first_line(exc)})") from None

    def sig(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
            out.append((v.name, t.elem_type, dims))
        return out

    ins, outs = sig(inferred.graph.input), sig(inferred.graph.output)
    if len(ins) != 2 or len(outs) != 1:
        raise ValidationError(f"graph has inputs {ins} and outputs {outs}; expected z, stage -> image")
    (zn, zt, zd), (sn, st, sd) = ins
    (on, ot, od) = outs[0]
    batch = zd[0]
    problems = []
    if (zn, zt) != (INPUT_Z, TensorProto.FLOAT) or len(zd) != 2 or zd[1] != z_dim or isinstance(batch, int):
        problems.append(f"input {zn} {zd} (want '{INPUT_Z}' float32 [N, {z_dim}])")
    if (sn, st) != (INPUT_STAGE, TensorProto.INT64) or sd != [batch]:
        problems.append(f"input {sn} {sd} (want '{INPUT_STAGE}' int64 [N])")
    if (on, ot) != (OUTPUT_IMAGE, TensorProto.FLOAT) or od != [batch, channels, img_size, img_size]:
        problems.append(f"output {on} {od} (want '{OUTPUT_IMAGE}' float32 [N, {channels}, {img_size}, {img_size}])")
    if problems:
        raise ValidationError("graph breaks the model contract: " + "; ".join(problems))


# ---------------------------------------------------------------- internals

def _fold(conv: Any, bn: Any) -> Any:
    """ConvTranspose2d followed by eval-mode BatchNorm2d -> one ConvTranspose2d with a bias."""
    if conv.groups != 1:
        raise ValidationError("grouped ConvTranspose2d is not supported by the BatchNorm folding")
    w = conv.weight.detach().double()  # [in, out, kh, kw]: output channels on axis 1
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[1], dtype=torch.float64)
    mean, var = bn.running_mean.detach().double(), bn.running_var.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    folded = nn.ConvTranspose2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.output_padding, 1, True, conv.dilation,
    )
    with torch.no_grad():
        folded.weight.copy_((w * scale[None, :, None, None]).float())
        folded.bias.copy_(((b - mean) * scale + beta).float())
    return folded


def _copy_module(mod: Any) -> Any:
    if isinstance(mod, nn.ReLU):
        return nn.ReLU()  # not in place: a traced graph does not need it, and the copy must not alias
    return copy.deepcopy(mod)


def _default_opset(model: Any) -> int | None:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return None



@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter logs progress, conversion fall-backs and torchvision notices; none of it is for the user."""
    saved = []
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


class _InferenceGenerator(nn.Module):
    """Embedding + folded layers; casts at the two ends when the body runs in float16."""

    def __init__(self, embedding: nn.Module, net: nn.Module, fp16: bool) -> None:
        super().__init__()
        self.label_emb = embedding
        self.net = net
        self.fp16 = fp16

    def forward(self, z: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        emb = self.label_emb(stage)
        if self.fp16:
            z = z.half()
        out = self.net(torch.cat([z, emb], dim=1)[:, :, None, None])
        return out.float() if self.fp16 else out
