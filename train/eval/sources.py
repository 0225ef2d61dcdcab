"""Generators under evaluation: an exported ``.onnx`` (through the torch-free runtime), a checkpoint
(through torch), or the model cgan-run would use. Image k of stage s always uses the latent row
``contract.noise(seed, k, 1, z_dim)`` (the runtime's seed contract, its default noise version), whatever the file kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cgan.runtime.contract import LAST_EXPORT, noise, stage_names_for, to_uint8
from cgan.runtime.errors import CganError


class EvalError(CganError):
    """An evaluation that cannot run as asked (model and data that do not fit, bad settings)."""


class Source:
    """A generator under evaluation: ``generate(stage, n, seed)`` -> uint8 ``[n, H, W]``.

    Image k of stage s uses the latent row ``contract.noise(seed, k, 1, z_dim)`` (the runtime's seed
    contract), whatever kind of file the generator came from.
    """

    description: str = ""
    kind: str = ""
    img_size: int = 0
    num_classes: int = 0
    stage_names: tuple[str, ...] = ()
    training_data: str = "not recorded"

    def generate(self, stage: int, n: int, seed: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class OnnxSource(Source):
    """An exported ``.onnx`` model run through the torch-free runtime (``cgan.runtime.load``)."""

    def __init__(self, model: str | Path | None = None, *, provider: str = "auto", threads: int | None = None) -> None:
        from cgan.runtime import load

        self.gen = load(model, provider=provider, threads=threads)
        info = self.gen.info
        if info.channels != 1:
            raise EvalError(f"{self.gen.source} has {info.channels} channels; cgan-eval measures grayscale (1-channel) models")
        self.description = f"{self.gen.source} [{self.gen.engine}, {self.gen.provider}]"
        self.kind = "onnx"
        self.img_size, self.num_classes, self.stage_names = info.img_size, info.num_classes, tuple(info.stage_names)
        self.training_data = self.gen.training_data

    def generate(self, stage: int, n: int, seed: int) -> np.ndarray:
        return self.gen.generate(stage, n, seed=seed)


class TorchSource(Source):
    """A torch Generator (from a checkpoint, or in memory), fed the same noise rows as the runtime."""

    def __init__(self, generator: Any, *, description: str = "in-memory Generator", device: str = "cpu",
                 training_data: str = "not recorded", batch_size: int = 128,
                 class_names: list[str] | None = None) -> None:
        import torch

        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        cfg = generator.config
        if cfg.channels != 1:
            raise EvalError(f"{description} has {cfg.channels} channels; cgan-eval measures grayscale (1-channel) models")
        self.description, self.kind = description, "checkpoint"
        self.img_size, self.num_classes = cfg.img_size, cfg.num_classes
        self.stage_names = stage_names_for(cfg.num_classes, class_names)
        self.training_data = training_data
        self.batch_size = batch_size
        self.z_dim = cfg.z_dim

    def generate(self, stage: int, n: int, seed: int) -> np.ndarray:
        import torch

        out = np.empty((n, self.img_size, self.img_size), dtype=np.uint8)
        with torch.no_grad():
            for k0 in range(0, n, self.batch_size):
                b = min(self.batch_size, n - k0)
                z = torch.from_numpy(noise(seed, k0, b, self.z_dim)).to(self.device)
                labels = torch.full((b,), stage, dtype=torch.long, device=self.device)
                out[k0 : k0 + b] = to_uint8(self.generator(z, labels).float().cpu().numpy())[:, 0]
        return out


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def load_source(model: str | Path | None, *, device: str = "auto", threads: int | None = None) -> Source:
    """The generator to evaluate: an ``.onnx`` path or ``hf:OWNER/REPO[/FILE]`` (runtime), a checkpoint
    (``.pth``/``.pt``, loaded with the trainer's checkpoint reader), or None: the model cgan-run would
    use (the last export ``model_output/cDCGAN_generator.onnx``, else the embedded default)."""
    if model is None:
        from cgan.runtime.resolve import EMBEDDED_DEFAULT

        if not (LAST_EXPORT.is_file() or EMBEDDED_DEFAULT.is_file()):
            raise EvalError(f"no MODEL given, no {LAST_EXPORT} here and no embedded default model in this "
                            "installation; give an .onnx file, a .pth/.pt checkpoint or hf:OWNER/REPO, "
                            "or run `cgan-export` first")
    if model is None or str(model).startswith("hf:"):
        return OnnxSource(model, provider=device, threads=threads)
    path = Path(model).expanduser()
    if not path.exists():
        raise EvalError(f"model {path} does not exist; give an .onnx file, a .pth/.pt checkpoint or hf:OWNER/REPO")
    if path.is_dir():
        raise EvalError(f"model {path} is a folder; give an .onnx file or a .pth/.pt checkpoint")
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        from cgan.train.store.read import load_generator
        from .devices import resolve_device

        generator, meta = load_generator(path)
        prov = meta.get("provenance", {})
        data = prov.get("training_data") or prov.get("cgan.training_data") or "not recorded"
        dev = resolve_device(device)
        return TorchSource(generator, description=f"{path} [checkpoint, {meta.get('format', '?')}, torch on {dev.type}]",
                           device=str(dev), training_data=data, class_names=meta.get("class_names"))
    if path.suffix.lower() != ".onnx":
        raise EvalError(f"model {path} has an unknown extension {path.suffix!r}; expected .onnx or a .pth/.pt checkpoint")
    return OnnxSource(path, provider=device, threads=threads)


