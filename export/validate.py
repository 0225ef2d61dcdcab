"""Numerical validation: the exported graph in onnxruntime against the torch Generator, before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cgan.runtime.contract import INPUT_STAGE, INPUT_Z, OUTPUT_IMAGE
from cgan.runtime.errors import first_line

from .errors import ValidationError

BATCH_SIZES = (1, 7, 64)  # one, an odd size, a large one: a dynamic batch must give the same images
# fp32: folding BatchNorm and a different conv implementation leave ~1e-6 at 128 px; 1e-4 is 1/80 of
# one uint8 grey level (2/255), so nothing visible can hide under it.
FP32_TOLERANCE = 1e-4
# fp16: weights and activations rounded to 11-bit mantissas (relative step 2^-11 ~ 4.9e-4) through
# six ConvTranspose layers with up to 8k-term sums gives a few 1e-3 on outputs in [-1, 1]; 2e-2 is
# 2.5 grey levels of 255, the most a float16 model may differ before it counts as a different model.
# onnxruntime's CPU provider has no float16 ConvTranspose: it inserts Casts and computes in float32
# with the float16-rounded weights (measured ~8e-4 on a 64 px model whose outputs span [-1, 1]), so
# fp16 models are also validated on CUDA, where the arithmetic really is float16, when it is available.
FP16_TOLERANCE = 2e-2


@dataclass(frozen=True)
class Parity:
    max_abs_err: float
    batch_sizes: tuple[int, ...]
    per_batch: dict[int, float]
    provider: str
    seed: int


def default_tolerance(fp16: bool) -> float:
    return FP16_TOLERANCE if fp16 else FP32_TOLERANCE


def compare_with_torch(
    model_bytes: bytes,
    generator: Any,
    *,
    tolerance: float,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seed: int | None = None,
    provider: str = "CPUExecutionProvider",
) -> Parity:
    """Run ``model_bytes`` in onnxruntime (``provider``, CPU by default) and ``generator`` (eval, fp32) on the same fresh inputs.

    Every stage appears at every batch size above the number of classes, and batch 1 is run once per
    stage. Raises :class:`ValidationError` when the max abs difference exceeds ``tolerance``.
    """
    import onnxruntime as ort
    import torch

    if not (tolerance >= 0):
        raise ValidationError(f"tolerance must be >= 0, got {tolerance}")
    try:
        session = ort.InferenceSession(model_bytes, providers=[provider])
    except Exception as exc:  # onnxruntime's own exception types
        raise ValidationError(
            f"onnxruntime {ort.__version__} cannot load the exported graph on {provider} ({first_line(exc)}); "
            "try a lower --opset"
        ) from None
    cfg = generator.config
    seed = int(np.random.SeedSequence().entropy % (1 << 63)) if seed is None else seed  # fresh inputs each export
    rng = np.random.default_rng(seed)
    generator = generator.eval()
    per_batch: dict[int, float] = {}
    for n in batch_sizes:
        worst = 0.0
        for stages in _stage_batches(n, cfg.num_classes, rng):
            z = rng.standard_normal((len(stages), cfg.z_dim), dtype=np.float32)
            try:
                (got,) = session.run([OUTPUT_IMAGE], {INPUT_Z: z, INPUT_STAGE: stages})
            except Exception as exc:
                raise ValidationError(f"onnxruntime failed to run the exported graph at batch {n} ({first_line(exc)})") from None
            with torch.no_grad():
                want = generator(torch.from_numpy(z), torch.from_numpy(stages)).float().numpy()
            if got.shape != want.shape:
                raise ValidationError(f"exported graph gives shape {got.shape} at batch {n}; torch gives {want.shape}")
            if not np.isfinite(got).all():
                raise ValidationError(f"exported graph gives non-finite values at batch {n}")
            worst = max(worst, float(np.abs(got.astype(np.float64) - want).max()))
        per_batch[n] = worst
    max_err = max(per_batch.values())
    if not max_err <= tolerance:
        detail = ", ".join(f"batch {n}: {e:.3g}" for n, e in per_batch.items())
        where = "" if provider == "CPUExecutionProvider" else f" on {provider}"
        raise ValidationError(
            f"exported graph differs from the torch Generator by {max_err:.3g}{where} (tolerance {tolerance:g}; {detail}); "
            "nothing was written"
        )
    return Parity(max_err, tuple(batch_sizes), per_batch, provider, seed)


def validation_providers(fp16: bool) -> list[str]:
    """CPU always; CUDA too for fp16 models when this onnxruntime has it (real float16 arithmetic there)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if fp16 and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.append("CUDAExecutionProvider")
    return providers


def _stage_batches(n: int, num_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
    if n < num_classes:  # small batches: one run per group so that every stage is seen
        stages = np.arange(num_classes, dtype=np.int64)
        return [stages[i:i + n] for i in range(0, num_classes, n)]
    stages = np.arange(n, dtype=np.int64) % num_classes
    return [rng.permutation(stages)]

