"""What ``--init-from`` starts a run from, read and checked before any data is loaded: a full checkpoint
of another run (fine-tuning: its G and D) or an exported generator (a warm start: G rebuilt from the
``.onnx``, see :mod:`cgan.train.store.read_exported`, beside a fresh D)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cgan.runtime.errors import CganError

from ..models import GeneratorConfig
from ..options import TrainConfig
from .read import load_checkpoint
from .read_exported import ExportedGenerator, check_fits, is_onnx_source, read_exported


def read_init(config: TrainConfig) -> dict[str, Any] | ExportedGenerator:
    """The checkpoint body or the exported generator named by ``config.init_from``, checked to fit this run."""
    if is_onnx_source(config.init_from):
        exported = read_exported(config.init_from)
        # the stage count is checked once the data is loaded (TrainingRun.load_init)
        target = GeneratorConfig(z_dim=config.z_dim, num_classes=exported.config.num_classes, img_size=config.img_size,
                                 width=config.width, arch=config.generator)
        check_fits(exported, target, str(config.init_from))
        return exported
    source = Path(config.init_from)
    if not source.is_file():
        raise CganError(f"--init-from {source}: no such checkpoint file; give a ckpt_*.pt from a run's checkpoints/ folder, "
                        "an exported .onnx, or 'default'")
    state = load_checkpoint(source, hint="--init-from takes a ckpt_*.pt that cgan-train wrote, or an exported .onnx")
    saved = TrainConfig.from_checkpoint(state, source, "--init-from")
    for name in TrainConfig.ARCH_FIELDS:
        new, old = getattr(config, name), getattr(saved, name)
        if new != old:
            flag = "--" + name.replace("_", "-")
            raise CganError(f"--init-from {source} was trained with {name}={old!r}; this run has {flag} {new!r}, "
                            f"and the weights only fit the same value")
    if (config.aux_weight > 0) != (saved.aux_weight > 0):
        had = "has a stage classifier" if saved.aux_weight > 0 else "has no stage classifier"
        raise CganError(f"--init-from {source}: its discriminator {had} (--aux-weight {saved.aux_weight:g}); "
                        f"this run has --aux-weight {config.aux_weight:g}: both 0 or both above 0")
    if config.aux_weight > 0 and (config.aux_head == "twin") != (saved.aux_head == "twin"):
        # ac and real have one class per stage (they differ in what D fits the classifier on), twin two
        raise CganError(f"--init-from {source}: its discriminator's stage classifier is --aux-head {saved.aux_head}; "
                        f"this run has --aux-head {config.aux_head}, and the weights only fit a head of the same "
                        f"classes (ac and real: one per stage; twin: two)")
    return state


def absolute(config: TrainConfig) -> TrainConfig:
    """``data`` and ``init_from`` made absolute (a resumed run may start from another working directory);
    ``--init-from default`` stays the word."""
    for key in ("data", "init_from"):
        value = getattr(config, key)
        if value is not None and not (key == "init_from" and str(value) == "default"):
            config = dataclasses.replace(config, **{key: Path(value).expanduser().resolve()})
    return config
