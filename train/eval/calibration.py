"""Calibration rows: real held-out images degraded a little (blur, noise, contrast) and scored exactly
like a generator, by every judge and every metric, so a user can read what a figure means on this data
and which judge is more sensitive to texture."""

from __future__ import annotations

import numpy as np

# (kind, amount, description)
CALIBRATION = (
    ("blur", 0.5, "Gaussian blur, sigma 0.5 px"),
    ("blur", 1.0, "Gaussian blur, sigma 1 px"),
    ("noise", 0.02, "additive Gaussian noise, sigma 0.02 (5 grey levels)"),
    ("contrast", 0.1, "contrast +10% about mid-grey"),
)


def _blur_axis(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    r = len(kernel) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    p = np.pad(x, pad, mode="reflect")
    n = x.shape[axis]
    out = np.zeros_like(x)
    for j, w in enumerate(kernel):
        out += w * np.take(p, np.arange(j, j + n), axis=axis)
    return out


def perturb(images: np.ndarray, kind: str, amount: float, seed: int = 0) -> np.ndarray:
    """Real images degraded a little, as uint8 again: ``blur`` (Gaussian, sigma ``amount`` px, reflected
    edges), ``noise`` (additive Gaussian, sigma ``amount`` in [0, 1] units, seeded) or ``contrast``
    (scaled by ``1 + amount`` about mid-grey). ``images``: uint8 ``[N, H, W]``."""
    x = np.asarray(images, dtype=np.float32) / 255.0
    if kind == "blur":
        if amount > 0:
            r = max(1, int(np.ceil(3 * amount)))
            t = np.arange(-r, r + 1, dtype=np.float32)
            kernel = np.exp(-0.5 * (t / amount) ** 2)
            kernel /= kernel.sum()
            x = _blur_axis(_blur_axis(x, kernel, 1), kernel, 2)
    elif kind == "noise":
        x = x + np.random.default_rng([seed, 0x5EED]).normal(0.0, amount, x.shape).astype(np.float32)
    elif kind == "contrast":
        x = (x - 0.5) * (1.0 + amount) + 0.5
    else:
        raise ValueError(f"unknown perturbation {kind!r}; expected blur, noise or contrast")
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)

