"""A synthetic OASIS-like set: axial T1-like brain slices whose atrophy grows with the dementia stage.

Each image is drawn from a handful of anatomical parameters (:class:`SliceParams`) and rendered
analytically with vectorised numpy on the pixel grid: scalp, skull, extra-cerebral CSF, a folded
cortical ribbon (grey matter wrapping the sulci and the interhemispheric fissure), white matter,
butterfly-shaped lateral ventricles with the caudate heads beside them, a smooth tissue texture,
a bias field and Rician noise. Stage drives a continuous latent *severity* per image, drawn from a
stage-dependent normal distribution that overlaps its neighbours; severity enlarges the
ventricles, widens and deepens the sulci, thins the cortex and opens the gap under the skull.
Individual anatomy (head size, ventricle size, cortex thickness...), pose, contrast and noise vary
independently of the stage, so no single pixel statistic gives the stage away.

Image k of a set with seed S depends only on (S, k): the same bytes for any worker count.
Research and education only: these are not medical images.
"""

from __future__ import annotations

import csv
import functools
import math
import statistics
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, fields
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from cgan.runtime.contract import OASIS_COUNTS, OASIS_FOLDERS
from cgan.runtime.errors import CganError
from cgan.runtime.writers import png_bytes

# Bump when the rendering or the sampling changes: caches of the default synthetic set key on it.
SYNTH_VERSION = "1"

# Mean latent severity per stage; every image draws severity ~ N(mean, SEVERITY_SD), clipped at 0.
# The spacing against the spread sets how separable the stages are (tuned so that a small CNN
# reaches roughly 90-98% held-out accuracy at 64-128 px, see the module's tests and report).
SEVERITY_MEANS = (0.05, 0.35, 0.65, 0.95)
SEVERITY_SD = 0.06

# Every stage gets at least FLOOR_FRACTION of the set (and at least min(FLOOR_MIN, n // stages)
# images), so the rarest stage (0.56% of OASIS) still has images to learn from.
FLOOR_FRACTION = 0.02
FLOOR_MIN = 32

LABELS_CSV = "labels.csv"
IMAGE_SUFFIX = ".png"  # lossless and byte-deterministic (OASIS on Kaggle ships JPEG)


@dataclass(frozen=True)
class SliceParams:
    """Everything that defines one synthetic slice except its noise. Lengths are in brain units
    (the brain's anterior-posterior half-length is 1), angles in degrees."""

    stage: int
    severity: float  # latent atrophy, ~0 healthy .. ~1 moderate dementia
    # atrophy markers (what the stage drives, plus individual variation)
    ventricle_scale: float  # width of the lateral ventricles relative to a healthy average
    ventricle_length: float  # their length relative to a healthy average
    sulcal_width: float  # width of the sulci
    sulcal_depth: float  # mean depth of the sulci
    cortical_thickness: float  # grey-matter ribbon thickness
    csf_gap: float  # extra-cerebral CSF between brain surface and skull (relative radius)
    fissure_width: float  # interhemispheric fissure width
    # anatomy unrelated to the stage
    brain_aspect: float  # left-right / anterior-posterior half-axis ratio
    n_sulci: int  # sulci around the circumference
    shape_seed: int  # outline wobble, sulcal layout, texture
    # pose and appearance
    head_scale: float  # brain half-length in image half-widths
    rotation: float
    shift_x: float  # in image half-widths
    shift_y: float
    csf_level: float
    gm_level: float
    wm_level: float
    scalp_level: float
    gain: float
    gamma: float
    bias_x: float  # linear bias field slope
    bias_y: float
    noise_sigma: float  # Rician noise, in units of the full intensity range


def sample_params(stage: int, rng: np.random.Generator) -> SliceParams:
    """Draw one slice's parameters for ``stage`` (0..3) from ``rng``."""
    if not 0 <= stage < len(SEVERITY_MEANS):
        raise ValueError(f"stage must be in 0..{len(SEVERITY_MEANS) - 1}, got {stage}")
    sev = max(0.0, float(rng.normal(SEVERITY_MEANS[stage], SEVERITY_SD)))

    def indiv(sd: float) -> float:  # individual variation, a log-normal factor around 1
        return float(np.exp(rng.normal(0.0, sd)))

    return SliceParams(
        stage=int(stage),
        severity=sev,
        ventricle_scale=indiv(0.08) * (1.0 + 1.8 * sev),
        ventricle_length=indiv(0.06) * (1.0 + 0.25 * sev),
        sulcal_width=indiv(0.10) * (0.010 + 0.040 * sev),
        sulcal_depth=indiv(0.10) * (0.15 + 0.05 * sev),
        cortical_thickness=indiv(0.08) * (0.055 - 0.017 * sev),
        csf_gap=indiv(0.15) * (0.012 + 0.030 * sev),
        fissure_width=indiv(0.15) * (0.008 + 0.02 * sev),
        brain_aspect=float(rng.uniform(0.74, 0.84)),
        n_sulci=int(rng.integers(24, 34)),
        shape_seed=int(rng.integers(0, 2**31 - 1)),
        head_scale=float(rng.uniform(0.68, 0.78)),
        rotation=float(rng.normal(0.0, 6.0)),
        shift_x=float(rng.uniform(-0.05, 0.05)),
        shift_y=float(rng.uniform(-0.05, 0.05)),
        csf_level=float(rng.uniform(0.07, 0.14)),
        gm_level=float(rng.uniform(0.44, 0.52)),
        wm_level=float(rng.uniform(0.74, 0.82)),
        scalp_level=float(rng.uniform(0.55, 0.75)),
        gain=float(rng.uniform(0.85, 1.15)),
        gamma=float(rng.uniform(0.85, 1.15)),
        bias_x=float(rng.normal(0.0, 0.05)),
        bias_y=float(rng.normal(0.0, 0.05)),
        noise_sigma=float(rng.uniform(0.015, 0.04)),
    )


def _atan2(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """arctan2 to ~1e-5 rad with a minimax polynomial: several times faster than np.arctan2 on float32."""
    ax, ay = np.abs(x), np.abs(y)
    hi = np.maximum(ax, ay)
    a = np.minimum(ax, ay) / np.maximum(hi, np.float32(1e-12))
    s = a * a
    r = ((((np.float32(0.0208351) * s - np.float32(0.085133)) * s + np.float32(0.180141)) * s
          - np.float32(0.3302995)) * s + np.float32(0.999866)) * a
    r = np.where(ay > ax, np.float32(np.pi / 2) - r, r)
    r = np.where(x < 0, np.float32(np.pi) - r, r)
    return np.where(y < 0, -r, r)


@functools.lru_cache(maxsize=1)
def _normal_table() -> np.ndarray:
    """The 256 quantiles (i + 0.5) / 256 of the standard normal, float32."""
    dist = statistics.NormalDist()
    return np.array([dist.inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float32)


def _len(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt(x * x + y * y)


def _ramp(d: np.ndarray, pix: float) -> np.ndarray:
    """Anti-aliased inside-ness of a region with signed distance ``d`` (positive inside): 0..1 over a pixel."""
    return np.clip(d * (1.0 / pix) + 0.5, 0.0, 1.0)


def render(params: SliceParams, img_size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one slice as uint8 ``[img_size, img_size]``; ``rng`` draws only the noise."""
    p = params
    n = int(img_size)
    f32 = np.float32
    c = ((np.arange(n, dtype=f32) + 0.5) * (2.0 / n) - 1.0).astype(f32)
    du = c[None, :] - f32(p.shift_x)
    dv = c[:, None] - f32(p.shift_y)
    ca, sa = math.cos(math.radians(p.rotation)), math.sin(math.radians(p.rotation))
    inv = f32(1.0 / p.head_scale)
    X = (f32(ca) * du + f32(sa) * dv) * inv  # left-right, brain units
    Y = (f32(-sa) * du + f32(ca) * dv) * inv  # anterior (-) to posterior (+)
    pix = 2.0 / (n * p.head_scale)  # one pixel in brain units

    shape = np.random.default_rng(p.shape_seed)
    r = _len(X, Y) + f32(1e-6)
    theta = _atan2(Y, X)
    # cos/sin of k*theta by the angle-addition formulas: harmonics without a trig call each
    c1, s1 = X / r, Y / r
    c2, s2 = c1 * c1 - s1 * s1, f32(2.0) * c1 * s1
    c3, s3 = c2 * c1 - s2 * s1, s2 * c1 + c2 * s1
    c4, s4 = c2 * c2 - s2 * s2, f32(2.0) * c2 * s2

    def re(w: complex, c: np.ndarray, s_: np.ndarray) -> np.ndarray:  # Re(w * e^{ik theta})
        return f32(w.real) * c - f32(w.imag) * s_

    def im(w: complex, c: np.ndarray, s_: np.ndarray) -> np.ndarray:  # Im(w * e^{ik theta})
        return f32(w.real) * s_ + f32(w.imag) * c

    # outline: an ellipse, a little egg-shaped (wider at the back) with a few low harmonics
    wob = shape.normal(0.0, 0.012, 3) * np.exp(1j * shape.uniform(0.0, 2 * np.pi, 3))
    outline = f32(1.0) + f32(0.04) * s1 + re(wob[0], c2, s2) + re(wob[1], c3, s3) + re(wob[2], c4, s4)
    q = _len(X * f32(1.0 / p.brain_aspect), Y) / outline  # 1 on the inner skull surface
    rloc = r / np.maximum(q, f32(1e-3))  # radius of the q=1 contour along this ray

    # --- brain tissue: distance to the nearest CSF (surface, sulci, fissure), positive in tissue
    qb = 1.0 - p.csf_gap
    d_surf = (f32(qb) - q) * rloc
    # sulci: radial clefts at the peaks of a wobbly angular phase, curving with depth
    nsul = p.n_sulci
    jw = shape.uniform(0.4, 1.2, 3) * np.exp(1j * shape.uniform(0.0, 2 * np.pi, 3))
    bend = f32(shape.uniform(-12.0, 12.0))
    kx, ky = shape.normal(0.0, 9.0, 2)
    meander = f32(shape.uniform(1.0, 2.0)) * np.sin(f32(kx) * X + f32(ky) * Y + f32(shape.uniform(0, 2 * np.pi)))
    psi = (f32(nsul) * theta + bend * (f32(qb) - q) + meander
           + im(jw[0], c1, s1) + im(jw[1], c2, s2) + im(jw[2], c3, s3))
    turns = np.round(psi * f32(1.0 / (2 * np.pi)))
    d_arc = np.abs(psi - turns * f32(2 * np.pi)) * r * f32(1.0 / nsul)
    # per-sulcus depth from a hash of its index (deterministic, varies sulcus to sulcus)
    h = (turns + f32(nsul)) * f32(0.618034) + f32((p.shape_seed % 997) / 997.0)
    h = (h - np.floor(h)) * f32(7.0)
    h = h - np.floor(h)
    depth = f32(p.sulcal_depth) * (f32(0.25) + f32(1.5) * h * h)
    below = np.maximum(f32(qb) * rloc - depth - r, f32(0.0))
    d_sulc = _len(d_arc, below) - f32(p.sulcal_width / 2)
    # interhemispheric fissure: the midline, from the frontal pole back to Y=-0.45 and from Y=0.6 to the back
    # (min of the two is exact wherever the fissure is near; elsewhere both are far)
    off = np.maximum(np.minimum(Y + f32(0.45), f32(0.6) - Y), f32(0.0))
    d_fis = _len(X, off) - f32(p.fissure_width / 2)
    d_csf = np.minimum(np.minimum(d_surf, d_sulc), d_fis)
    tissue = _ramp(d_csf, pix)
    white = _ramp(d_csf - f32(p.cortical_thickness), pix)
    # smooth texture of a few percent on tissue, so grey levels are not flat
    k = shape.normal(0.0, 7.0, (2, 2))
    ph = shape.uniform(0, 2 * np.pi, 2)
    tex = f32(1.0) + f32(0.02) * (np.cos(f32(k[0, 0]) * X + f32(k[0, 1]) * Y + f32(ph[0]))
                                  + np.cos(f32(k[1, 0]) * X + f32(k[1, 1]) * Y + f32(ph[1])))
    g = p.gamma  # contrast: a power on the tissue levels
    gm, wm, csf = f32(p.gm_level ** g), f32(p.wm_level ** g), f32(p.csf_level ** g)
    brain = csf + ((gm - csf) * tissue + (wm - gm) * white) * tex

    # --- deep structures: caudate heads (grey) beside the frontal horns, then the ventricles (CSF)
    vs, vl = p.ventricle_scale, p.ventricle_length
    a0 = 0.045 * vs
    b = 0.30 * vl
    cy = -0.06
    asym = 1.0 + shape.normal(0.0, 0.05)
    Xa = np.abs(X)
    side = np.where(X < 0, f32(asym), f32(2.0 - asym))
    t = (Y - f32(cy)) * f32(1.0 / b)
    a = f32(a0) * side * np.clip(f32(1.15) - f32(0.4) * t, f32(0.6), f32(1.6))
    u = Xa - (f32(0.012) + a + f32(0.5) * (Y - f32(cy)) ** 2)
    d_vent = (np.sqrt((u / a) ** 2 + t * t) - f32(1.0)) * a  # negative inside
    cx_c = 0.012 + 2.6 * a0 + 0.05
    d_caud = (_len((Xa - f32(cx_c)) * f32(1.0 / 0.055), (Y - f32(cy - 0.55 * b)) * f32(1.0 / 0.11)) - f32(1.0)) * f32(0.055)
    caud = _ramp(-d_caud, pix) * white
    brain = brain + (f32(0.5) * (gm + wm) - brain) * caud * f32(0.8)
    vent = _ramp(-d_vent, pix)
    brain = brain + (csf - brain) * vent

    # --- head: scalp and skull around the brain, composited from the outside in
    skull_t, scalp_t = 0.07, 0.07
    img = f32(p.scalp_level ** g) * _ramp((f32(1.0 + skull_t + scalp_t) - q) * rloc, pix)
    in_skull = _ramp((f32(1.0 + skull_t) - q) * rloc, pix)
    mid = (q - f32(1.0 + skull_t / 2)) * f32(2.0 / skull_t)  # -1..1 across the skull
    diploe = f32(0.05) + f32(0.25) * np.maximum(f32(1.0) - f32(2.0) * mid * mid, f32(0.0))  # brighter marrow inside
    img = img + (diploe - img) * in_skull
    img = img + (brain - img) * _ramp((f32(1.0) - q) * rloc, pix)

    # --- acquisition: bias field, gain and gamma, Rician noise
    bias = f32(1.0) + f32(p.bias_x) * X + f32(p.bias_y) * Y
    img = img * bias * f32(p.gain)
    sig = f32(p.noise_sigma)
    # Gaussian noise by a 256-entry quantile table indexed by random bytes: ~5x cheaper than
    # standard_normal, and indistinguishable once scaled to a few grey levels
    lut = _normal_table() * sig
    raw = rng.integers(0, 256, (2, n, n), dtype=np.uint8)
    n1, n2 = lut[raw[0]], lut[raw[1]]
    img = np.sqrt((img + n1) ** 2 + n2 * n2)
    return np.clip(np.rint(img * f32(255.0)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- sets

def stage_counts(n: int, weights: Sequence[float] = OASIS_COUNTS) -> np.ndarray:
    """Images per stage for a set of ``n``: OASIS proportions with a floor for the rare stages.

    Each stage gets at least ``max(ceil(2% of n), min(32, n // stages))`` images (the floor); the
    images that takes come from the largest stage. int64 ``[stages]`` summing to ``n``.
    """
    k = len(weights)
    if n < k:
        raise CganError(f"a synthetic set needs at least {k} images (one per stage), got n={n}")
    w = np.asarray(weights, dtype=np.float64)
    exact = w / w.sum() * n
    counts = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:  # largest remainders
        counts[i] += 1
    floor = max(math.ceil(FLOOR_FRACTION * n), min(FLOOR_MIN, n // k))
    for i in range(k):
        if counts[i] < floor:
            counts[int(np.argmax(counts))] -= floor - counts[i]
            counts[i] = floor
    return counts


def stage_of_index(n: int, seed: int) -> np.ndarray:
    """The stage of each image 0..n-1 of a set with ``seed`` (a seeded shuffle of :func:`stage_counts`)."""
    labels = np.repeat(np.arange(len(OASIS_COUNTS), dtype=np.int64), stage_counts(n))
    return np.random.default_rng([seed, 0x5EED]).permutation(labels)


def synth_image(seed: int, index: int, stage: int, img_size: int) -> tuple[np.ndarray, SliceParams]:
    """Image ``index`` of a set with ``seed``: a pure function of its arguments."""
    rng = np.random.default_rng([seed, index])
    params = sample_params(stage, rng)
    return render(params, img_size, rng), params


def image_relpath(stage: int, seed: int, index: int) -> str:
    return f"{OASIS_FOLDERS[stage]}/synth_s{seed}_{index:06d}{IMAGE_SUFFIX}"


def _write_chunk(job: tuple[Path, int, int, int, list[int]]) -> list[dict]:
    root, seed, img_size, start, stages = job
    rows = []
    for off, stage in enumerate(stages):
        k = start + off
        img, params = synth_image(seed, k, stage, img_size)
        rel = image_relpath(stage, seed, k)
        (root / rel).write_bytes(png_bytes(img, compress_level=6))
        rows.append({"path": rel, **asdict(params)})
    return rows


def _array_chunk(job: tuple[int, int, int, list[int]]) -> np.ndarray:
    seed, img_size, start, stages = job
    out = np.empty((len(stages), img_size, img_size), dtype=np.uint8)
    for off, stage in enumerate(stages):
        out[off] = synth_image(seed, start + off, stage, img_size)[0]
    return out


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _chunks(stages: np.ndarray, size: int) -> Iterator[tuple[int, list[int]]]:
    for start in range(0, len(stages), size):
        yield start, [int(s) for s in stages[start : start + size]]


POOL_MIN = 256  # sets smaller than this render in-process: starting workers would cost more


def _pool_map(fn: Callable, jobs: list, workers: int) -> Iterator:
    """Map in order, in worker processes when it pays.

    Workers are spawned (safe even after torch started its threads). Where spawning cannot work
    (e.g. a script fed on stdin) the remaining jobs run in this process: the output is the same.
    """
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    done = 0
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
            for result in pool.map(fn, jobs):
                yield result
                done += 1
    except BrokenProcessPool:
        yield from map(fn, jobs[done:])


def progress_bar(description: str):
    """A transient rich progress bar (shown only on a terminal)."""
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def render_set(n: int, *, seed: int, img_size: int = 128, workers: int | None = None,
               out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The images of the synthetic set (n, seed) in memory (or into ``out``, e.g. a memmap), and labels."""
    _check_set_args(n, seed, img_size)
    stages = stage_of_index(n, seed)
    images = out if out is not None else np.empty((n, img_size, img_size), dtype=np.uint8)
    workers = default_workers() if workers is None else workers
    chunk = 64
    jobs = [(seed, img_size, start, st) for start, st in _chunks(stages, chunk)]
    with progress_bar("rendering synthetic set") as bar:
        task = bar.add_task("", total=n)
        for (_, _, start, st), arr in zip(jobs, _pool_map(_array_chunk, jobs, workers if n >= POOL_MIN else 1)):
            images[start : start + len(st)] = arr
            bar.advance(task, len(st))
    return images, stages


def _check_set_args(n: int, seed: int, img_size: int) -> None:
    if n < 1:
        raise CganError(f"--n must be at least 1, got {n}")
    if seed < 0:
        raise CganError(f"--seed must be >= 0, got {seed}")
    if img_size < 16:
        raise CganError(f"image size must be at least 16 px, got {img_size}")


def make_synthetic_set(out: Path, *, n: int, seed: int, img_size: int = 128, log: Callable[[str], object] = print,
                       workers: int | None = None, overwrite: bool = False) -> Path:
    """Write the synthetic set (n, seed) to ``out`` in the Kaggle OASIS layout, with ``labels.csv``.

    ``out/<OASIS folder>/synth_s<seed>_<index>.png`` plus ``out/labels.csv`` (each image's relative
    path, stage and ground-truth parameters). The set is built in a temporary sibling folder and
    renamed into place, so ``out`` holds a whole set or nothing. An existing non-empty ``out`` is
    refused unless ``overwrite``. Returns ``out``.
    """
    out = Path(out)
    _check_set_args(n, seed, img_size)
    if out.exists() and not out.is_dir():
        raise CganError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CganError(f"{out} already exists and is not empty; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = stage_counts(n)
    stages = stage_of_index(n, seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for folder in OASIS_FOLDERS:
            (tmp / folder).mkdir()
        workers = default_workers() if workers is None else workers
        jobs = [(tmp, seed, img_size, start, st) for start, st in _chunks(stages, 64)]
        rows: list[dict] = []
        with progress_bar(f"writing {out}") as bar:
            task = bar.add_task("", total=n)
            for chunk_rows in _pool_map(_write_chunk, jobs, workers if n >= POOL_MIN else 1):
                rows.extend(chunk_rows)
                bar.advance(task, len(chunk_rows))
        _write_labels(tmp / LABELS_CSV, rows)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    per_stage = ", ".join(f"{name}: {int(c)}" for name, c in zip(OASIS_FOLDERS, counts))
    log(f"wrote synthetic OASIS-like set to {out} (n={n}, seed={seed}, {img_size} px; {per_stage})")
    return out


LABEL_FIELDS = ["path"] + [f.name for f in fields(SliceParams)]


def _write_labels(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def read_labels(path: Path) -> list[dict]:
    """Rows of a ``labels.csv`` with numbers parsed (ints for stage, n_sulci, shape_seed; floats otherwise)."""
    ints = {"stage", "n_sulci", "shape_seed"}
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            {k: (v if k == "path" else int(v) if k in ints else float(v)) for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


# ---------------------------------------------------------------- markers from images

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
