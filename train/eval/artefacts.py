"""Implausible anatomy: the share of images with fragments detached from the brain or tissue outside the
head, holes inside it, or torn tissue, from connected components and intensity statistics alone.

Per image (uint8, dark background), on a lightly smoothed copy:

- ``fragments``: foreground (brighter than 15% of the image's 99th percentile) outside the largest
  foreground component, as a share of that component's area: detached pieces, tissue outside the head;
- ``holes``: the largest region darker than any tissue (below 4% of the white-matter level) enclosed by
  the head, as a share of the head: holes punched through the brain;
- ``torn``: the area of CSF-dark islands (below 40% of the white-matter level, as the atrophy markers
  define CSF) smaller than a ventricle and ringed by tissue as bright as white matter, as a share of the
  head: the dark specks of torn tissue. Real sulci are lined with grey matter; ventricles are large.

Each score's threshold is read from real *train-side* images (their 99.9th percentile, times
:data:`MARGIN`), so the rate on real *held-out* images is an honest check (near zero) and a corruption row
(held-out images with a pasted blob outside the head, a punched hole or torn specks) shows that the rule
reacts. An image is flagged when any score is above its threshold.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

SCORES = ("fragments", "holes", "torn")
QUANTILE = 0.999
MARGIN = 1.5
FLOORS = {"fragments": 0.002, "holes": 0.002, "torn": 0.004}  # never below these (a share of the head)
SHOWN = 16


def _smooth(x: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.uniform_filter(x, size=3, mode="nearest")


def scores(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image, the three scores (float64 ``[N]`` each)."""
    from scipy import ndimage as ndi

    imgs = np.asarray(images)
    out = {k: np.zeros(len(imgs)) for k in SCORES}
    eight = np.ones((3, 3), dtype=bool)
    for i, img in enumerate(imgs):
        x = _smooth(img.astype(np.float32) / 255.0)
        hi = float(np.percentile(x, 99.0)) + 1e-6
        fg = x > 0.15 * hi
        lab, n = ndi.label(fg, structure=eight)
        if n == 0:
            continue
        areas = np.bincount(lab.ravel())[1:]
        main = int(np.argmax(areas)) + 1
        head = ndi.binary_fill_holes(lab == main)
        head_area = float(head.sum()) + 1e-6
        out["fragments"][i] = float(areas.sum() - areas[main - 1]) / head_area
        inner = ndi.binary_erosion(head, iterations=2)
        wm = float(np.percentile(x[head], 90.0)) if head.any() else hi
        black, nb = ndi.label(inner & (x < 0.04 * wm))
        if nb:
            out["holes"][i] = float(np.bincount(black.ravel())[1:].max()) / head_area
        dark, nd = ndi.label(inner & (x < 0.4 * wm))
        if nd:
            sizes = np.bincount(dark.ravel(), minlength=nd + 1)[1:]
            ids = np.arange(1, nd + 1)
            # the ring around each island: a dark speck in tissue as bright as white matter is torn tissue;
            # sulci (and their cross-sections) are lined with grey matter, ventricles are large
            grown = ndi.grey_dilation(dark, size=(5, 5))
            ring = np.where((grown > 0) & (dark == 0), grown, 0)
            ring_mean = np.asarray(ndi.mean(x, labels=ring, index=ids)) if ring.any() else np.zeros(nd)
            torn = (sizes < 0.01 * head_area) & (np.nan_to_num(ring_mean) > 0.8 * wm)
            out["torn"][i] = float(sizes[torn].sum()) / head_area
    return out


def thresholds(real_scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: max(FLOORS[k], MARGIN * float(np.quantile(real_scores[k], QUANTILE))) for k in SCORES}


def flags(s: dict[str, np.ndarray], limits: dict[str, float]) -> np.ndarray:
    return np.any([s[k] > limits[k] for k in SCORES], axis=0)


def corrupt(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Real images with one corruption each, in turn: a bright blob pasted outside the head, a black hole
    punched inside the brain, torn tissue (a patch of dark specks)."""
    rng = np.random.default_rng([seed, 0xBAD])
    out = np.array(images, copy=True)
    n, h, w = out.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = max(2, h // 32)
    rh = max(2, h // 12)
    for i in range(n):
        img = out[i]
        ys, xs = np.nonzero(img > 30)
        cy, cx = (int(ys.mean()), int(xs.mean())) if len(ys) else (h // 2, w // 2)
        kind = i % 3
        if kind == 0:  # a blob in a background corner
            by, bx = (r + 1, r + 1) if img[: 2 * r + 2, : 2 * r + 2].max() < 10 else (h - r - 2, w - r - 2)
            img[(yy - by) ** 2 + (xx - bx) ** 2 <= r * r] = 200
        elif kind == 1:  # a hole inside the brain, off centre
            oy, ox = cy + int(rng.integers(-h // 8, h // 8)), cx + int(rng.integers(-w // 8, w // 8))
            img[(yy - oy) ** 2 + (xx - ox) ** 2 <= rh * rh] = 0
        else:  # torn tissue: dark specks over a patch
            oy, ox = cy + int(rng.integers(-h // 10, h // 10)), cx + int(rng.integers(-w // 10, w // 10))
            q = max(1, h // 64)
            for _ in range(16):
                sy, sx = oy + int(rng.integers(-3 * r, 3 * r)), ox + int(rng.integers(-3 * r, 3 * r))
                img[max(sy - q, 0) : sy + q + 1, max(sx - q, 0) : sx + q + 1] = 0
    return out


def artefact_check(gen: Sequence[np.ndarray], base: Sequence[np.ndarray], names: Sequence[str], *,
                   reference: Sequence[np.ndarray] | None = None, seed: int = 0
                   ) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Rates per stage for generated images, real held-out images (``base``) and the corruption row;
    thresholds from ``reference`` (real train-side images; default: the first half of ``base``, and then
    the held-out rate is read on the second half). Returns the report section and up to
    :data:`SHOWN` flagged generated images."""
    k = len(gen)
    if reference is None:
        reference = [b[: len(b) // 2] for b in base]
        base = [b[len(b) // 2 :] for b in base]
    ref_s = scores(np.concatenate([np.asarray(r) for r in reference]))
    limits = thresholds(ref_s)
    rows: dict[str, Any] = {"generated": [], "real_held_out": [], "corrupted_real": []}
    flagged: list[np.ndarray] = []
    by_kind: dict[str, list[float]] = {key: [] for key in SCORES}
    for s in range(k):
        g = scores(gen[s])
        fg = flags(g, limits)
        rows["generated"].append(float(fg.mean()))
        for key in SCORES:
            by_kind[key].append(float((g[key] > limits[key]).mean()))
        flagged += list(np.asarray(gen[s])[fg][: max(0, SHOWN - len(flagged))])
        rows["real_held_out"].append(float(flags(scores(base[s]), limits).mean()))
        rows["corrupted_real"].append(float(flags(scores(corrupt(np.asarray(base[s]), seed + s)), limits).mean()))
    section = {
        "per_stage": rows, "by_kind_generated": by_kind, "thresholds": limits,
        "rate": {key: float(np.mean(v)) for key, v in rows.items()},
        "what": "share of images flagged for detached fragments or tissue outside the head, holes, or torn tissue "
                "(connected components and intensity statistics); thresholds from real train-side images "
                f"({QUANTILE:.1%} quantile x {MARGIN}); corrupted real: held-out images with a pasted blob, a hole "
                "or torn specks (one each, in turn)",
        "stage_names": list(names),
    }
    return section, flagged
