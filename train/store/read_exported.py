"""A warm start from an exported generator (``cgan-train --init-from MODEL.onnx`` or ``--init-from default``).

What ``cgan-export`` writes, and so what can be read back (fp32 exports only):

- ``label_emb.weight``: the stage embedding, exactly.
- Each upsampling block: the ConvTranspose with its BatchNorm folded in (float64 arithmetic, stored as
  float32): ``W' = W * s`` and ``b' = beta - mean * s`` with ``s = gamma / sqrt(var + eps)`` per output
  channel; the conditional-BatchNorm generator (cbn.py) keeps its per-stage gain and shift tables beside
  ``W' = W / sqrt(var + eps)``, ``b' = -mean / sqrt(var + eps)``. The block computes
  ``relu(a[s] * (W' x) + c[s])`` with ``a = 1, c = b'`` (dcgan) or ``a = gain, c = gain * b' + shift`` (cbn).
- The last ConvTranspose (no BatchNorm after it, no bias): exactly.

The split of a folded layer back into a conv weight, gamma, beta and running statistics is not in the
file: any per-channel scale could move between them. It is rebuilt so that the generator *is* the
exported function in eval mode, and behaves like it in training mode: the conv weight is ``W'``; the
BatchNorm's running mean and variance are measured on ``W' x`` over a calibration batch (the exported
function's own activations at balanced stages; :data:`CALIBRATION_IMAGES` fixed noise vectors); the
affine is then ``gamma = a * sqrt(var + eps)``, ``beta = c + a * mean`` — the same function in eval
mode, exactly in real arithmetic, and in training mode the batch statistics of ``W' x`` stand for the
measured ones, as the original's running statistics stood for its batches'. Not recovered: the
original conv weights' per-channel scale (so Adam's per-weight steps are not the original run's), the
discriminator, the optimizers' moments, the EMA copy, the random-number states and the step count.
The rebuilt generator is checked against the file in ONNX Runtime before training starts.

A dcgan export can also start the cbn generator: every stage's gain and shift rows get the shared
BatchNorm's values, so it starts as the same function and each stage then moves on its own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cgan.runtime.contract import INPUT_STAGE, INPUT_Z, OUTPUT_IMAGE, Key, ModelInfo, noise
from cgan.runtime.deps import require
from cgan.runtime.errors import CganError
from cgan.runtime.fileio import sha256_file
from cgan.runtime.resolve import EMBEDDED_DEFAULT

from ..models import GeneratorConfig, build_generator

DEFAULT_NAME = "default"  # --init-from default: the model embedded in the package
CALIBRATION_IMAGES = 256  # noise vectors whose activations give the rebuilt BatchNorm statistics
CHECK_IMAGES = 8  # per stage, compared with ONNX Runtime after the rebuild
CHECK_TOLERANCE = 1e-4  # max abs difference (images in [-1, 1]) accepted; measured ~1e-6 on the default model
_ALLOWED_OPS = {"Gather", "Concat", "Unsqueeze", "ConvTranspose", "Relu", "Mul", "Add", "Tanh", "Constant"}


def is_onnx_source(path: Path | str) -> bool:
    """Whether ``--init-from`` names an exported model (a ``.onnx`` file or ``default``) rather than a checkpoint."""
    return str(path) == DEFAULT_NAME or str(path).lower().endswith(".onnx")


def resolve_source(path: Path | str) -> Path:
    return EMBEDDED_DEFAULT if str(path) == DEFAULT_NAME else Path(path)


@dataclass
class ExportedGenerator:
    """The weights of an fp32 cgan-export graph, as numpy arrays, and what its metadata says."""

    path: Path
    config: GeneratorConfig  # sizes and architecture of the exported generator
    label_emb: np.ndarray  # [K, K]
    convs: list[np.ndarray]  # folded block weights W' [C_in, C_out, 4, 4]
    scale: list[np.ndarray]  # a [K, C_out] per block
    offset: list[np.ndarray]  # c [K, C_out] per block
    to_image: np.ndarray  # [C_in, channels, 4, 4]
    info: ModelInfo
    sha256: str

    def describe(self) -> str:
        name = "the embedded default model" if self.path == EMBEDDED_DEFAULT else str(self.path)
        steps = self.info.provenance.get(Key.STEPS)
        return f"{name} ({self.config.arch}, sha256 {self.sha256[:12]}{f', trained {steps} steps' if steps else ''})"


def read_exported(path: Path | str) -> ExportedGenerator:
    """Read an fp32 ``cgan-export`` file (a path, or ``default``), or raise :class:`CganError` saying why not."""
    shown = str(path)
    path = resolve_source(path)
    onnx = require("onnx", command="cgan-train --init-from MODEL.onnx", extra="export")
    from onnx import numpy_helper

    from cgan.runtime.contract import read_metadata

    if not path.is_file():
        raise CganError(f"--init-from {shown}: no such file; give a .onnx that cgan-export wrote, or 'default'")
    info = read_metadata(path)  # the contract's own checks: required metadata, inputs, output
    if info.precision != "fp32":
        raise CganError(f"--init-from {shown} is an {info.precision} export; a warm start reads fp32 weights exactly: "
                        "export the checkpoint again without --fp16/--int8")
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    if ops - _ALLOWED_OPS:
        raise CganError(f"--init-from {shown} has operators {', '.join(sorted(ops - _ALLOWED_OPS))} that an fp32 "
                        "cgan-export generator does not have (an int8 or rewritten graph?); give an fp32 export")
    tensors = {t.name: np.array(numpy_helper.to_array(t)) for t in model.graph.initializer}  # writable copies
    arch = info.provenance.get(Key.ARCHITECTURE) or ("cbn" if "blocks.0.gain.weight" in tensors else "dcgan")
    try:
        return _from_tensors(path, tensors, arch, info, sha256_file(path))
    except KeyError as exc:
        raise CganError(f"--init-from {shown} lacks the weight {exc.args[0]} of a cgan-export {arch} generator") from None


def _from_tensors(path: Path, t: dict[str, np.ndarray], arch: str, info: ModelInfo, sha: str) -> ExportedGenerator:
    emb = t["label_emb.weight"]
    k = emb.shape[0]
    if arch == "dcgan":
        # the folded Sequential: conv, relu, conv, relu, ..., conv, tanh -> even indices
        idx = sorted(int(m.group(1)) for name in t if (m := re.fullmatch(r"net\.(\d+)\.weight", name)))
        convs = [t[f"net.{i}.weight"] for i in idx[:-1]]
        scale = [np.ones((k, w.shape[1]), np.float32) for w in convs]
        offset = [np.broadcast_to(t[f"net.{i}.bias"], (k, w.shape[1])) for i, w in zip(idx[:-1], convs)]
        to_image = t[f"net.{idx[-1]}.weight"]
    elif arch == "cbn":
        n = len([name for name in t if re.fullmatch(r"blocks\.\d+\.conv\.weight", name)])
        convs = [t[f"blocks.{i}.conv.weight"] for i in range(n)]
        scale = [t[f"blocks.{i}.gain.weight"] for i in range(n)]
        offset = [t[f"blocks.{i}.gain.weight"] * t[f"blocks.{i}.conv.bias"][None, :] + t[f"blocks.{i}.shift.weight"]
                  for i in range(n)]
        to_image = t["to_image.weight"]
    else:
        raise CganError(f"--init-from {path}: unknown generator architecture {arch!r} in its metadata")
    if any(a.dtype != np.float32 for a in [emb, to_image, *convs]):
        raise CganError(f"--init-from {path}: its weights are not float32; give an fp32 export")
    try:
        config = GeneratorConfig(z_dim=convs[0].shape[0] - k, num_classes=k, img_size=2 ** (len(convs) + 2),
                                 channels=to_image.shape[1], width=convs[0].shape[1], arch=arch)
    except (ValueError, IndexError) as exc:
        raise CganError(f"--init-from {path}: its weights describe no cgan generator ({exc})") from None
    sizes = {"z_dim": info.z_dim, "num_classes": info.num_classes, "img_size": info.img_size, "channels": info.channels}
    wrong = [f"{name} {getattr(config, name)} (metadata: {value})" for name, value in sizes.items() if getattr(config, name) != value]
    if wrong:
        raise CganError(f"--init-from {path}: its weights contradict its metadata: {', '.join(wrong)}")
    return ExportedGenerator(path, config, emb, convs, [np.array(a, np.float32) for a in scale],
                             [np.array(c, np.float32) for c in offset], to_image, info, sha)  # writable copies


def check_fits(exported: ExportedGenerator, target: GeneratorConfig, shown: str) -> None:
    """Refuse a run whose generator the exported weights cannot start, naming the flag to change."""
    src = exported.config
    flags = {"img_size": "--img-size", "z_dim": "--z-dim", "width": "--width", "num_classes": "classes in the data",
             "channels": "channels"}
    for name, flag in flags.items():
        if getattr(src, name) != getattr(target, name):
            raise CganError(f"--init-from {shown} has {name} {getattr(src, name)}; this run has {flag} "
                            f"{getattr(target, name)}, and the weights only fit the same value")
    if src.arch == "cbn" and target.arch != "cbn":
        raise CganError(f"--init-from {shown} is a conditional-BatchNorm (cbn) generator; start it with --generator cbn")


# ---------------------------------------------------------------- the rebuild

def _exported_forward(exp: ExportedGenerator, z: torch.Tensor, stage: torch.Tensor, pre_norm: list | None = None):
    """The exported function in torch (float32): ``pre_norm`` collects each block's ``W' x``."""
    h = torch.cat([z, torch.from_numpy(exp.label_emb)[stage]], dim=1)[:, :, None, None]
    for i, w in enumerate(exp.convs):
        stride, pad = (1, 0) if i == 0 else (2, 1)
        y = nn.functional.conv_transpose2d(h, torch.from_numpy(w), stride=stride, padding=pad)
        if pre_norm is not None:
            pre_norm.append(y)
        a = torch.from_numpy(exp.scale[i])[stage][:, :, None, None]
        c = torch.from_numpy(exp.offset[i])[stage][:, :, None, None]
        h = torch.relu(a * y + c)
    return torch.tanh(nn.functional.conv_transpose2d(h, torch.from_numpy(exp.to_image), stride=2, padding=1))


@torch.no_grad()
def calibrate(exp: ExportedGenerator, n: int = CALIBRATION_IMAGES, batch: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per block, the mean and (biased) variance per channel of ``W' x`` over ``n`` fixed noise vectors
    (``contract.noise(seed 0)``) at balanced stages, accumulated in float64."""
    cfg = exp.config
    sums: list[Any] = [None] * len(exp.convs)
    for start in range(0, n, batch):
        m = min(batch, n - start)
        z = torch.from_numpy(noise(0, start, m, cfg.z_dim))
        stage = torch.arange(start, start + m) % cfg.num_classes
        pre: list[torch.Tensor] = []
        _exported_forward(exp, z, stage, pre)
        for i, y in enumerate(pre):
            y = y.double()
            part = torch.stack([y.sum((0, 2, 3)), y.square().sum((0, 2, 3))])
            count = y.shape[0] * y.shape[2] * y.shape[3]
            sums[i] = (part, count) if sums[i] is None else (sums[i][0] + part, sums[i][1] + count)
    stats = []
    for (s, count) in sums:
        mean = s[0] / count
        var = (s[1] / count - mean.square()).clamp_min(0.0)
        stats.append((mean.numpy(), var.numpy()))
    return stats


def rebuild_generator(exp: ExportedGenerator, target: GeneratorConfig) -> nn.Module:
    """A generator of ``target``'s architecture computing the exported function (eval mode), per the module docstring."""
    check_fits(exp, target, str(exp.path))
    generator = build_generator(target)
    stats = calibrate(exp)
    with torch.no_grad():
        generator.label_emb.weight.copy_(torch.from_numpy(exp.label_emb))
        convs, norms, last = _layers(generator)
        for conv, (norm, gain, shift), w, a, c, (mean, var) in zip(convs, norms, exp.convs, exp.scale, exp.offset, stats):
            conv.weight.copy_(torch.from_numpy(w))
            a64, c64 = a.astype(np.float64), c.astype(np.float64)
            new_gain = a64 * np.sqrt(var + norm.eps)[None, :]
            new_shift = c64 + a64 * mean[None, :]
            norm.running_mean.copy_(torch.from_numpy(mean))
            norm.running_var.copy_(torch.from_numpy(var))
            norm.num_batches_tracked.zero_()
            if gain.dim() == 1:  # one affine for every stage (dcgan): the rows are equal by construction
                gain.copy_(torch.from_numpy(new_gain[0]))
                shift.copy_(torch.from_numpy(new_shift[0]))
            else:
                gain.copy_(torch.from_numpy(new_gain))
                shift.copy_(torch.from_numpy(new_shift))
        last.weight.copy_(torch.from_numpy(exp.to_image))
    return generator.eval()


def _layers(generator: nn.Module):
    """(block convs, [(BatchNorm, gain tensor, shift tensor)], output conv) of either architecture."""
    if generator.config.arch == "cbn":
        norms = [(n.bn, n.gain.weight, n.shift.weight) for n in generator.norms]
        return list(generator.convs), norms, generator.to_image
    mods = list(generator.net)
    convs = [m for m in mods if isinstance(m, nn.ConvTranspose2d)]
    bns = [m for m in mods if isinstance(m, nn.BatchNorm2d)]
    return convs[:-1], [(b, b.weight, b.bias) for b in bns], convs[-1]


@torch.no_grad()
def max_difference(exp: ExportedGenerator, generator: nn.Module) -> float:
    """Max abs difference between the file run by ONNX Runtime and ``generator`` (eval) at every stage."""
    import onnxruntime as ort

    cfg = exp.config
    z = noise(1, 0, CHECK_IMAGES * cfg.num_classes, cfg.z_dim)
    stage = np.arange(len(z), dtype=np.int64) % cfg.num_classes
    session = ort.InferenceSession(str(exp.path), providers=["CPUExecutionProvider"])
    (want,) = session.run([OUTPUT_IMAGE], {INPUT_Z: z, INPUT_STAGE: stage})
    was = generator.training
    generator.eval()
    got = generator(torch.from_numpy(z), torch.from_numpy(stage)).numpy()
    generator.train(was)
    return float(np.abs(got - want).max())


def warm_state(exp: ExportedGenerator, target: GeneratorConfig, class_names: list[str],
               shown: str) -> tuple[dict[str, torch.Tensor], float]:
    """(the rebuilt generator's state dict for ``target``, its checked difference from the file) for a run
    on data with ``class_names``."""
    if exp.config.num_classes != target.num_classes:
        raise CganError(f"--init-from {shown} generates {exp.config.num_classes} stages; the data has "
                        f"{target.num_classes} classes ({', '.join(class_names)})")
    generator = rebuild_generator(exp, target)
    return generator.state_dict(), check_rebuild(exp, generator, shown)


def check_rebuild(exp: ExportedGenerator, generator: nn.Module, shown: str) -> float:
    """The max abs difference of :func:`max_difference`; a :class:`CganError` when above :data:`CHECK_TOLERANCE`."""
    diff = max_difference(exp, generator)
    if not math.isfinite(diff) or diff > CHECK_TOLERANCE:
        raise CganError(f"--init-from {shown}: the rebuilt generator differs from the file by {diff:.2e} "
                        f"(more than {CHECK_TOLERANCE:g}); the file is not a plain cgan-export graph")
    return diff
