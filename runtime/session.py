"""ONNX Runtime sessions for a generator model: provider choice, session options, batched runs.

Providers are decided once, when the session is made: an explicit name wins (checked against
``onnxruntime.get_available_providers()``), ``auto`` takes CUDA when this onnxruntime build has it,
and CPU is always appended last as the fallback. On a GPU the inputs and outputs go through an IO
binding, so ORT writes the image straight into the caller's host array (one device-to-host copy per batch).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .contract import INPUT_STAGE, INPUT_Z, OUTPUT_IMAGE, Key, ModelInfo, check_io
from .errors import CganError, ModelError, first_line

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# Short names accepted by --provider, besides "auto" and the full ORT names (case-insensitive).
ALIASES = {
    "cpu": CPU,
    "cuda": CUDA,
    "gpu": CUDA,
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
}
# Providers whose tensors live in device memory: worth an IO binding (device name for OrtDevice).
_DEVICE_OF = {CUDA: "cuda", "TensorrtExecutionProvider": "cuda", "ROCMExecutionProvider": "cuda"}


class ProviderError(CganError):
    """An execution provider that is unknown or not available in this onnxruntime build."""


@dataclass(frozen=True)
class SessionSettings:
    """How to build the session; printed by cgan-run and saved with npy output."""

    provider: str = "auto"
    threads: int | None = None  # CPU intra-op threads; None: onnxruntime's default (one per physical core)
    # ONNX Runtime's worker threads always spin between the operators of a run: waking them for every
    # operator costs more (default model, measured side by side on 2 idle cores: batch 64 136 vs 171 ms,
    # batch 1 1.97 vs 2.18 ms, cgan-run --n 512 to PNG 5.2-6.0 vs 6.2 s). ``spin``: they also keep
    # spinning between runs (one image per call, see load(latency=True)); off by default, so they stop the
    # moment a run returns and leave the cores to the PNG writer threads and the rest of the program.
    spin: bool = False
    # Pre-pack weights at session creation. "auto": on, except for a float32 model that will run a
    # single image (see cgan-run): measured on the 2-core machine, packing the fp32 default model's
    # 14.6 MB costs ~60 ms of a ~0.1 s session start and saves ~13 ms per batch-1 call; an int8 model
    # runs 4x slower unpacked, so it is always packed.
    prepack: bool | str = True


@dataclass
class GeneratorSession:
    """One ``onnxruntime.InferenceSession`` for a generator model, with the providers it actually got."""

    session: Any
    info: ModelInfo
    providers: list[str]
    requested: list[str]
    device: str | None = None  # "cuda" when outputs come through an IO binding
    device_id: int = 0
    settings: SessionSettings = field(default_factory=SessionSettings)
    engine = "onnxruntime"

    @property
    def provider(self) -> str:
        """The provider that runs the model (the first of those the session holds)."""
        return self.providers[0]

    def run(self, z: np.ndarray, stages: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images for latent rows ``z`` [b, z_dim] and ``stages`` int64 [b]: float32 [b, C, H, W].

        Writes into ``out`` (C-contiguous float32 of that shape) when given. Thread-safe: every call has
        its own feeds and binding; the session itself is safe for concurrent runs.
        """
        z = np.ascontiguousarray(z, dtype=np.float32)
        stages = np.ascontiguousarray(stages, dtype=np.int64)
        if self.device is None:
            (images,) = self.session.run([OUTPUT_IMAGE], {INPUT_Z: z, INPUT_STAGE: stages})
            if out is None:
                return images
            out[...] = images
            return out
        return self.run_bound(z, stages, out)

    def run_bound(self, z: np.ndarray, stages: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """As :meth:`run`, through an IO binding: inputs copied to the device once, the output copied
        from the device straight into ``out`` (no intermediate host array)."""
        info = self.info
        shape = (len(z), info.channels, info.img_size, info.img_size)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"output buffer must be C-contiguous float32 {shape}, got {out.dtype} {out.shape}")
        binding = self.session.io_binding()
        binding.bind_cpu_input(INPUT_Z, z)
        binding.bind_cpu_input(INPUT_STAGE, stages)
        binding.bind_output(OUTPUT_IMAGE, "cpu", 0, np.float32, list(shape), out.ctypes.data)
        self.session.run_with_iobinding(binding)
        return out


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_providers(provider: str = "auto", available: list[str] | None = None) -> list[str]:
    """The provider list for a session: ``auto``, an alias (cpu, cuda, ...) or a full ORT name; CPU last."""
    available = available_providers() if available is None else list(available)
    text = (provider or "auto").strip()
    key = text.lower()
    if key == "auto":
        first = CUDA if CUDA in available else CPU
    else:
        by_lower = {p.lower(): p for p in available}
        first = ALIASES.get(key) or by_lower.get(key) or by_lower.get(key + "executionprovider") or text
        if first not in available:
            listed = ", ".join(f"{_short(p)} ({p})" for p in available)
            hint = " (CUDA needs the onnxruntime-gpu package and an NVIDIA driver)" if first == CUDA else ""
            raise ProviderError(f"provider {text!r} is not available in this onnxruntime build{hint}; available: {listed}")
    return [first] if first == CPU else [first, CPU]


def max_threads() -> int:
    """The most threads a session may be given: generous (four per core, at least 256) but finite, so that a
    mistyped --threads 100000 is refused at once instead of spending minutes creating threads (or crashing)."""
    return max(256, 4 * (os.cpu_count() or 1))


def check_threads(threads: int | None, option: str = "threads") -> None:
    """``threads`` within 1..:func:`max_threads` (None: not given), else a :class:`CganError` naming ``option``."""
    if threads is not None and not 1 <= threads <= max_threads():
        raise CganError(f"{option} must be between 1 and {max_threads()} (four per CPU core, at least 256), got {threads}")


def session_options(settings: SessionSettings) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one chain of convolutions: nothing to run in parallel
    if settings.threads is not None:
        check_threads(settings.threads)
        opts.intra_op_num_threads = settings.threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
    opts.add_session_config_entry("session.force_spinning_stop", "0" if settings.spin else "1")
    opts.log_severity_level = 4  # fatal only: its errors come back as exceptions, reported in one line (not twice)
    if settings.prepack is False:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    return opts


def open_session(path: os.PathLike | str, settings: SessionSettings | None = None, *, source: str | None = None) -> GeneratorSession:
    """Load ``path`` on the chosen providers and check it against the model contract."""
    import onnxruntime as ort

    settings = settings or SessionSettings()
    source = source or str(path)
    requested = choose_providers(settings.provider)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelError(f"model file {path} does not exist")
    if settings.prepack == "auto":
        settings = replace(settings, prepack=declared_precision(path) != "fp32")
    try:
        # ORT prints its provider-fallback notice to stdout; stdout may carry data, so send it to stderr
        with contextlib.redirect_stdout(sys.stderr):
            session = ort.InferenceSession(path, sess_options=session_options(settings), providers=requested)
    except CganError:
        raise
    except Exception as exc:  # onnxruntime raises its own types for corrupt, truncated or foreign files
        raise ModelError(f"{source} is not a readable ONNX model ({first_line(exc)}); re-export it with cgan-export or re-download it") from None
    info = ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map, source=source)
    check_io(session, info, source=source)
    providers = list(session.get_providers())
    device = _DEVICE_OF.get(providers[0])
    device_id = 0
    if device is not None:
        opts = session.get_provider_options().get(providers[0], {})
        device_id = int(opts.get("device_id", 0) or 0)
    return GeneratorSession(
        session=session, info=info, providers=providers, requested=requested, device=device, device_id=device_id, settings=settings
    )


def declared_precision(path: str) -> str | None:
    """The ``cgan.precision`` an ONNX file declares, read without building a session (None if absent or unreadable)."""
    props = metadata_props(path)
    return None if props is None else props.get(Key.PRECISION)


def metadata_props(path: str) -> dict[str, str] | None:
    """An ONNX file's ``metadata_props`` read without onnx or a session (None if the file is unreadable).

    Walks the top-level fields of the ModelProto (protobuf) and decodes only ``metadata_props``
    (field 14, key/value string pairs); the graph is skipped over, not parsed.
    """
    import mmap

    def varint(buf, pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = buf[pos]
            value |= (byte & 0x7F) << shift
            pos += 1
            if byte < 0x80:
                return value, pos
            shift += 7

    def fields(buf, pos: int, end: int):
        while pos < end:
            tag, pos = varint(buf, pos)
            kind = tag & 7
            if kind == 0:
                _, pos = varint(buf, pos)
            elif kind == 2:
                size, pos = varint(buf, pos)
                yield tag >> 3, pos, pos + size
                pos += size
            elif kind in (1, 5):
                pos += 8 if kind == 1 else 4
            else:
                raise ValueError("unexpected wire type")

    props: dict[str, str] = {}
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            for number, start, end in fields(buf, 0, len(buf)):
                if number == 14:
                    entry = {n: bytes(buf[a:b]).decode("utf-8") for n, a, b in fields(buf, start, end)}
                    if 1 in entry:
                        props[entry[1]] = entry.get(2, "")
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    return props


def _short(name: str) -> str:
    return name[: -len("ExecutionProvider")].lower() if name.endswith("ExecutionProvider") else name

