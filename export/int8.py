"""Static int8 (QDQ) quantization of an exported fp32 generator, validated against it before anything is written.

    from cgan.export.int8 import quantize_int8
    result = quantize_int8(onnx.load("gen.onnx"))        # raises FidelityError below the bar
    result.model, result.fidelity, result.fp32_layers

Steps: rewrite the ConvTranspose layers so that int8 kernels can run (:mod:`.rewrite`), check the
rewrite is exact in float32, calibrate activation ranges on the generator's own activations (noise of
the runtime's seed contract, every stage), measure what quantizing each layer alone costs, then keep
the costliest layers in float32, one more at a time, until the int8 model meets the fidelity bar
against the fp32 model on every stage -- or refuse.
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

from cgan.runtime.contract import INPUT_STAGE, INPUT_Z, OUTPUT_IMAGE, OUTPUT_RANGE, Key, ModelInfo, noise, to_uint8

from .errors import ExportError, ValidationError
from .rewrite import RewriteReport, rewrite_for_int8

# The bar an int8 model must meet against its fp32 source, on every stage (issue 17).
MIN_PSNR_DB = 40.0  # over the output range (peak-to-peak 2 for [-1, 1])
MAX_MAE_GREY = 1.5  # mean absolute difference of the written 8-bit pixels
# The rewrite is exact up to float summation order: the fp32 exporter's own tolerance.
REWRITE_TOLERANCE = 1e-4
CALIBRATION_PER_STAGE = 32  # images per stage whose activations set the ranges
VALIDATION_PER_STAGE = 32  # fresh images per stage the bar is checked on
CALIBRATION_SEED = 1_000_003  # noise seeds: calibration and validation never share an image
VALIDATION_SEED = 2_000_003
MAX_FP32_LAYERS = 2  # more than this and the model is no longer an int8 model
LAYER_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")

# Metadata written into the int8 model (besides cgan.precision = int8).
QUANT_KEY = "cgan.quantization"  # JSON: scheme, calibration, layers kept in fp32, the rewrite
INT8_PSNR_KEY = "cgan.int8_psnr_db"  # worst stage, against the fp32 source
INT8_MAE_KEY = "cgan.int8_mae_grey"  # worst stage, grey levels of 255
SOURCE_SHA_KEY = "cgan.int8_source_sha256"  # the fp32 model it was made from


class FidelityError(ValidationError):
    """The int8 model is too far from its fp32 source; nothing was written."""


@dataclass(frozen=True)
class Fidelity:
    """An int8 (or any) model against the fp32 reference, per stage."""

    psnr_db: tuple[float, ...]  # per stage, over the output range
    mae_grey: tuple[float, ...]  # per stage, mean |difference| of the uint8 pixels
    mse: float  # over all stages (for ranking)

    @property
    def worst_psnr_db(self) -> float:
        return min(self.psnr_db)

    @property
    def worst_mae_grey(self) -> float:
        return max(self.mae_grey)

    def meets(self, min_psnr_db: float = MIN_PSNR_DB, max_mae_grey: float = MAX_MAE_GREY) -> bool:
        return self.worst_psnr_db >= min_psnr_db and self.worst_mae_grey <= max_mae_grey

    def line(self) -> str:
        return f"PSNR {self.worst_psnr_db:.2f} dB, MAE {self.worst_mae_grey:.2f} grey levels (worst stage)"


@dataclass(frozen=True)
class Int8Result:
    model: Any  # onnx.ModelProto, metadata set
    fidelity: Fidelity
    fp32_layers: tuple[str, ...]
    sensitivity: dict[str, Fidelity]  # each layer quantized alone (measured only when every layer in int8 misses the bar)
    rewrite: RewriteReport
    rewrite_max_abs_err: float
    tried: list[tuple[tuple[str, ...], Fidelity]] = field(default_factory=list)


Feeds = Sequence[tuple[np.ndarray, np.ndarray]]  # (z [n, z_dim] float32, stage [n] int64) batches


def stage_feeds(info: ModelInfo, per_stage: int, seed: int, *, batch: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches of one stage each, every stage, noise from the runtime's seed contract."""
    feeds = []
    for s in range(info.num_classes):
        for k0 in range(0, per_stage, batch):
            b = min(batch, per_stage - k0)
            feeds.append((noise(seed, k0, b, info.z_dim), np.full(b, s, dtype=np.int64)))
    return feeds


def measure_fidelity(reference: Any, candidate: Any, feeds: Feeds, num_classes: int) -> Fidelity:
    """``candidate`` against ``reference`` (onnxruntime sessions) on ``feeds``, per stage."""
    lo, hi = OUTPUT_RANGE
    sq = np.zeros(num_classes)
    ab = np.zeros(num_classes)
    count = np.zeros(num_classes)
    pixels = np.zeros(num_classes)
    for z, stages in feeds:
        feed = {INPUT_Z: z, INPUT_STAGE: stages}
        (want,) = reference.run([OUTPUT_IMAGE], feed)
        (got,) = candidate.run([OUTPUT_IMAGE], feed)
        if not np.isfinite(got).all():
            raise ValidationError("the int8 model gives non-finite values")
        diff = got.astype(np.float64) - want
        grey = np.abs(to_uint8(got).astype(np.int16) - to_uint8(want).astype(np.int16))
        for s in np.unique(stages):
            rows = stages == s
            sq[s] += float((diff[rows] ** 2).sum())
            ab[s] += float(grey[rows].sum())
            count[s] += diff[rows].size
            pixels[s] += grey[rows].size
    seen = count > 0
    mse = sq[seen] / count[seen]
    psnr = 10 * np.log10((hi - lo) ** 2 / np.maximum(mse, 1e-30))
    return Fidelity(tuple(float(p) for p in psnr), tuple(float(a) for a in (ab[seen] / pixels[seen])), float(sq.sum() / count.sum()))


def quantize_int8(
    fp32_model: Any,
    *,
    calibration: Feeds | None = None,
    validation: Feeds | None = None,
    min_psnr_db: float = MIN_PSNR_DB,
    max_mae_grey: float = MAX_MAE_GREY,
    max_fp32_layers: int = MAX_FP32_LAYERS,
    kernel: Callable[[np.ndarray], np.ndarray] | None = None,
    source_sha256: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Int8Result:
    """Quantize ``fp32_model`` (an ``onnx.ModelProto`` written by cgan-export) to a validated int8 QDQ model.

    ``calibration`` / ``validation``: batches of (z, stage); by default 32 images per stage each, on
    different noise seeds. ``source_sha256``: of the fp32 file, recorded in the metadata. ``kernel``
    replaces the rewrite's kernel mapping (tests use a wrong one).
    Raises :class:`ValidationError` if the rewrite changes the fp32 output, :class:`FidelityError` if no
    choice of at most ``max_fp32_layers`` float32 layers meets the bar.
    """
    say = log or (lambda _msg: None)
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

    reference = _session(fp32_model.SerializeToString())
    rewritten, report = rewrite_for_int8(fp32_model, kernel=kernel)
    err = _max_abs_diff(reference, _session(rewritten.SerializeToString()), info)
    say(f"rewrote {len(report.to_conv)} stride-2 ConvTranspose layers as Conv + DepthToSpace + crop and "
        f"{len(report.to_matmul)} as Gemm; max abs difference in fp32 {err:.2e}")
    if not err <= REWRITE_TOLERANCE:
        raise ValidationError(
            f"the ConvTranspose rewrite changed the fp32 model's output by {err:.3g} (tolerance {REWRITE_TOLERANCE:g}); "
            "nothing was written -- this is a bug in cgan.export.rewrite, please report it"
        )
    layers = [n.name for n in rewritten.graph.node if n.op_type in LAYER_OPS]

    with tempfile.TemporaryDirectory(prefix="cgan-int8-") as tmp:
        source = Path(tmp) / "rewritten.onnx"
        source.write_bytes(rewritten.SerializeToString())

        def attempt(fp32: Sequence[str]) -> tuple[Any, Fidelity]:
            model = _quantize(source, Path(tmp) / "q.onnx", calibration, exclude=list(fp32))
            return model, measure_fidelity(reference, _session(model.SerializeToString()), validation, info.num_classes)

        say(f"calibrating on {sum(len(s) for _, s in calibration)} images over every stage")
        keep: tuple[str, ...] = ()
        model, fid = attempt(keep)
        tried = [(keep, fid)]
        say(f"  every layer in int8: {fid.line()}")
        sensitivity: dict[str, Fidelity] = {}
        if not fid.meets(min_psnr_db, max_mae_grey) and max_fp32_layers > 0:
            say("  below the bar; measuring what quantizing each layer alone costs")
            for name in layers:
                sensitivity[name] = attempt([other for other in layers if other != name])[1]
                say(f"  {name} alone in int8: {sensitivity[name].line()}")
            ranked = sorted(layers, key=lambda name: -sensitivity[name].mse)
            for k in range(1, min(max_fp32_layers, len(layers)) + 1):
                keep = tuple(ranked[:k])
                model, fid = attempt(keep)
                tried.append((keep, fid))
                say(f"  fp32 layers {list(keep)}: {fid.line()}")
                if fid.meets(min_psnr_db, max_mae_grey):
                    break
        if not fid.meets(min_psnr_db, max_mae_grey):
            best_keep, best = max(tried, key=lambda t: t[1].worst_psnr_db)
            raise FidelityError(
                f"no int8 model meets the bar (PSNR >= {min_psnr_db:g} dB and MAE <= {max_mae_grey:g} grey levels on every stage) "
                f"with at most {max_fp32_layers} layers in fp32; best: {best.line()} with {list(best_keep) or 'no'} fp32 layers. "
                "Nothing was written; calibrate on more images or allow more fp32 layers (--max-fp32-layers)"
            )

    sha = source_sha256 or hashlib.sha256(fp32_model.SerializeToString()).hexdigest()
    _set_metadata(model, fp32_model, info, keep, fid, calibration, report, err, sha, sensitivity)
    return Int8Result(model, fid, keep, sensitivity, report, err, tried)


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


def _set_metadata(model: Any, fp32_model: Any, info: ModelInfo, keep: Sequence[str], fid: Fidelity, calibration: Feeds,
                  report: RewriteReport, rewrite_err: float, source_sha256: str, sensitivity: dict[str, Fidelity]) -> None:
    meta = {p.key: p.value for p in fp32_model.metadata_props}
    meta[Key.PRECISION] = "int8"
    meta[QUANT_KEY] = json.dumps({
        "scheme": "static QDQ (onnxruntime.quantization): uint8 activations, int8 weights per output channel, MinMax ranges",
        "calibration": {"images": int(sum(len(s) for _, s in calibration)),
                        "stages": sorted({int(v) for _, s in calibration for v in np.unique(s)})},
        "fp32_layers": list(keep),
        "rewrite": {"conv_depth_to_space": list(report.to_conv), "gemm": list(report.to_matmul),
                    "max_abs_err_fp32": float(f"{rewrite_err:.3e}")},
        "bar": {"min_psnr_db": MIN_PSNR_DB, "max_mae_grey": MAX_MAE_GREY},
        "sensitivity_psnr_db": {name: round(f.worst_psnr_db, 2) for name, f in sensitivity.items()},  # each layer alone in int8
        "psnr_db_per_stage": [round(v, 2) for v in fid.psnr_db],
        "mae_grey_per_stage": [round(v, 3) for v in fid.mae_grey],
    }, sort_keys=True)
    meta[INT8_PSNR_KEY] = f"{fid.worst_psnr_db:.2f}"
    meta[INT8_MAE_KEY] = f"{fid.worst_mae_grey:.3f}"
    meta[SOURCE_SHA_KEY] = source_sha256
    del model.metadata_props[:]
    for key, value in sorted(meta.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = fp32_model.producer_name
    model.producer_version = fp32_model.producer_version
    model.doc_string = fp32_model.doc_string
