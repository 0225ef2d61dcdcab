"""The OpenVINO engine: the same ``.onnx`` file compiled by OpenVINO for the CPU (``pip install "dementia-cgan[openvino]"``).

Imported only when this engine is chosen, so the ONNX Runtime path (and its cold start) never pays
for OpenVINO's import. Shapes: the model is first compiled with a dynamic batch (any size runs at
once); a batch size asked for a second time gets a copy compiled for that static shape, which OpenVINO
runs faster (measured on a 2-core AVX2 host: batch 64 in 0.78x, batch 1 in 0.78x the dynamic
model's time) at ~0.2-0.4 s of compilation, paid once per size (a few sizes at most are kept).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .contract import INPUT_STAGE, INPUT_Z, ModelInfo, check_io
from .errors import CganError, ModelError, first_line

DEVICE = "CPU"
MAX_STATIC_SHAPES = 4  # compiled static batch sizes kept (each holds its own buffers)
_TYPES = {"f32": "tensor(float)", "i64": "tensor(int64)", "f16": "tensor(float16)", "i32": "tensor(int32)", "u8": "tensor(uint8)"}


@dataclass
class _Compiled:
    model: Any  # openvino.CompiledModel
    free: list = field(default_factory=list)  # idle infer requests (one per concurrent caller)


class OpenVinoSession:
    """One model compiled by OpenVINO, with the interface of :class:`~cgan.runtime.session.GeneratorSession`."""

    engine = "openvino"
    device = None  # outputs are host arrays: no IO binding

    def __init__(self, core: Any, model: Any, info: ModelInfo, settings: Any, version: str) -> None:
        self._core = core
        self._model = model  # openvino.Model, kept to compile static copies
        self.info = info
        self.settings = settings
        self.version = version
        self.providers = [f"OpenVINO {DEVICE}"]
        self.requested = list(self.providers)
        self._lock = threading.Lock()
        self._dynamic = _Compiled(self._compile(model))
        self._static: dict[int, _Compiled] = {}
        self._seen: dict[int, int] = {}

    @property
    def provider(self) -> str:
        return self.providers[0]

    def _compile(self, model: Any) -> Any:
        config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}  # one stream: every thread on the one running batch
        if self.settings.threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(self.settings.threads)
        return self._core.compile_model(model, DEVICE, config)

    def _compiled_for(self, b: int) -> _Compiled:
        with self._lock:
            if b in self._static:
                return self._static[b]
            self._seen[b] = self._seen.get(b, 0) + 1
            if self._seen[b] < 2 or len(self._static) >= MAX_STATIC_SHAPES:
                return self._dynamic
        static = self._model.clone()
        static.reshape({INPUT_Z: [b, self.info.z_dim], INPUT_STAGE: [b]})
        compiled = _Compiled(self._compile(static))
        with self._lock:
            return self._static.setdefault(b, compiled)

    def run(self, z: np.ndarray, stages: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images for ``z`` [b, z_dim] and ``stages`` int64 [b]: float32 [b, C, H, W] (into ``out`` when given). Thread-safe."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        stages = np.ascontiguousarray(stages, dtype=np.int64)
        compiled = self._compiled_for(len(z))
        with self._lock:
            request = compiled.free.pop() if compiled.free else None
        if request is None:
            request = compiled.model.create_infer_request()
        try:
            request.infer({INPUT_Z: z, INPUT_STAGE: stages}, share_inputs=True)
            images = request.get_output_tensor(0).data  # the request's own buffer: copied out before it is reused
            if out is None:
                out = images.copy()
            else:
                out[...] = images
        finally:
            with self._lock:
                compiled.free.append(request)
        return out


class _Port:
    """An OpenVINO port seen through the attributes :func:`~cgan.runtime.contract.check_io` reads (ONNX Runtime's NodeArg)."""

    def __init__(self, port: Any) -> None:
        self.name = port.get_any_name()
        self.type = _TYPES.get(port.get_element_type().get_type_name(), str(port.get_element_type()))
        self.shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]


class _Ports:
    def __init__(self, model: Any) -> None:
        self._model = model

    def get_inputs(self) -> list[_Port]:
        return [_Port(p) for p in self._model.inputs]

    def get_outputs(self) -> list[_Port]:
        return [_Port(p) for p in self._model.outputs]


def open_openvino(path: os.PathLike | str, settings: Any, *, source: str | None = None) -> OpenVinoSession:
    """Read ``path`` with OpenVINO, check it against the model contract and compile it for the CPU."""
    import openvino as ov

    from .session import metadata_props

    path = os.fspath(path)
    source = source or path
    if not os.path.isfile(path):
        raise ModelError(f"model file {path} does not exist")
    if settings.threads is not None and settings.threads < 1:
        raise CganError(f"threads must be >= 1, got {settings.threads}")
    core = ov.Core()
    try:
        model = core.read_model(path)
    except Exception as exc:  # OpenVINO raises RuntimeError with its frontend's text for corrupt or foreign files
        raise ModelError(f"{source} is not a readable ONNX model for OpenVINO ({first_line(exc)}); "
                         "re-export it with cgan-export, or use --engine onnxruntime") from None  # fmt: skip
    info = ModelInfo.from_metadata(metadata_props(path) or {}, source=source)
    check_io(_Ports(model), info, source=source)
    try:
        return OpenVinoSession(core, model, info, settings, ov.__version__.split("-")[0])
    except CganError:
        raise
    except Exception as exc:
        raise ModelError(f"OpenVINO cannot compile {source} ({first_line(exc)}); use --engine onnxruntime") from None

