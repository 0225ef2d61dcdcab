"""int8 versions of an exported fp32 generator, validated against it before anything is written.

    from cgan.export.int8 import quantize_int8
    result = quantize_int8(onnx.load("gen.onnx"), mode="size")   # raises FidelityError beyond the bar
    result.model, result.fidelity, result.fp32_layers

Two modes, each checked the same way (:mod:`.int8_fidelity`: mean and worst case over 256 images
per stage, on the machine that exports, whose CPU class is recorded in the model):

* ``size``: int8 weights per output channel, float32 activations (:mod:`.int8_weights`): a quarter of
  the file, float32 arithmetic, no calibration, the same on every CPU.
* ``speed``: static QDQ (int8 weights, uint8 activations calibrated on the generator's own images of
  every stage) after rewriting the ConvTranspose layers so int8 kernels run them (:mod:`.rewrite`).
  Weights use the reduced 7-bit range: on CPUs without VNNI (AVX2) ONNX Runtime's u8 x s8 kernels add
  pairs of products in 16 bits, which full-range weights can saturate, and a model may be exported on
  one CPU and run on another.

Both then keep the layers whose quantization costs most (measured one by one on a screening subset)
in float32, one more at a time, until the model meets the bar -- or refuse, writing nothing.
"""

from __future__ import annotations

import contextlib
import json
import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cgan.runtime.contract import INPUT_STAGE, INPUT_Z, OUTPUT_IMAGE, Key, ModelInfo
from cgan.runtime.cpu import INT8_ISA_KEY, INT8_MAX_KEY, INT8_P999_KEY, cpu_model, isa_class, isa_summary

from .errors import ExportError, ValidationError
from .int8_fidelity import (  # noqa: F401 - re-exported: the names callers and the bench import from here
    MAX_GREY, MAX_MAE_GREY, MAX_P999_GREY, MIN_PSNR_DB, SCREEN_PER_STAGE, VALIDATION_PER_STAGE,
    Bar, Feeds, Fidelity, Reference, measure_fidelity, stage_feeds,
)  # fmt: skip
from .int8_weights import quantize_weights
from .rewrite import RewriteReport, rewrite_for_int8

MODES = ("size", "speed")
# The rewrite is exact up to float summation order: the fp32 exporter's own tolerance.
REWRITE_TOLERANCE = 1e-4
CALIBRATION_PER_STAGE = 32  # images per stage whose activations set the ranges
CALIBRATION_SEED = 1_000_003  # noise seeds: calibration and validation never share an image
VALIDATION_SEED = 2_000_003
MAX_FP32_LAYERS = 2  # more than this and the model is no longer an int8 model
LAYER_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")

# Metadata written into the int8 model (besides cgan.precision = int8).
QUANT_KEY = "cgan.quantization"  # JSON: mode, scheme, calibration, layers kept in fp32, per-stage figures, the bar
INT8_PSNR_KEY = "cgan.int8_psnr_db"  # worst stage, against the fp32 source
INT8_MAE_KEY = "cgan.int8_mae_grey"  # worst stage, grey levels of 255
# INT8_MAX_KEY: largest per-pixel difference over the validation images; INT8_P999_KEY: the worst stage's
# 99.9th percentile of it; INT8_ISA_KEY: the CPU class they were measured on (the runtime reads these three).
INT8_CPU_KEY = "cgan.int8_cpu"  # that CPU's model name and flags
SOURCE_SHA_KEY = "cgan.int8_source_sha256"  # the fp32 model it was made from


class FidelityError(ValidationError):
    """The int8 model is too far from its fp32 source; nothing was written."""


@dataclass(frozen=True)
class Int8Result:
    model: Any  # onnx.ModelProto, metadata set
    fidelity: Fidelity
    fp32_layers: tuple[str, ...]
    sensitivity: dict[str, Fidelity]  # each layer quantized alone (measured only when every layer in int8 misses the bar)
    rewrite: RewriteReport | None
    rewrite_max_abs_err: float
    tried: list[tuple[tuple[str, ...], Fidelity]] = field(default_factory=list)
    mode: str = "speed"
    isa: str = ""


def quantize_int8(
    fp32_model: Any,
    *,
    mode: str = "size",
    calibration: Feeds | None = None,
    validation: Feeds | None = None,
    bar: Bar | None = None,
    max_fp32_layers: int = MAX_FP32_LAYERS,
    kernel: Callable[[np.ndarray], np.ndarray] | None = None,
    weight_levels: int = 127,
    source_sha256: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Int8Result:
    """Quantize ``fp32_model`` (an ``onnx.ModelProto`` written by cgan-export) to a validated int8 model.

    ``mode``: ``size`` or ``speed`` (module docstring). ``calibration`` (speed only) / ``validation``:
    batches of (z, stage); by default 32 and :data:`VALIDATION_PER_STAGE` images per stage, on different
    noise seeds. ``bar``: the :class:`Bar` to meet (default: max 16 and 99.9th percentile 4 grey levels,
    40 dB, MAE 1.5). ``weight_levels``: int8 steps each side of zero (127; tests pass a coarse one).
    ``kernel``: replaces the rewrite's kernel mapping (tests use a wrong one).
    Raises :class:`ValidationError` if the rewrite changes the fp32 output, :class:`FidelityError` if no
    choice of at most ``max_fp32_layers`` float32 layers meets the bar.
    """
    say = log or (lambda _msg: None)
    bar = bar or Bar()
    if mode not in MODES:
        raise ExportError(f"unknown int8 mode {mode!r}; expected one of {', '.join(MODES)}")
    info = _info_of(fp32_model)
    if info.precision != "fp32":
        raise ExportError(f"--int8 needs an fp32 model to start from; this one is {info.precision}")
    calibration = list(calibration) if calibration is not None else stage_feeds(info, CALIBRATION_PER_STAGE, CALIBRATION_SEED)
    validation = list(validation) if validation is not None else stage_feeds(info, VALIDATION_PER_STAGE, VALIDATION_SEED)
    for what, feeds in (("calibration", calibration), ("validation", validation)):
        if not feeds:
            raise ExportError(f"the {what} set is empty; give at least one batch of (z, stage)")
        for z, stages in feeds:
            z, stages = np.asarray(z), np.asarray(stages)
            if z.ndim != 2 or z.shape[1] != info.z_dim or stages.shape != (len(z),) or not ((stages >= 0) & (stages < info.num_classes)).all():
                raise ExportError(
                    f"a {what} batch has z {z.shape} and stage {stages.shape}; expected z [n, {info.z_dim}] and stage [n] "
                    f"with values 0..{info.num_classes - 1}"
                )

    reference_session = _session(fp32_model.SerializeToString())
    isa = isa_class()
    say(f"validating on {sum(len(s) for _, s in validation)} images over every stage, on this CPU ({isa}: {isa_summary()})")
    reference = Reference(reference_session, validation, info.num_classes)
    screen = reference.subset(SCREEN_PER_STAGE)
    report, err = None, 0.0
    with tempfile.TemporaryDirectory(prefix="cgan-int8-") as tmp:
        if mode == "speed":
            rewritten, report = rewrite_for_int8(fp32_model, kernel=kernel)
            err = _max_abs_diff(reference_session, _session(rewritten.SerializeToString()), info)
            say(f"rewrote {len(report.to_conv)} stride-2 ConvTranspose layers as Conv + DepthToSpace + crop and "
                f"{len(report.to_matmul)} as Gemm; max abs difference in fp32 {err:.2e}")
            if not err <= REWRITE_TOLERANCE:
                raise ValidationError(
                    f"the ConvTranspose rewrite changed the fp32 model's output by {err:.3g} (tolerance {REWRITE_TOLERANCE:g}); "
                    "nothing was written -- this is a bug in cgan.export.rewrite, please report it"
                )
            base = rewritten
            source = Path(tmp) / "rewritten.onnx"
            source.write_bytes(rewritten.SerializeToString())
            say(f"calibrating on {sum(len(s) for _, s in calibration)} images over every stage")

            def build(fp32: Sequence[str]) -> Any:
                return _quantize(source, Path(tmp) / "q.onnx", calibration, exclude=list(fp32))
        else:
            base = fp32_model

            def build(fp32: Sequence[str]) -> Any:
                return quantize_weights(base, exclude=fp32, levels=weight_levels)[0]

        layers = [n.name for n in base.graph.node if n.op_type in LAYER_OPS]

        def attempt(fp32: Sequence[str], against: Reference) -> tuple[Any, Fidelity]:
            model = build(fp32)
            return model, against.measure(_session(model.SerializeToString()))

        keep: tuple[str, ...] = ()
        model, fid = attempt(keep, reference)
        tried = [(keep, fid)]
        say(f"  every layer in int8: {fid.line()}")
        sensitivity: dict[str, Fidelity] = {}
        if not fid.meets(bar) and max_fp32_layers > 0:
            say(f"  beyond the bar; measuring what quantizing each layer alone costs ({SCREEN_PER_STAGE} images per stage)")
            for name in layers:
                sensitivity[name] = attempt([other for other in layers if other != name], screen)[1]
                say(f"  {name} alone in int8: {sensitivity[name].line()}")
            ranked = sorted(layers, key=lambda name: sensitivity[name].rank(), reverse=True)
            for k in range(1, min(max_fp32_layers, len(layers)) + 1):
                keep = tuple(ranked[:k])
                model, fid = attempt(keep, reference)
                tried.append((keep, fid))
                say(f"  fp32 layers {list(keep)}: {fid.line()}")
                if fid.meets(bar):
                    break
        if not fid.meets(bar):
            best_keep, best = min(tried, key=lambda t: t[1].rank())
            raise FidelityError(
                f"refused: the {mode} int8 model's worst pixel is {best.worst_max_grey} grey levels off and its 99.9th percentile "
                f"{best.worst_p999_grey} (PSNR {best.worst_psnr_db:.2f} dB, MAE {best.worst_mae_grey:.2f}; worst stage, "
                f"{best.images_per_stage} images per stage, {len(best_keep)} fp32 layers, {isa} CPU); the bar is {bar.line()}. "
                "Nothing was written; try the other --int8 mode or allow more fp32 layers (--max-fp32-layers)"
            )

    sha = source_sha256 or hashlib.sha256(fp32_model.SerializeToString()).hexdigest()
    _set_metadata(model, fp32_model, keep, fid, calibration if mode == "speed" else None, report, err, sha, sensitivity, mode, bar)
    return Int8Result(model, fid, keep, sensitivity, report, err, tried, mode, isa)


# ---------------------------------------------------------------- internals

def _info_of(model: Any) -> ModelInfo:
    return ModelInfo.from_metadata({p.key: p.value for p in model.metadata_props}, source="the fp32 model")


def _session(model_bytes: bytes) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def _max_abs_diff(reference: Any, candidate: Any, info: ModelInfo) -> float:
    rng = np.random.default_rng(0)
    worst = 0.0
    for n in (1, 7, 64):
        for s in range(info.num_classes):
            stages = (np.arange(n, dtype=np.int64) + s) % info.num_classes
            feed = {INPUT_Z: rng.standard_normal((n, info.z_dim), dtype=np.float32), INPUT_STAGE: stages}
            (a,) = reference.run([OUTPUT_IMAGE], feed)
            (b,) = candidate.run([OUTPUT_IMAGE], feed)
            worst = max(worst, float(np.abs(a.astype(np.float64) - b).max()))
    return worst


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader protocol over a list of batches."""

    def __init__(self, feeds: Feeds) -> None:
        self._it = iter([{INPUT_Z: np.ascontiguousarray(z, dtype=np.float32), INPUT_STAGE: np.asarray(s, dtype=np.int64)} for z, s in feeds])

    def get_next(self) -> dict | None:
        return next(self._it, None)


def _quantize(source: Path, out: Path, calibration: Feeds, *, exclude: list[str]) -> Any:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = type("CalibrationReader", (_Reader, CalibrationDataReader), {})(calibration)
    with _quiet(), _as_export_error("onnxruntime.quantization could not quantize the model"):
        quantize_static(
            str(source), str(out), reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=list(LAYER_OPS),  # only the layers: a QDQ pair on every Concat, Slice or DepthToSpace adds error, not speed
            reduce_range=True,  # 7-bit weights: no 16-bit saturation in u8 x s8 kernels without VNNI (module docstring)
        )  # fmt: skip
    model = onnx.load(str(out))
    for extra in out.parent.glob("*augmented*"):
        extra.unlink()
    return model


@contextlib.contextmanager
def _as_export_error(what: str):
    try:
        yield
    except ExportError:
        raise
    except Exception as exc:  # the quantizer and onnxruntime raise many types of their own
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise ExportError(f"{what} ({lines[0][:300] if lines else type(exc).__name__}); nothing was written") from None


@contextlib.contextmanager
def _quiet():
    """The quantizer logs a pre-processing hint at WARNING on the root logger on every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _set_metadata(model: Any, fp32_model: Any, keep: Sequence[str], fid: Fidelity, calibration: Feeds | None,
                  report: RewriteReport | None, rewrite_err: float, source_sha256: str, sensitivity: dict[str, Fidelity],
                  mode: str, bar: Bar) -> None:
    meta = {p.key: p.value for p in fp32_model.metadata_props}
    meta[Key.PRECISION] = "int8"
    scheme = {
        "size": "int8 weights per output channel (symmetric), float32 activations: DequantizeLinear before each layer",
        "speed": "static QDQ (onnxruntime.quantization): uint8 activations, int8 weights per output channel in the reduced "
                 "7-bit range, MinMax ranges",
    }[mode]  # fmt: skip
    quant = {
        "mode": mode,
        "scheme": scheme,
        "fp32_layers": list(keep),
        "bar": bar.as_dict(),
        "validation_images_per_stage": fid.images_per_stage,
        "sensitivity_max_grey": {name: f.worst_max_grey for name, f in sensitivity.items()},  # each layer alone in int8
        "psnr_db_per_stage": [round(v, 2) for v in fid.psnr_db],
        "mae_grey_per_stage": [round(v, 3) for v in fid.mae_grey],
        "max_grey_per_stage": list(fid.max_grey),
        "p999_grey_per_stage": list(fid.p999_grey),
    }
    if calibration is not None:
        quant["calibration"] = {"images": int(sum(len(s) for _, s in calibration)),
                                "stages": sorted({int(v) for _, s in calibration for v in np.unique(s)})}  # fmt: skip
    if report is not None:
        quant["rewrite"] = {"conv_depth_to_space": list(report.to_conv), "gemm": list(report.to_matmul),
                            "max_abs_err_fp32": float(f"{rewrite_err:.3e}")}  # fmt: skip
    meta[QUANT_KEY] = json.dumps(quant, sort_keys=True)
    meta[INT8_PSNR_KEY] = f"{fid.worst_psnr_db:.2f}"
    meta[INT8_MAE_KEY] = f"{fid.worst_mae_grey:.3f}"
    meta[INT8_MAX_KEY] = str(fid.worst_max_grey)
    meta[INT8_P999_KEY] = str(fid.worst_p999_grey)
    meta[INT8_ISA_KEY] = isa_class()
    meta[INT8_CPU_KEY] = f"{cpu_model()}; {isa_summary()}"
    meta[SOURCE_SHA_KEY] = source_sha256
    del model.metadata_props[:]
    for key, value in sorted(meta.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = fp32_model.producer_name
    model.producer_version = fp32_model.producer_version
    model.doc_string = fp32_model.doc_string
