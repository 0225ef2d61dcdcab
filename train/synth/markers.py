"""Atrophy markers measured from images alone (synthetic, real or generated axial slices).

``cgan-eval`` compares these per stage between generated and real images; the synthetic set also
records the ground-truth fractions it measured on its tissue maps (``labels.csv``).
"""

from __future__ import annotations

import numpy as np


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 mean filter on the last two axes (edges replicated)."""
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    h, w = a.shape[-2:]
    acc = np.zeros_like(a, dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            acc += p[..., dy : dy + h, dx : dx + w]
    return acc * np.float32(1.0 / 9.0)


def _fill_rows_cols(mask: np.ndarray) -> np.ndarray:
    """Fill each row and each column between its first and last True pixel; AND the two (hole filling for a head)."""

    def fill(m: np.ndarray, axis: int) -> np.ndarray:
        idx = np.arange(m.shape[axis])
        shape = [1] * m.ndim
        shape[axis] = -1
        idx = idx.reshape(shape)
        any_ = m.any(axis=axis, keepdims=True)
        first = np.argmax(m, axis=axis, keepdims=True)
        last = m.shape[axis] - 1 - np.argmax(np.flip(m, axis=axis), axis=axis, keepdims=True)
        return any_ & (idx >= first) & (idx <= last)

    return fill(mask, -1) & fill(mask, -2)


MARKER_NAMES = ("head_area", "brain_fraction", "ventricle_fraction", "sulcal_fraction", "tissue_contrast")


def estimate_markers(images: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """Atrophy markers measured from images alone, float64 ``[N]`` each.

    Works on any axial slice roughly centred with a dark background (synthetic, real or generated):
    the head is found by thresholding and filling, an ellipse fitted to it gives a normalised radius
    (1 at the head's edge), and CSF is "dark" relative to the bright tissue inside the head.

    - ``head_area``: head pixels / image pixels.
    - ``brain_fraction``: bright (non-CSF) pixels within radius 0.78 (inside the skull) / that area;
      falls as the brain shrinks and the CSF spaces widen.
    - ``ventricle_fraction``: dark pixels within radius 0.33 (the central region holding the
      lateral ventricles) / that area; grows with ventricle enlargement.
    - ``sulcal_fraction``: dark pixels in the cortical band 0.55-0.75 / that band; grows with sulcal widening.
    - ``tissue_contrast``: median of the bright pixels (white matter) over the median of the band's
      tissue; a sanity marker for grey/white contrast.
    """
    imgs = np.asarray(images)
    if imgs.ndim == 4 and imgs.shape[1] == 1:
        imgs = imgs[:, 0]
    if imgs.ndim != 3:
        raise ValueError(f"images must be [N, H, W] (or [N, 1, H, W]), got shape {imgs.shape}")
    out = {k: np.empty(len(imgs), dtype=np.float64) for k in MARKER_NAMES}
    for s in range(0, len(imgs), batch):
        part = _markers_batch(imgs[s : s + batch])
        for k in MARKER_NAMES:
            out[k][s : s + len(part[k])] = part[k]
    return out


def _markers_batch(imgs: np.ndarray) -> dict[str, np.ndarray]:
    x = imgs.astype(np.float32)
    if imgs.dtype == np.uint8:
        x *= np.float32(1.0 / 255.0)
    n, h, w = x.shape
    xs = _box3(x)
    hi = np.percentile(xs.reshape(n, -1), 99.0, axis=1).astype(np.float32)[:, None, None] + np.float32(1e-6)
    head = _fill_rows_cols(xs > np.float32(0.2) * hi)
    area = head.sum(axis=(1, 2)).astype(np.float32) + np.float32(1e-6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    my = (head * yy).sum(axis=(1, 2)) / area
    mx = (head * xx).sum(axis=(1, 2)) / area
    dy = yy[None] - my[:, None, None]
    dx = xx[None] - mx[:, None, None]
    cyy = (head * dy * dy).sum(axis=(1, 2)) / area
    cxx = (head * dx * dx).sum(axis=(1, 2)) / area
    cxy = (head * dx * dy).sum(axis=(1, 2)) / area
    det = np.maximum(cxx * cyy - cxy * cxy, np.float32(1e-6))
    # Mahalanobis radius; a uniformly filled ellipse has its edge at 2 standard deviations
    m2 = (cyy[:, None, None] * dx * dx - 2 * cxy[:, None, None] * dx * dy + cxx[:, None, None] * dy * dy) / det[:, None, None]
    rho = np.sqrt(np.maximum(m2, 0)) * np.float32(0.5)

    inner = rho < 0.78
    central = rho < 0.33
    band = (rho >= 0.55) & (rho < 0.75)
    # tissue reference: a high percentile inside the skull (white matter); CSF is below 40% of it
    ref = np.empty(n, dtype=np.float32)
    gm_med = np.empty(n, dtype=np.float32)
    for i in range(n):
        vals = x[i][inner[i]]
        ref[i] = np.percentile(vals, 90.0) if vals.size else 1.0
    dark = x < np.float32(0.4) * ref[:, None, None]
    for i in range(n):
        bvals = x[i][band[i] & ~dark[i]]
        gm_med[i] = np.median(bvals) if bvals.size else 0.0

    def frac(mask: np.ndarray, sel: np.ndarray) -> np.ndarray:
        return (mask & sel).sum(axis=(1, 2)) / np.maximum(sel.sum(axis=(1, 2)), 1)

    return {
        "head_area": (area / (h * w)).astype(np.float64),
        "brain_fraction": frac(~dark, inner).astype(np.float64),
        "ventricle_fraction": frac(dark, central).astype(np.float64),
        "sulcal_fraction": frac(dark, band).astype(np.float64),
        "tissue_contrast": (ref / np.maximum(gm_med, 1e-6)).astype(np.float64),
    }
