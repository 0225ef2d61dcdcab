"""The Python API: ``load()`` a model and ``generate()`` images, torch-free.

    from cgan.runtime import load
    gen = load()                                   # --model resolution: last export, else the embedded default
    gen = load("model.onnx") or load("hf:owner/repo")
    images = gen.generate(stage=2, n=16, seed=0)   # uint8 [16, H, W]
    gen.info                                       # ModelInfo: size, stage names, provenance

Image k of (model, seed, stage) is the same whatever the batch size or ``start`` that produced it:
the latent row of image k is ``contract.noise(seed, k, 1, z_dim, noise_version)``. ``noise_version``
is 2 (portable Philox, the default; the browser page draws the same) or 1 (numpy ``default_rng``, to
regenerate images of runs made before version 2). Calls from several threads at once are safe (one ORT
session, no shared mutable buffers).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .contract import ModelInfo, Key, noise, parse_stage, stage_failure, to_uint8
from .noise import NOISE_VERSION, check_version
from .errors import CganError, ModelError, first_line
from .fileio import human_bytes
from .resolve import ResolvedModel, resolve_model
from .engines import OPENVINO, choose_engine
from .session import GeneratorSession, SessionSettings, check_threads, open_session

# Images per session call when none is given. Measured with bench/ on a 2-core CPU and the 128-px
# generator (see the runtime report in README): larger batches gave no further gain there, and 64
# keeps a batch of float32 output at 4 MiB.
DEFAULT_BATCH_SIZE = 64
# On a GPU, bigger batches keep the device busy; 256 x 128 x 128 float32 is 16 MiB.
DEFAULT_DEVICE_BATCH_SIZE = 256


class GenerateError(CganError, ValueError):
    """A bad argument to generate(): n, seed, start or batch size."""


@dataclass(frozen=True)
class Batch:
    """Consecutive images ``start .. start+len(images)-1`` of one stage, float32 [b, C, H, W] in the output range,
    drawn with noise contract ``noise_version``."""

    stage: int
    start: int
    images: np.ndarray
    noise_version: int = NOISE_VERSION


class OnnxGenerator:
    """A generator model loaded in ONNX Runtime: stage-conditioned images from a seed."""

    def __init__(self, session: GeneratorSession, model: ResolvedModel) -> None:
        self._session = session
        self.model = model

    # ------------------------------------------------------------ description
    @property
    def info(self) -> ModelInfo:
        return self._session.info

    @property
    def path(self) -> Path:
        return self.model.path

    @property
    def source(self) -> str:
        """Which model is used and how it was found (a path, a Hub file, the last export, the embedded default)."""
        return self.model.description

    @property
    def provider(self) -> str:
        """The execution provider that runs the model, e.g. ``CPUExecutionProvider``."""
        return self._session.provider

    @property
    def engine(self) -> str:
        """The inference engine: ``onnxruntime`` or ``openvino`` (see :mod:`cgan.runtime.engines`)."""
        return self._session.engine

    @property
    def providers(self) -> list[str]:
        return list(self._session.providers)

    @property
    def settings(self) -> SessionSettings:
        return self._session.settings

    @property
    def default_batch_size(self) -> int:
        return DEFAULT_DEVICE_BATCH_SIZE if self._session.device else DEFAULT_BATCH_SIZE

    @property
    def training_data(self) -> str:
        return self.info.provenance.get(Key.TRAINING_DATA, "not recorded in the model")

    @property
    def isa_notice(self) -> str | None:
        """One line when this is an int8 model validated on another CPU class than the one it runs on (cgan-run prints it)."""
        if self.provider not in ("CPUExecutionProvider", "OpenVINO CPU"):
            return None
        from .cpu import int8_isa_notice

        return int8_isa_notice(self.info.provenance, self.info.precision)

    def describe(self) -> str:
        """One line: the model, what it was trained on, the engine and the provider."""
        threads = self.settings.threads
        cpu = f", {threads} threads" if threads and self.provider in ("CPUExecutionProvider", "OpenVINO CPU") else ""
        wanted = self._session.requested[0]
        if wanted != self.provider:  # onnxruntime fell back (e.g. CUDA listed but no usable GPU)
            cpu += f" ({wanted} was requested but could not start)"
        return (
            f"model: {self.source}; trained on: {self.training_data}; "
            f"{self.info.img_size} px, {self.info.num_classes} stages; engine: {self.engine} {self._engine_version()}; "
            f"provider: {self.provider}{cpu}"
        )

    def _engine_version(self) -> str:
        version = getattr(self._session, "version", None)
        if version is None:
            import onnxruntime as ort

            version = ort.__version__
        return version

    def __repr__(self) -> str:
        return f"OnnxGenerator({self.source!r}, engine={self.engine!r}, provider={self.provider!r})"

    # ------------------------------------------------------------ generation
    def stage_index(self, stage: int | str) -> int:
        """A stage number or name (case-insensitive) -> its index; :class:`StageError` if the model has no such stage."""
        return parse_stage(stage, self.info.stage_names)

    def batches(
        self,
        stage: int | str,
        n: int,
        *,
        seed: int = 0,
        start: int = 0,
        batch_size: int | None = None,
        noise_version: int = NOISE_VERSION,
    ) -> Iterator[Batch]:
        """Images ``start .. start+n-1`` of ``stage`` in session-sized batches (float32, as the model outputs them)."""
        return self._batches(*self._checked(stage, n, seed, start, batch_size, noise_version))

    def _checked(self, stage: int | str, n: int, seed: int, start: int, batch_size: int | None,
                 noise_version: int) -> tuple[int, int, int, int, int, int]:
        """A request checked before any work: (stage index, n, seed, start, batch size, noise version)."""
        s = self.stage_index(stage)
        n, seed, start, bs = _check_counts(n, seed, start, self.default_batch_size if batch_size is None else batch_size)
        return s, n, seed, start, bs, _check_noise(noise_version, seed, start + n)

    def _batches(self, s: int, n: int, seed: int, start: int, bs: int, version: int,
                 out: np.ndarray | None = None) -> Iterator[Batch]:
        """The batches of a checked request; with ``out`` (``[n, C, H, W]``) each is written into its rows."""
        for k0 in range(start, start + n, bs):
            b = min(bs, start + n - k0)
            rows = None if out is None else out[k0 - start : k0 - start + b]
            yield Batch(stage=s, start=k0, images=self._run(s, k0, b, seed, version, rows), noise_version=version)

    def _run(self, s: int, k0: int, b: int, seed: int, version: int, out: np.ndarray | None = None) -> np.ndarray:
        """Images ``k0 .. k0+b-1`` of stage ``s``, checked: finite, and a batch that does not fit in memory
        is a :class:`GenerateError` that says to lower the batch size."""
        z = noise(seed, k0, b, self.info.z_dim, version)
        try:
            images = self._session.run(z, np.full(b, s, dtype=np.int64), out)
        except MemoryError:
            raise GenerateError(f"a batch of {b} images does not fit in memory; lower --batch-size") from None
        except Exception as exc:  # onnxruntime reports a failed allocation as its own RuntimeException
            if "alloc" in str(exc).lower():
                size = re.search(r"buffer of size (\d+)", str(exc))
                what = f"onnxruntime could not allocate {human_bytes(int(size.group(1)))}" if size else first_line(exc)
                raise GenerateError(f"a batch of {b} images does not fit in memory ({what}); lower --batch-size") from None
            raise ModelError(stage_failure(self.source, self.info, s, exc)) from None
        if not np.isfinite(images).all():
            raise ModelError(
                f"the model {self.source} gives non-finite values (NaN or inf) for stage {s}, images {k0}..{k0 + b - 1}, "
                "so there is no image to write; it is broken (e.g. exported from a diverged training run): "
                "use another model or checkpoint"
            )
        return images

    def check_finite(self, stages, *, seed: int = 0, start: int = 0, noise_version: int = NOISE_VERSION) -> None:
        """Run the first image of every stage in ``stages`` (one session call) and raise :class:`ModelError`
        naming the stages whose output is not finite: called before anything is written, so a model that
        is broken for one stage is refused before the other stages' files appear."""
        stages = [self.stage_index(s) for s in stages]
        if not stages:
            return
        version = _check_noise(noise_version, seed, start + 1)
        z = np.repeat(noise(seed, start, 1, self.info.z_dim, version), len(stages), axis=0)
        try:
            images = self._session.run(z, np.asarray(stages, dtype=np.int64), None)
        except MemoryError:
            raise
        except Exception as exc:  # the graph fails for a stage: which one, run alone
            for s in stages:
                try:
                    self._session.run(z[:1], np.asarray([s], dtype=np.int64), None)
                except Exception as one:
                    raise ModelError(stage_failure(self.source, self.info, s, one)) from None
            raise ModelError(f"the model {self.source} cannot run stages {stages} together ({first_line(exc)})") from None
        bad = [s for s, img in zip(stages, images) if not np.isfinite(img).all()]
        if bad:
            names = ", ".join(f"{s} ({self.info.stage_names[s]})" for s in bad)
            raise ModelError(
                f"the model {self.source} gives non-finite values (NaN or inf) for stage {names}, so nothing was written; "
                "it is broken (e.g. exported from a diverged training run): use another model or checkpoint"
            )

    def generate_float(
        self,
        stage: int | str = 0,
        n: int = 16,
        *,
        seed: int = 0,
        start: int = 0,
        batch_size: int | None = None,
        noise_version: int = NOISE_VERSION,
    ) -> np.ndarray:
        """Images ``start .. start+n-1`` of ``stage`` as float32 ``[n, C, H, W]`` within the output range ([-1, 1]):
        clipped to it, as a tanh computed in float32 can land a rounding step outside (-1.0000001)."""
        request = self._checked(stage, n, seed, start, batch_size, noise_version)
        info = self.info
        out = np.empty((request[1], info.channels, info.img_size, info.img_size), dtype=np.float32)
        for _ in self._batches(*request, out=out):
            pass
        lo, hi = info.output_range
        return np.clip(out, np.float32(lo), np.float32(hi), out=out)

    def generate(
        self,
        stage: int | str = 0,
        n: int = 16,
        *,
        seed: int = 0,
        start: int = 0,
        batch_size: int | None = None,
        noise_version: int = NOISE_VERSION,
    ) -> np.ndarray:
        """Images ``start .. start+n-1`` of ``stage`` as uint8 ``[n, H, W]`` (``[n, H, W, C]`` for a multi-channel model)."""
        images = self.generate_float(stage, n, seed=seed, start=start, batch_size=batch_size, noise_version=noise_version)
        return self.to_uint8(images)

    def to_uint8(self, images: np.ndarray) -> np.ndarray:
        """float32 ``[b, C, H, W]`` model output -> uint8 ``[b, H, W]`` (or ``[b, H, W, C]``), with the contract's mapping."""
        pixels = to_uint8(images, self.info.output_range)
        return pixels[:, 0] if pixels.shape[1] == 1 else np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


def load(
    model: str | os.PathLike | None = None,
    *,
    provider: str = "auto",
    threads: int | None = None,
    cwd: str | os.PathLike | None = None,
    log: Callable[[str], object] | None = None,
    prepack: bool | str = True,
    latency: bool = False,
    engine: str = "auto",
    images: int | None = None,
) -> OnnxGenerator:
    """Load a generator model: ``model`` is a path, ``"hf:OWNER/REPO[/FILE]"`` or None (the last export
    ``model_output/cDCGAN_generator.onnx``, else the embedded default). ``provider``: ``auto``, ``cpu``,
    ``cuda`` or any ORT provider name; ``log`` hears when the Hub is contacted. ``prepack``: see
    :class:`SessionSettings` (``"auto"`` for a process that makes one image per stage and exits).
    ``latency``: tune the session for one image per call (interactive use): ONNX Runtime's worker threads
    keep spinning between calls (by default they spin only during a call), so a call does not wait for
    them to wake; measured side by side in bench/RESULTS.md. The price is CPU burnt while the program
    waits between calls; leave it off for batches and for programs that do other work beside generating.
    ``engine``: ``onnxruntime``, ``openvino`` (the ``[openvino]`` extra; CPU only) or ``auto``: OpenVINO when it
    is installed and the model runs on the CPU, unless ``latency`` is set or ``images`` (how many this generator will make, when
    known) is below :data:`~cgan.runtime.engines.OPENVINO_MIN_IMAGES`, where its start-up costs more than it
    saves (measured; see :mod:`cgan.runtime.engines`). Both engines give the same images (within float rounding).
    Raises a :class:`CganError` that says what to do on failure."""
    check_threads(threads)
    settings = SessionSettings(provider=provider, threads=threads, prepack=prepack, spin=bool(latency))
    chosen = choose_engine(engine, provider, images, latency=bool(latency))  # before the model is fetched: an impossible engine costs nothing
    resolved = resolve_model(model, cwd=cwd, log=log)
    if chosen == OPENVINO:
        from .openvino_session import open_openvino  # imports openvino (~0.6 s): only when it runs the model

        return OnnxGenerator(open_openvino(resolved.path, settings, source=resolved.description), resolved)
    return OnnxGenerator(open_session(resolved.path, settings, source=resolved.description), resolved)


def check_finite_model(model: "ResolvedModel | str | os.PathLike") -> None:
    """Refuse (:class:`ModelError`) a model whose first image of any stage is NaN or inf: for the commands
    that take a model without generating with it (``cgan-web build``, ``cgan-export --int8``)."""
    resolved = model if isinstance(model, ResolvedModel) else ResolvedModel(Path(model), "path", str(model))
    session = open_session(resolved.path, SessionSettings(provider="cpu"), source=resolved.description)
    gen = OnnxGenerator(session, resolved)
    gen.check_finite(range(gen.info.num_classes))


def _check_noise(version: object, seed: int, end: int) -> int:
    try:
        version = check_version(version)
    except ValueError as exc:
        raise GenerateError(str(exc)) from None
    if version == 2 and (seed >= 2**64 or end > 2**64):
        raise GenerateError(f"noise version 2 takes seeds and image indices below 2^64; got seed {seed}, last index {end - 1}")
    return version


def _check_counts(n: int, seed: int, start: int, batch_size: int) -> tuple[int, int, int, int]:
    def _int(name: str, value: object, lo: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise GenerateError(f"{name} must be an integer, got {value!r}")
        if value < lo:
            raise GenerateError(f"{name} must be >= {lo}, got {value}")
        return int(value)

    return _int("n", n, 1), _int("seed", seed, 0), _int("start", start, 0), _int("batch size", batch_size, 1)

