"""Synthetic subjects and their axial slices, rendered from the MNI template by deformation.

A :class:`Subject` is the template under its own smooth random deformation (head size, elongation,
shear and a two-scale random displacement field), pose, intensity profile and hidden atrophy
severity. Severity acts through the template's tissue maps (:mod:`.anatomy`), monotonically:

- the ventricles (and temporal horns, cisterns) enlarge by a radial displacement along the gradient
  of the smoothed ventricle map (``ventricle_mm`` at most);
- cortical grey matter within ``thinning_mm`` of CSF turns into CSF: thinner cortex, wider sulci;
- medial-temporal (hippocampal) tissue turns partly into CSF on the low slices (``mtl_loss``);
- the whole brain shrinks about its centre (``shrink``, a fraction of its size).

Each slice is sampled in one interpolation from the atrophied 1-mm template slab, then given the
subject's T1 grey levels, gamma, a smooth bias field and noise inside the brain (the background stays
black, as in masked OASIS slices). The ventricle and sulcal CSF fractions and the brain fraction are
measured on the warped tissue maps of every image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .anatomy import LEVEL_MAX, LEVEL_MIN, T1_CSF, T1_GM, T1_WM, brain_centre, level_maps

FOV_MM = 210.0  # width of the square field of view (the template brain is ~140 x 175 mm: ~83% of it)
CONTROL_MAX = 64  # coordinates and markers are computed on at most this grid, then interpolated
FIELD_GRID = 24  # the random displacement is evaluated on this grid, then interpolated

# Atrophy at severity 1 (severity is ~0 for a healthy subject, ~1 for moderate dementia).
VENTRICLE_MM = 12.0  # ventricle enlargement: length of the flow along vent_grad (max 1.4 x this)
VENTRICLE_STEPS = 4  # its integration steps, each below SAFE_DISPLACEMENT / 2: one-to-one
THINNING_MM = 2.0  # depth of cortex turned into CSF next to existing CSF
MTL_LOSS = 0.6  # fraction of medial-temporal tissue lost at its centre
SHRINK = 0.04  # global brain shrink (fraction of linear size)

LARGE_FIELD_MM, FINE_FIELD_MM = 3.0, 1.0  # std of the random displacement, coarse and fine scale

MARKERS = ("ventricle_fraction", "sulcal_fraction", "brain_fraction")


@dataclass(frozen=True)
class Subject:
    """One synthetic subject: stage, hidden severity, individual anatomy, pose and appearance (mm, degrees)."""

    subject: int  # the number in its OASIS-style id
    stage: int
    severity: float
    # individual offsets added to the severity for each marker (independent of the stage)
    ventricle_base: float
    cortex_base: float
    mtl_base: float
    # shape and pose
    head_scale: float
    elongation: float  # anterior-posterior stretch against left-right
    shear: float
    rotation: float
    shift_x: float
    shift_y: float
    # appearance (grey levels of CSF, GM and WM in 0..1, then a gamma, a bias field and noise)
    csf_level: float
    gm_level: float
    wm_level: float
    gamma: float
    bias: float
    noise_sigma: float
    field_seed: int  # seeds the random displacement field and the bias field

    @property
    def ventricle_mm(self) -> float:
        return VENTRICLE_MM * min(max(self.severity + self.ventricle_base, -0.3), 1.4)

    @property
    def thinning_mm(self) -> float:
        return THINNING_MM * min(max(self.severity + self.cortex_base, 0.0), 1.6)

    @property
    def mtl_loss(self) -> float:
        return MTL_LOSS * min(max(self.severity + self.mtl_base, 0.0), 1.5)

    @property
    def shrink(self) -> float:
        return SHRINK * min(max(self.severity, 0.0), 1.5)


def sample_subject(subject: int, stage: int, severity: float, rng: np.random.Generator) -> Subject:
    """Draw a subject's individual anatomy, pose and appearance from ``rng``; stage and severity are given."""
    return Subject(
        subject=int(subject), stage=int(stage), severity=float(severity),
        ventricle_base=float(rng.normal(0.0, 0.1)),
        cortex_base=float(rng.normal(0.0, 0.1)),
        mtl_base=float(rng.normal(0.0, 0.1)),
        head_scale=float(np.exp(rng.normal(0.0, 0.05))),
        elongation=float(np.exp(rng.normal(0.0, 0.04))),
        shear=float(rng.normal(0.0, 0.03)),
        rotation=float(rng.normal(0.0, 5.0)),
        shift_x=float(rng.normal(0.0, 3.0)),
        shift_y=float(rng.normal(0.0, 3.0)),
        csf_level=float(rng.uniform(0.03, 0.12)),
        gm_level=float(rng.uniform(0.38, 0.50)),
        wm_level=float(rng.uniform(0.74, 0.90)),
        gamma=float(rng.uniform(0.85, 1.15)),
        bias=float(rng.uniform(0.0, 0.08)),
        noise_sigma=float(rng.uniform(0.01, 0.03)),
        field_seed=int(rng.integers(0, 2**31 - 1)),
    )


def slice_levels(count: int, rng: np.random.Generator) -> list[int]:
    """``count`` distinct template levels spread over LEVEL_MIN..LEVEL_MAX (one per equal slot, jittered)."""
    width = (LEVEL_MAX - LEVEL_MIN) / count
    pos = LEVEL_MIN + (np.arange(count) + rng.uniform(0.15, 0.85, count)) * width
    return [int(round(p)) for p in pos]


def _coarse_field(seed: int, level: int, m: int) -> np.ndarray:
    """The subject's displacement field (mm) at ``level`` on an m x m grid over the field of view: float32 [2, m, m].

    Gaussian noise on coarse 3-D grids (4 x 4 x 3 and 9 x 9 x 5 nodes), interpolated by cubic splines
    (on a FIELD_GRID grid, then linearly): smooth, with gradients of a few percent, so the map stays
    one-to-one.
    """
    if m > FIELD_GRID:
        return np.stack([_upsample(f, m) for f in _coarse_field(seed, level, FIELD_GRID)])
    rng = np.random.default_rng([seed, 7])
    t = (level - LEVEL_MIN) / (LEVEL_MAX - LEVEL_MIN)
    out = np.zeros((2, m, m), dtype=np.float32)
    for shape, sd in (((3, 4, 4), LARGE_FIELD_MM), ((5, 9, 9), FINE_FIELD_MM)):
        nodes = rng.normal(0.0, sd, (2, *shape))
        g = (np.arange(m) + 0.5) / m
        zz = np.full((m, m), t * (shape[0] - 1))
        yy, xx = np.meshgrid(g * (shape[1] - 1), g * (shape[2] - 1), indexing="ij")
        for k in range(2):
            out[k] += ndi.map_coordinates(nodes[k], [zz, yy, xx], order=3, mode="nearest")
    return out


def _bias_field(seed: int, m: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 11])
    nodes = rng.normal(0.0, 1.0, (3, 3))
    g = (np.arange(m) + 0.5) / m * 2
    yy, xx = np.meshgrid(g, g, indexing="ij")
    return ndi.map_coordinates(nodes, [yy, xx], order=2, mode="nearest").astype(np.float32)


def _upsample(a: np.ndarray, n: int) -> np.ndarray:
    if a.shape[-1] == n:
        return a
    return ndi.zoom(a, n / a.shape[-1], order=1, mode="nearest", grid_mode=True)


def coordinates(subj: Subject, level: int, m: int, rotation: float, shift_x: float, shift_y: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where each pixel of an m x m image of ``subj`` at ``level`` samples the 1-mm template slab.

    Returns (py, px): the subject's anatomy before atrophy (its shape, random field and pose undone),
    and (qy, qx): after atrophy (global shrink, then the ventricle flow), float32 ``[m, m]`` each, in
    template pixels (rows, columns).
    """
    o = ((np.arange(m) + 0.5) * (FOV_MM / m) - FOV_MM / 2).astype(np.float32)
    dy, dx = o[:, None] - np.float32(shift_y), o[None, :] - np.float32(shift_x)
    ca, sa = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    ry, rx = ca * dy - sa * dx, sa * dy + ca * dx
    ty = ry / np.float32(subj.head_scale * subj.elongation)
    tx = rx / np.float32(subj.head_scale) + np.float32(subj.shear) * ty
    field = _coarse_field(subj.field_seed, level, m)
    rc, cc = brain_centre()
    py, px = rc + ty + field[0], cc + tx + field[1]
    # atrophy: global shrink about the centre, ventricles enlarged along the gradient of their map
    # (the ventricle flow is integrated in VENTRICLE_STEPS small steps, each one-to-one: a diffeomorphism)
    s = 1.0 / (1.0 - subj.shrink)
    qy, qx = rc + (py - rc) * s, cc + (px - cc) * s
    grad = level_maps(int(level)).vent_grad
    step = np.float32(subj.ventricle_mm / VENTRICLE_STEPS)
    for _ in range(VENTRICLE_STEPS):
        gy, gx = (ndi.map_coordinates(grad[k], [qy, qx], order=1, mode="nearest") for k in range(2))
        qy, qx = qy + step * gy, qx + step * gx
    return py, px, qy, qx


def render(subj: Subject, level: int, img_size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One axial slice of ``subj`` at template ``level`` as uint8 ``[img_size, img_size]``, and its measurements.

    ``rng`` draws the slice's small pose jitter and the noise. Returns the image and a dict with the
    jitter and the measured :data:`MARKERS`.
    """
    maps = level_maps(int(level))
    n = int(img_size)
    m = min(n, CONTROL_MAX)
    rot = subj.rotation + float(rng.normal(0.0, 1.5))
    sx = subj.shift_x + float(rng.normal(0.0, 1.0))
    sy = subj.shift_y + float(rng.normal(0.0, 1.0))
    py, px, qy, qx = coordinates(subj, level, m, rot, sx, sy)

    # tissue loss on the 1-mm slab: cortex next to CSF, and the medial temporal lobe
    loss = np.clip(subj.thinning_mm + 1.0 - maps.to_csf, 0.0, 1.0) * maps.cortex
    loss = np.clip(loss + subj.mtl_loss * maps.mtl, 0.0, 1.0)
    t1 = maps.t1 - np.maximum(maps.t1 - T1_CSF, 0.0) * loss
    csf = maps.csf + maps.tissue * loss

    # measurements on the control grid: fractions of the subject's intracranial area (its unatrophied brain)
    def at(a: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return ndi.map_coordinates(a, [y, x], order=1, mode="constant", cval=0.0)

    icv = float(at(maps.mask, py, px).sum()) + 1e-6
    brain_s, csf_s = at(maps.mask, qy, qx), at(csf, qy, qx)
    vent_s, band_s = at(maps.ventricle, qy, qx), at(maps.cortex, qy, qx)
    info = {
        "slice_rotation": rot, "slice_shift_x": sx, "slice_shift_y": sy,
        "ventricle_fraction": float(vent_s.sum()) / icv,
        "sulcal_fraction": float((csf_s * (1.0 - vent_s) * band_s).sum()) / (float(band_s.sum()) + 1e-6),
        "brain_fraction": float((brain_s - csf_s).clip(0.0).sum()) / icv,
    }

    # the image: one interpolation of the (anti-aliased) atrophied slab at full resolution
    mm_per_px = FOV_MM / n / subj.head_scale
    if mm_per_px > 1.2:
        t1 = ndi.gaussian_filter(t1, 0.45 * mm_per_px - 0.35)
    qy, qx = _upsample(qy, n), _upsample(qx, n)
    x = at(t1, qy, qx)
    inside = x > 0.5 * T1_CSF
    lev = np.interp(x, [0.0, T1_CSF, T1_GM, T1_WM, 1.0],
                    [0.0, subj.csf_level, subj.gm_level, subj.wm_level, min(1.0, subj.wm_level + 0.1)])
    img = lev.astype(np.float32) ** np.float32(subj.gamma)
    img *= 1.0 + np.float32(subj.bias) * _upsample(_bias_field(subj.field_seed, m), n)
    noise = rng.standard_normal((n, n), dtype=np.float32) * np.float32(subj.noise_sigma)
    img = np.where(inside, img + noise, img)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8), info
