"""Export a Generator (or a checkpoint) to a validated ONNX file with the dementia-cgan metadata and a model card.

    from cgan.export.api import export_generator
    report = export_generator(generator, Path("model.onnx"))   # raises a CganError, writing nothing, on failure
    report.path, report.max_abs_err, report.info
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from cgan.runtime import __version__
from cgan.runtime.contract import DISCLAIMER, REQUIRED_KEYS, Key, ModelInfo, check_stage_names, read_metadata, stage_names_for
from cgan.runtime.errors import CganError
from cgan.runtime.errors import DiskFullError
from cgan.runtime.fileio import atomic_path, atomic_write_text

from .card import card_path_for, render_card
from cgan.train.store.read import EMA_KEYS, load_generator
from .errors import ExportError
from .outputs import check_output as _check_output
from .onnx_export import DEFAULT_OPSET, build_inference_module, check_graph, check_opset, trace_to_onnx
from .validate import BATCH_SIZES, compare_with_torch, default_tolerance, validation_providers

__all__ = ["ExportReport", "export_checkpoint", "export_generator", "load_generator"]

# Short provenance names (as cgan-train writes them) -> metadata keys.
_SHORT_KEYS = {
    "checkpoint_sha256": Key.CHECKPOINT_SHA256,
    "training_data": Key.TRAINING_DATA,
    "epochs": Key.EPOCHS,
    "steps": Key.STEPS,
    "created": Key.CREATED,
    "tool_version": Key.TOOL_VERSION,
}
# Keys only the exporter may set: they describe this file, not the weights.
_EXPORT_KEYS = set(REQUIRED_KEYS) | {
    Key.PRECISION, Key.OPSET, Key.PARITY_MAX_ABS_ERR, Key.PARITY_TOLERANCE, Key.PARITY_PROVIDERS, Key.EXPORTED,
    Key.ARCHITECTURE,
}


@dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_err: float
    info: ModelInfo
    card_path: Path | None = None
    opset: int = DEFAULT_OPSET
    precision: str = "fp32"
    tolerance: float = 0.0
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    per_batch: dict[int, float] = field(default_factory=dict)
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    seconds: float = 0.0
    size_bytes: int = 0

    def summary(self) -> str:
        return (
            f"exported {self.path} ({self.precision}, opset {self.opset}, {self.size_bytes / 1e6:.1f} MB) "
            f"in {self.seconds:.1f} s; max abs err {self.max_abs_err:.2e} vs torch "
            f"(tolerance {self.tolerance:g}, batches {', '.join(map(str, self.batch_sizes))})"
        )


def export_generator(
    generator: Any,
    out: Path,
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    provenance: Mapping[str, Any] | None = None,
    stage_names: tuple[str, ...] | list[str] | None = None,
    tolerance: float | None = None,
    model_card: bool = True,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> ExportReport:
    """Trace ``generator`` to ONNX at ``out``, validate it against torch, then write it with metadata.

    ``provenance`` takes short names (training_data, epochs, steps, created, tool_version,
    checkpoint_sha256, or anything else, stored as ``cgan.<name>``) or full ``cgan.*`` keys.
    ``stage_names``: the names the model is published with (see :func:`cgan.runtime.contract.stage_names_for`;
    by default the dementia stage names for four classes, else ``stage i``).
    On any failure a :class:`CganError` is raised and neither the model nor the card is written.
    An existing ``out`` (or card beside it) is refused, before any work, unless ``overwrite=True``.
    The caller's module is not modified (a CPU float32 copy in eval mode is exported).
    """
    import onnx  # noqa: F401 - fail early, with the extra's name, if the export extra is missing

    say = log or (lambda _msg: None)
    started = time.perf_counter()
    check_opset(opset)
    tolerance = default_tolerance(fp16) if tolerance is None else float(tolerance)
    if not tolerance >= 0:
        raise ExportError(f"tolerance must be a number >= 0, got {tolerance}")
    out = Path(out)
    _check_output(out, overwrite=overwrite, card=model_card)
    reference = _reference_copy(generator)
    cfg = reference.config
    if stage_names is not None and len(stage_names) != cfg.num_classes:
        raise ExportError(f"{len(stage_names)} stage names {list(stage_names)} for a Generator of {cfg.num_classes} stages")
    if stage_names is not None:
        check_stage_names(list(stage_names), "stage_names")
    precision = "fp16" if fp16 else "fp32"

    say(f"tracing the Generator ({cfg.img_size} px, z_dim {cfg.z_dim}, {cfg.num_classes} stages) to ONNX opset {opset}, {precision}")
    model = trace_to_onnx(build_inference_module(reference, fp16=fp16), z_dim=cfg.z_dim, opset=opset)
    check_graph(model, z_dim=cfg.z_dim, channels=cfg.channels, img_size=cfg.img_size, opset=opset)
    providers = validation_providers(fp16)
    say(f"validating in onnxruntime ({', '.join(providers)}) against torch at batch sizes {', '.join(map(str, BATCH_SIZES))}, every stage")
    model_bytes = model.SerializeToString()
    parity = max((compare_with_torch(model_bytes, reference, tolerance=tolerance, provider=p) for p in providers),
                 key=lambda p: p.max_abs_err)

    info = ModelInfo(
        z_dim=cfg.z_dim,
        num_classes=cfg.num_classes,
        img_size=cfg.img_size,
        channels=cfg.channels,
        stage_names=tuple(stage_names) if stage_names is not None else stage_names_for(cfg.num_classes),
        precision=precision,
        provenance=_export_provenance(provenance or {}, cfg, opset=opset, parity=parity, tolerance=tolerance, providers=providers),
    )
    _set_metadata(model, info)
    data = model.SerializeToString()
    card_path = _write(out, data, render_card(info, out.name) if model_card else None)
    return ExportReport(
        path=out,
        max_abs_err=parity.max_abs_err,
        info=ModelInfo.from_metadata(info.to_metadata(), source=str(out)),
        card_path=card_path,
        opset=opset,
        precision=precision,
        tolerance=tolerance,
        batch_sizes=parity.batch_sizes,
        per_batch=dict(parity.per_batch),
        providers=tuple(providers),
        seconds=time.perf_counter() - started,
        size_bytes=len(data),
    )


def export_checkpoint(checkpoint: Path, out: Path, **kwargs: Any) -> ExportReport:
    """Load ``checkpoint`` (see :func:`load_generator`) and export it; its provenance and sha256 go in the metadata."""
    log = kwargs.get("log") or (lambda _msg: None)
    generator, meta = load_generator(Path(checkpoint), weights=kwargs.pop("weights", "auto"))
    log(f"loaded {meta['format']} checkpoint {checkpoint} (sha256 {meta['sha256'][:12]}...)")
    prov: dict[str, Any] = dict(meta["provenance"])
    prov["checkpoint_sha256"] = meta["sha256"]
    prov["checkpoint_format"] = meta["format"]
    if meta["state_key"]:
        prov["checkpoint_weights"] = meta["state_key"]
    if meta["format"] == "training-checkpoint" and meta["state_key"] not in EMA_KEYS:
        prov["ema"] = "false (the raw weights of a training checkpoint were exported)"
    prov.update(kwargs.pop("provenance", None) or {})
    kwargs.setdefault("stage_names", meta["stage_names"])
    return export_generator(generator, out, provenance=prov, **kwargs)


# ---------------------------------------------------------------- internals

def _reference_copy(generator: Any) -> Any:
    """A CPU float32 copy in eval mode of a Generator (unwrapped from DDP or torch.compile); the caller's stays as it is."""
    for wrapper_attr in ("module", "_orig_mod"):  # DistributedDataParallel, torch.compile
        generator = getattr(generator, wrapper_attr, generator)
    body = ("convs", "norms", "to_image") if getattr(getattr(generator, "config", None), "arch", "dcgan") == "cbn" else ("net",)
    if not all(hasattr(generator, a) for a in ("config", "label_emb", *body)):
        raise ExportError(f"export_generator needs a cgan.train.models.Generator, got {type(generator).__name__}")
    return copy.deepcopy(generator).float().cpu().eval()


def _export_provenance(provenance: Mapping[str, Any], cfg: Any, *, opset: int, parity: Any, tolerance: float,
                       providers: list[str]) -> dict[str, str]:
    """The metadata beyond the model's shape: where the weights came from, and what this export measured."""
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    prov = {Key.CREATED: now, Key.TOOL_VERSION: __version__}
    prov.update(_provenance_keys(provenance))
    prov.update(
        {
            Key.OPSET: str(opset),
            Key.PARITY_MAX_ABS_ERR: f"{parity.max_abs_err:.3e}",
            Key.PARITY_TOLERANCE: f"{tolerance:g}",
            Key.PARITY_PROVIDERS: ",".join(providers),
            Key.EXPORTED: now,
            # read from the weights themselves: a warm start (cgan-train --init-from MODEL.onnx) rebuilds it
            Key.ARCHITECTURE: getattr(cfg, "arch", "dcgan"),
        }
    )
    return prov


def _write(out: Path, data: bytes, card_text: str | None) -> Path | None:
    """Write the model, once the runtime's own reader accepts it, then its card; returns the card's path."""
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
            read_metadata(tmp)  # the runtime's own reader must accept the file before it gets its name
        card_path = card_path_for(out) if card_text is not None else None
        if card_path is not None:
            atomic_write_text(card_path, card_text)
        return card_path
    except DiskFullError:
        raise
    except CganError as exc:
        raise ExportError(f"the written model did not pass the runtime's checks ({exc}); nothing was kept") from None
    except OSError as exc:
        raise ExportError(f"cannot write {out} ({exc.strerror or exc}); choose another --out") from None


def _provenance_keys(provenance: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for name, value in provenance.items():
        if value is None:
            continue
        if name.startswith("cgan."):
            key = name
            if key in _EXPORT_KEYS:
                continue  # describes the exported file; the exporter measures it
        else:
            key = _SHORT_KEYS.get(name, f"cgan.{name}")
            if key in _EXPORT_KEYS:  # e.g. the trainer's "precision" (mixed precision) is not the model's
                key = f"cgan.train_{name}"
        out[key] = str(value)
    return out


def _set_metadata(model: Any, info: ModelInfo) -> None:
    del model.metadata_props[:]
    for key, value in sorted(info.to_metadata().items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "dementia-cgan"
    model.producer_version = __version__
    model.doc_string = (
        f"dementia-cgan conditional DCGAN generator: (z [N, {info.z_dim}] float32, stage [N] int64) -> "
        f"image [N, {info.channels}, {info.img_size}, {info.img_size}] float32 in [-1, 1]. {DISCLAIMER}"
    )
