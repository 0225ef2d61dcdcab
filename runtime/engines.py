"""Which inference engine runs the model: ONNX Runtime (always installed) or OpenVINO (an extra).

Both read the same ``.onnx`` file and are fed the same latent rows (the noise contract lives above
them, in :mod:`.api`), so they give the same images up to float summation order (measured: max
difference 1.4e-6 on outputs in [-1, 1], at most one grey level after rounding).

``auto`` chooses by what was measured side by side on an AVX2 CPU (AMD EPYC, no AVX-512, 2 cores,
bench/RESULTS.md): OpenVINO, compiled from the same file, ran batch 64 in 0.55-0.70x ONNX Runtime's
time and batch 1 at about the same time, but importing it and compiling the model costs ~1.2 s
against ~0.2 s for an ONNX Runtime session. So ``auto`` takes OpenVINO when it is installed and the
model runs on the CPU, except for a run known to be small (fewer than :data:`OPENVINO_MIN_IMAGES`
images, where the start-up cost is more than the batches save); ONNX Runtime otherwise, and always
on a GPU provider.
"""

from __future__ import annotations

import importlib.util

from .errors import CganError

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
ENGINES = ("auto", ONNXRUNTIME, OPENVINO)
# ~1 s more start-up against ~0.15 s saved per batch of 64 (measured, loaded 2-core AVX2 host): 8 batches.
OPENVINO_MIN_IMAGES = 512
_CPU_PROVIDERS = ("auto", "cpu", "cpuexecutionprovider")


class EngineError(CganError):
    """An engine that is unknown, not installed, or cannot run the requested provider."""


def openvino_installed() -> bool:
    """Whether the ``openvino`` package can be imported (looked up without importing it: ~0.6 s)."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):
        return False


def choose_engine(
    engine: str = "auto", provider: str = "auto", images: int | None = None, *, latency: bool = False, cuda_available: bool | None = None
) -> str:
    """The engine for ``engine`` (auto, onnxruntime, openvino) and ``provider``; ``images``: how many the
    caller will make, when known (cgan-run knows it; a long-lived API user does not, None). ``latency``
    (one image per call, threads kept spinning) is ONNX Runtime's measured mode: auto keeps it there."""
    key = "auto" if engine is None else str(engine).strip().lower()
    if key not in ENGINES:  # an empty --engine '' is a mistake, not a request for auto
        raise EngineError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    on_cpu = (provider or "auto").strip().lower() in _CPU_PROVIDERS
    if key == OPENVINO:
        if not on_cpu:
            raise EngineError(f"the openvino engine runs on the CPU only; drop --device {provider} or use --engine onnxruntime")
        if not openvino_installed():
            raise EngineError("the openvino engine needs the openvino package, which is not installed; "
                              "install it with: pip install 'dementia-cgan[openvino]'")  # fmt: skip
        return OPENVINO
    # the cheap tests first: a small run (cgan-run --n 1) does not even look for the package
    if key == ONNXRUNTIME or not on_cpu or latency or (images is not None and images < OPENVINO_MIN_IMAGES):
        return ONNXRUNTIME
    if not openvino_installed():
        return ONNXRUNTIME
    if (provider or "auto").strip().lower() == "auto":  # auto takes CUDA when there is one: ONNX Runtime's
        if cuda_available is None:
            import onnxruntime as ort

            cuda_available = "CUDAExecutionProvider" in ort.get_available_providers()
        if cuda_available:
            return ONNXRUNTIME
    return OPENVINO
