"""``cgan-export --int8``: an fp32 model (or a checkpoint, exported first) -> a validated int8 model file and card.

    from cgan.export.int8_export import export_int8
    report = export_int8(Path("gen.onnx"), Path("gen_int8.onnx"))   # nothing written beyond the bar
    report = export_int8("default", Path("q.onnx"), mode="speed")    # the model embedded in the package
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cgan.runtime.api import check_finite_model
from cgan.runtime.contract import ModelInfo, read_metadata
from cgan.runtime.errors import CganError
from cgan.runtime.fileio import atomic_path, atomic_write_text

from .card import card_path_for, render_card
from .errors import ExportError
from .int8 import Fidelity, Int8Result, quantize_int8

DEFAULT_SOURCE = "default"  # names the embedded default model, from any folder
from .outputs import check_output

@dataclass(frozen=True)
class Int8Report:
    path: Path
    source: Path
    info: ModelInfo
    fidelity: Fidelity
    fp32_layers: tuple[str, ...]
    size_bytes: int
    source_size_bytes: int
    seconds: float
    card_path: Path | None = None
    result: Int8Result | None = None
    mode: str = "size"
    isa: str = ""

    def summary(self) -> str:
        kept = ", ".join(self.fp32_layers) or "none"
        return (
            f"exported {self.path} (int8, {self.mode} mode, {self.size_bytes / 1e6:.2f} MB, {self.source_size_bytes / self.size_bytes:.1f}x smaller "
            f"than the fp32 model) in {self.seconds:.0f} s; against the fp32 model on this {self.isa} CPU: {self.fidelity.line()}; fp32 layers: {kept}"
        )


def export_int8(
    source: Path | str,
    out: Path,
    *,
    mode: str = "size",
    model_card: bool = True,
    overwrite: bool = False,
    max_fp32_layers: int | None = None,
    calibration: Any = None,
    kernel: Any = None,
    log: Callable[[str], None] | None = None,
    validation: Any = None,
    bar: Any = None,
    weight_levels: int = 127,
    **checkpoint_kwargs: Any,
) -> Int8Report:
    """Quantize ``source`` (an fp32 ``.onnx`` from cgan-export, a checkpoint exported to fp32 first, or ``"default"``:
    the model embedded in the package) to ``out``, in ``mode`` ``size`` or ``speed``.

    ``calibration``, ``kernel``, ``validation``, ``bar``, ``weight_levels``: see :func:`~cgan.export.int8.quantize_int8`.
    Raises a :class:`CganError` (a :class:`~cgan.export.int8.FidelityError` below the bar) and writes nothing on failure.
    An existing ``out`` (or card beside it) is refused, before any work, unless ``overwrite=True``.
    """
    import onnx

    say = log or (lambda _msg: None)
    started = time.perf_counter()
    if str(source) == DEFAULT_SOURCE and not Path(source).exists():
        from cgan.runtime.resolve import EMBEDDED_DEFAULT

        if not EMBEDDED_DEFAULT.is_file():
            raise ExportError(f"this installation has no embedded default model ({EMBEDDED_DEFAULT}); give a .onnx or a checkpoint")
        source = EMBEDDED_DEFAULT
    source, out = Path(source), Path(out)
    check_output(out, overwrite=overwrite, card=model_card)
    if source.resolve() == out.resolve():
        raise ExportError(f"--out {out} is the fp32 model being quantized; choose another name")
    with tempfile.TemporaryDirectory(prefix="cgan-int8-src-") as tmp:
        if source.suffix.lower() == ".onnx":
            if not source.is_file():
                raise ExportError(f"fp32 model {source} does not exist; give a .onnx written by cgan-export or a checkpoint")
            read_metadata(source)  # the runtime's contract first: a foreign file is refused with its reason
            check_finite_model(source)  # a NaN model has nothing to calibrate on: say so, not "scale issue"
            fp32_path = source
        else:
            from .api import export_checkpoint  # torch: only for a checkpoint

            fp32_path = Path(tmp) / "fp32.onnx"
            say(f"exporting {source} to fp32 first")
            export_checkpoint(source, fp32_path, model_card=False, log=say, **checkpoint_kwargs)
        data = fp32_path.read_bytes()
    fp32_model = onnx.load_from_string(data)
    kwargs = {} if max_fp32_layers is None else {"max_fp32_layers": max_fp32_layers}
    kwargs.update(validation=validation, bar=bar, weight_levels=weight_levels)
    result = quantize_int8(fp32_model, mode=mode, calibration=calibration, kernel=kernel, source_sha256=hashlib.sha256(data).hexdigest(),
                           log=say, **kwargs)  # fmt: skip

    blob = result.model.SerializeToString()
    try:
        with atomic_path(out) as tmp_out:
            tmp_out.write_bytes(blob)
            info = read_metadata(tmp_out)  # the runtime's own reader must accept it before it gets its name
        card_path = card_path_for(out) if model_card else None
        if card_path is not None:
            atomic_write_text(card_path, render_card(info, out.name))
    except CganError as exc:
        raise ExportError(f"the written int8 model did not pass the runtime's checks ({exc}); nothing was kept") from None
    except OSError as exc:
        raise ExportError(f"cannot write {out} ({exc.strerror or exc}); choose another --out") from None
    return Int8Report(
        path=out, source=source, info=info, fidelity=result.fidelity, fp32_layers=result.fp32_layers,
        size_bytes=len(blob), source_size_bytes=len(data), seconds=time.perf_counter() - started,
        card_path=card_path, result=result, mode=result.mode, isa=result.isa,
    )  # fmt: skip
