"""Brain anatomy for the synthetic set: axial slabs of the MNI ICBM152 2009 template and their tissue maps.

The template (T1, grey- and white-matter probability maps on one 1-mm grid, skull-stripped) ships in
the nilearn wheel and is read offline. For every axial level the synthetic set uses, this module
derives once per process the maps that atrophy acts through:

- ``t1``: the template's T1 slice (0..1, background 0), rows anterior to posterior, columns left to right;
- ``mask`` (brain), ``tissue`` (GM + WM probability) and ``csf`` (the rest of the brain);
- ``ventricle``: the central CSF (lateral and third ventricles, temporal horns, basal cisterns), i.e. CSF
  at least ``VENTRICLE_DEPTH_MM`` inside the brain;
- ``vent_grad``: the gradient of the ventricle map smoothed at ``VENTRICLE_SIGMA_MM``, scaled so that
  its Jacobian's largest eigenvalue is 1 / ``SAFE_DISPLACEMENT``: a displacement of up to that many
  units along it enlarges the ventricles radially and stays one-to-one (diffeomorphic);
- ``to_csf``: per tissue pixel, the distance (mm) to the nearest CSF or outside pixel: converting the
  tissue closer than t mm to CSF thins the cortex and widens the sulci by t;
- ``cortex``: a weight for the outer ``CORTEX_BAND_MM`` of the brain, where that thinning acts;
- ``mtl``: a weight for the hippocampus / medial temporal lobe (both sides), non-zero on low slices only.

ICBM 2009 template: Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal
Neurological Institute, McGill University (Fonov et al. 2009, 2011; Collins et al. 1999); see
:data:`TEMPLATE_NOTICE`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from cgan.runtime.errors import CganError

# Axial levels the set samples, as template z indices (MNI z = index - 72 mm): from the temporal horns
# (MNI z = -14 mm) to just above the lateral ventricles (+36 mm), as the Kaggle OASIS slices do.
LEVEL_MIN, LEVEL_MAX = 58, 108
Z_ORIGIN, Y_ORIGIN, X_ORIGIN = 72, 134, 98  # template voxel of MNI (0, 0, 0) on the 1-mm grid

VENTRICLE_DEPTH_MM = 14.0
VENTRICLE_SIGMA_MM = 9.0
SAFE_DISPLACEMENT = 10.0
CORTEX_BAND_MM = 16.0
# hippocampal body centre (MNI mm, one side) and the spread of the medial-temporal weight
MTL_CENTRE = (26.0, -22.0, -14.0)
MTL_SIGMA = (7.0, 11.0, 8.0)

# Template grey levels (0..1 scale) of CSF, grey matter and white matter: medians over voxels with
# tissue probability > 0.9 (measured on the 1-mm template).
T1_CSF, T1_GM, T1_WM = 0.27, 0.65, 0.87

TEMPLATE_NOTICE = """\
The anatomy comes from the MNI ICBM152 2009 nonlinear symmetric template (release a), as shipped in
the nilearn package: T1 and grey/white-matter probability maps.

  Fonov VS, Evans AC, McKinstry RC, Almli CR, Collins DL. Unbiased nonlinear average age-appropriate
  brain templates from birth to adulthood. NeuroImage 47 (2009) S102.
  Fonov V, Evans AC, Botteron K, Almli CR, McKinstry RC, Collins DL. Unbiased average
  age-appropriate atlases for pediatric studies. NeuroImage 54 (2011) 313-327.
  Collins DL, Zijdenbos AP, Baare WFC, Evans AC. ANIMAL+INSECT: improved cortical structure
  segmentation. IPMI 1999, LNCS 1613, 210-223.

Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
Institute, McGill University. Permission to use, copy, modify, and distribute this software and its
documentation for any purpose and without fee is hereby granted, provided that the above copyright
notice appear in all copies. The authors and McGill University make no representations about the
suitability of this software for any purpose. It is provided "as is" without express or implied
warranty. The authors are not responsible for any data loss, equipment damage, property loss, or
injury to subjects or patients resulting from the use or misuse of this software package.
"""


@dataclass(frozen=True)
class LevelMaps:
    """Maps of one axial template level (float32 ``[H, W]`` on the 1-mm grid unless noted)."""

    level: int
    t1: np.ndarray
    mask: np.ndarray
    tissue: np.ndarray
    csf: np.ndarray
    ventricle: np.ndarray
    vent_grad: np.ndarray  # float32 [2, H, W]: (row, column) components, max length 1
    to_csf: np.ndarray
    cortex: np.ndarray
    mtl: np.ndarray


LEVEL_PAD = 8  # levels beyond the sampled range that are kept too (tests, neighbours)
_slabs: np.ndarray | None = None


def _read_template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 1-mm template volumes (T1 scaled to 0..1, GM, WM), float32 ``[x, y, z]``, through nilearn."""
    try:
        from nilearn import datasets
    except ImportError:
        raise CganError("the synthetic set is built from the MNI template shipped with nilearn; "
                        "install it with: pip install 'dementia-cgan[train]'") from None
    t1 = datasets.load_mni152_template(resolution=1).get_fdata(dtype=np.float32)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    return t1, gm, wm


def _axial(vol: np.ndarray, level: int) -> np.ndarray:
    """Axial slice as an image: rows anterior (top) to posterior, columns the subject's left to right."""
    return np.ascontiguousarray(vol[:, ::-1, level].T, dtype=np.float32)


def template_slabs() -> np.ndarray:
    """T1, GM and WM axial slices of levels LEVEL_MIN - LEVEL_PAD .. LEVEL_MAX + LEVEL_PAD: float32
    ``[3, levels, H, W]``, read once per process (or handed over by :func:`share_template`)."""
    global _slabs
    if _slabs is None:
        levels = range(LEVEL_MIN - LEVEL_PAD, LEVEL_MAX + LEVEL_PAD + 1)
        _slabs = np.stack([np.stack([_axial(v, z) for z in levels]) for v in _read_template()])
    return _slabs


def share_template(slabs: np.ndarray) -> None:
    """Use ``slabs`` (from :func:`template_slabs` of another process): worker processes get the
    template this way instead of importing nilearn (seconds) each."""
    global _slabs
    _slabs = slabs


def mni_to_pixel(x_mm: float, y_mm: float) -> tuple[float, float]:
    """(row, column) of MNI (x, y) on an axial slice image."""
    height = template_slabs().shape[2]
    return height - 1 - (y_mm + Y_ORIGIN), x_mm + X_ORIGIN


def _max_eigenvalue(field: np.ndarray) -> float:
    """Largest |eigenvalue| over the grid of the Jacobian of a 2-D gradient field ``[2, H, W]`` (symmetric)."""
    dyy, dyx = np.gradient(field[0])
    dxy, dxx = np.gradient(field[1])
    half_tr = (dyy + dxx) / 2
    disc = np.sqrt(np.maximum(half_tr ** 2 - (dyy * dxx - dyx * dxy), 0.0))
    return float(np.maximum(np.abs(half_tr + disc), np.abs(half_tr - disc)).max())


@functools.lru_cache(maxsize=None)
def level_maps(level: int) -> LevelMaps:
    """The maps of template z index ``level`` (computed once per process and level)."""
    if not LEVEL_MIN - LEVEL_PAD <= level <= LEVEL_MAX + LEVEL_PAD:
        raise ValueError(f"level must be within {LEVEL_MIN - LEVEL_PAD}..{LEVEL_MAX + LEVEL_PAD}, got {level}")
    slabs = template_slabs()[:, level - (LEVEL_MIN - LEVEL_PAD)]
    t1 = np.clip(slabs[0], 0.0, 1.0)
    mask_b = ndi.binary_fill_holes(t1 > 0.1)
    mask = mask_b.astype(np.float32)
    tissue = np.clip(slabs[1] + slabs[2], 0.0, 1.0) * mask
    csf = (mask - tissue).clip(0.0, 1.0)
    depth = ndi.distance_transform_edt(mask_b).astype(np.float32)  # mm from the outside
    vent_b = (csf > 0.5) & (depth > VENTRICLE_DEPTH_MM)
    vent_b = ndi.binary_opening(vent_b)  # drop single-pixel specks
    ventricle = ndi.gaussian_filter(vent_b.astype(np.float32), 0.7) * mask
    smooth = ndi.gaussian_filter(vent_b.astype(np.float32), VENTRICLE_SIGMA_MM)
    grad = np.stack(np.gradient(smooth)).astype(np.float32)
    grad /= max(_max_eigenvalue(grad), 1e-9) * SAFE_DISPLACEMENT
    dark = (csf > 0.5) | ~mask_b
    to_csf = ndi.distance_transform_edt(~dark).astype(np.float32)
    cortex = np.clip((CORTEX_BAND_MM - depth) / 4.0, 0.0, 1.0) * mask
    rows, cols = np.mgrid[0 : t1.shape[0], 0 : t1.shape[1]].astype(np.float32)
    z_mm = level - Z_ORIGIN
    mtl = np.zeros_like(t1)
    wz = np.exp(-0.5 * ((z_mm - MTL_CENTRE[2]) / MTL_SIGMA[2]) ** 2)
    for side in (-1.0, 1.0):
        r0, c0 = mni_to_pixel(side * MTL_CENTRE[0], MTL_CENTRE[1])
        mtl += np.exp(-0.5 * (((cols - c0) / MTL_SIGMA[0]) ** 2 + ((rows - r0) / MTL_SIGMA[1]) ** 2))
    mtl = (mtl * wz * tissue).astype(np.float32)
    return LevelMaps(level=level, t1=t1, mask=mask, tissue=tissue, csf=csf, ventricle=ventricle,
                     vent_grad=grad, to_csf=to_csf, cortex=cortex, mtl=mtl)


@functools.lru_cache(maxsize=1)
def brain_centre() -> tuple[float, float]:
    """(row, column) of the brain's centre over the levels used: the centre of every subject's pose and shrink."""
    masks = [level_maps(z).mask for z in range(LEVEL_MIN, LEVEL_MAX + 1, 5)]
    r, c = ndi.center_of_mass(np.mean(masks, axis=0))
    return float(r), float(c)
