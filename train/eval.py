"""``cgan-eval``'s measurements: how stage-faithful, realistic and diverse a generator's images are.

Everything is measured against real images through the reference stage classifier
(:mod:`cgan.train.classifier`), trained on the same data with a stratified held-out split:

- conditional accuracy: the classifier's accuracy on generated images of each intended stage,
  with the confusion matrix (rows: intended stage, columns: predicted); the classifier's own
  held-out accuracy is the ceiling;
- Fréchet distance in the classifier's feature space (its 128-d penultimate layer), per stage,
  against the train split's features; next to it the real-vs-real baseline: held-out images against
  the same train features with the same number of images (``m`` per stage = min(n, held-out images
  of the stage); both sides averaged over disjoint chunks of m), so the estimator's small-sample
  bias is the same on both sides and the ratio means something. The overall ratio is the mean of
  the per-stage ratios (fresh real images score 1.07-1.26 on the default synthetic set); the FD of
  the pooled stage mixture is reported for information only, as it swings too much to judge by.
  For scale, the report scores real held-out images degraded a little (a Gaussian blur of 0.5 and
  1 px, noise of 5 grey levels, 10% more contrast) exactly like a generator: on the default synthetic
  set a 0.5-px blur already scores about 4 and 10% more contrast about 30;
- diversity: the mean pairwise distance within a stage, in feature space (Euclidean) and in pixel
  space (RMS difference of the images area-averaged to 32 px, in [0, 1]), generated against real
  held-out images; a collapsing generator has a ratio far below 1;
- on the synthetic set, the atrophy markers measured from the images
  (:func:`cgan.train.synth.estimate_markers`), generated against real, per stage.

Why not Inception FID: its weights cannot be downloaded here, and an ImageNet network says little
about grayscale brain slices; a classifier trained on the data itself measures what matters here,
that each stage looks like that stage.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cgan.runtime import __version__
from cgan.runtime.contract import DISCLAIMER, noise, to_uint8
from cgan.runtime.noise import NOISE_VERSION
from cgan.runtime.errors import CganError
from cgan.runtime.fileio import atomic_path, atomic_write_text

Log = Callable[[str], object]

# The bar for the embedded default model.
BAR = {
    "real_held_out_accuracy": 0.90,
    "conditional_accuracy_overall": 0.80,
    "conditional_accuracy_min_stage": 0.60,
    "fd_ratio_overall": 3.0,
    "diversity_ratio_min": 0.5,
    "n_per_stage": 256,
}
PIXEL_DIVERSITY_SIZE = 32
REFERENCE_PER_STAGE = 2000  # train images per stage whose features form the reference (seeded sample)
BASELINE_CHUNKS = 4  # held-out chunks of m images per stage averaged into the baseline (at most)
MARKER_REAL_PER_STAGE = 1000
FIGURE_COLUMNS = 8
# Real held-out images, slightly degraded, scored like a generator: what an FD ratio means on this data.
CALIBRATION = (
    ("blur", 0.5, "Gaussian blur, sigma 0.5 px"),
    ("blur", 1.0, "Gaussian blur, sigma 1 px"),
    ("noise", 0.02, "additive Gaussian noise, sigma 0.02 (5 grey levels)"),
    ("contrast", 0.1, "contrast +10% about mid-grey"),
)


class EvalError(CganError):
    """An evaluation that cannot run as asked (model and data that do not fit, bad settings)."""


# ---------------------------------------------------------------- metrics (numpy only)

def moments(features: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of ``features [N, D]``; with ``weights``, of the weighted sample
    (weights need not be normalised; the covariance uses the unbiased weighted estimator)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 feature rows [N, D], got shape {x.shape}")
    if weights is None:
        return x.mean(axis=0), np.cov(x, rowvar=False)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu = w @ x
    d = x - mu
    cov = (d * w[:, None]).T @ d / (1.0 - np.sum(w * w))
    return mu, cov


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) * 0.5)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance of two Gaussians: ``|mu1-mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2))``.

    ``tr((C1 C2)^(1/2))`` is computed as ``tr((S C2 S)^(1/2))`` with ``S = C1^(1/2)``: the same
    eigenvalues, but of a symmetric positive semi-definite matrix, so two symmetric
    eigendecompositions suffice (no general matrix square root, no scipy).
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    c1, c2 = np.atleast_2d(np.asarray(cov1, dtype=np.float64)), np.atleast_2d(np.asarray(cov2, dtype=np.float64))
    s = _sqrt_psd(c1)
    m = s @ c2 @ s
    eig = np.linalg.eigvalsh((m + m.T) * 0.5)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * tr_sqrt), 0.0)


def frechet_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]`` and ``[M, D]``."""
    return frechet_distance(*moments(a), *moments(b))


def mean_pairwise_distance(x: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs i < j of the rows of ``x [N, D]`` (float64)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = len(x)
    if n < 2:
        return float("nan")
    sq = np.einsum("ij,ij->i", x, x)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    iu = np.triu_indices(n, k=1)
    return float(np.sqrt(np.clip(d2[iu], 0.0, None)).mean())


def pixel_vectors(images: np.ndarray, size: int = PIXEL_DIVERSITY_SIZE) -> np.ndarray:
    """uint8 ``[N, H, W]`` -> float64 ``[N, size*size]`` in [0, 1] scaled by ``1/size`` (so Euclidean
    distances are RMS pixel differences), area-averaged to ``size`` px when H is a multiple of it."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    n, h, w = x.shape
    if h != size or w != size:
        if h % size or w % size:
            raise ValueError(f"pixel diversity needs images whose size is a multiple of {size} px, got {h}x{w}")
        x = x.reshape(n, size, h // size, size, w // size).mean(axis=(2, 4))
    return x.reshape(n, -1) / size


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


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    from .classifier import confusion

    return confusion(true, pred, num_classes)


# ---------------------------------------------------------------- generators to evaluate

class Source:
    """A generator under evaluation: ``generate(stage, n, seed)`` -> uint8 ``[n, H, W]``.

    Image k of stage s uses the latent row ``contract.noise(seed, k, 1, z_dim)`` (the runtime's seed
    contract, its default noise version), whatever kind of file the generator came from.
    """

    description: str = ""
    kind: str = ""
    img_size: int = 0
    num_classes: int = 0
    stage_names: tuple[str, ...] = ()
    training_data: str = "not recorded"

    def generate(self, stage: int, n: int, seed: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class OnnxSource(Source):
    """An exported ``.onnx`` model run through the torch-free runtime (``cgan.runtime.load``)."""

    def __init__(self, model: str | Path | None = None, *, provider: str = "auto", threads: int | None = None) -> None:
        from cgan.runtime import load

        self.gen = load(model, provider=provider, threads=threads)
        info = self.gen.info
        if info.channels != 1:
            raise EvalError(f"{self.gen.source} has {info.channels} channels; cgan-eval measures grayscale (1-channel) models")
        self.description = f"{self.gen.source} [ONNX Runtime, {self.gen.provider}]"
        self.kind = "onnx"
        self.img_size, self.num_classes, self.stage_names = info.img_size, info.num_classes, tuple(info.stage_names)
        self.training_data = self.gen.training_data

    def generate(self, stage: int, n: int, seed: int) -> np.ndarray:
        return self.gen.generate(stage, n, seed=seed)


class TorchSource(Source):
    """A torch Generator (from a checkpoint, or in memory), fed the same noise rows as the runtime."""

    def __init__(self, generator: Any, *, description: str = "in-memory Generator", device: str = "cpu",
                 training_data: str = "not recorded", batch_size: int = 128) -> None:
        import torch

        from cgan.runtime.contract import STAGE_NAMES

        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        cfg = generator.config
        if cfg.channels != 1:
            raise EvalError(f"{description} has {cfg.channels} channels; cgan-eval measures grayscale (1-channel) models")
        self.description, self.kind = description, "checkpoint"
        self.img_size, self.num_classes = cfg.img_size, cfg.num_classes
        self.stage_names = tuple(STAGE_NAMES) if cfg.num_classes == len(STAGE_NAMES) else tuple(
            f"stage {i}" for i in range(cfg.num_classes))
        self.training_data = training_data
        self.batch_size = batch_size
        self.z_dim = cfg.z_dim

    def generate(self, stage: int, n: int, seed: int) -> np.ndarray:
        import torch

        out = np.empty((n, self.img_size, self.img_size), dtype=np.uint8)
        with torch.no_grad():
            for k0 in range(0, n, self.batch_size):
                b = min(self.batch_size, n - k0)
                z = torch.from_numpy(noise(seed, k0, b, self.z_dim)).to(self.device)
                labels = torch.full((b,), stage, dtype=torch.long, device=self.device)
                out[k0 : k0 + b] = to_uint8(self.generator(z, labels).float().cpu().numpy())[:, 0]
        return out


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def load_source(model: str | Path | None, *, device: str = "auto", threads: int | None = None) -> Source:
    """The generator to evaluate: an ``.onnx`` path or ``hf:OWNER/REPO[/FILE]`` (runtime), a checkpoint
    (``.pth``/``.pt``, loaded with cgan.export's checkpoint reader), or None: the model cgan-run would
    use (the last export ``model_output/cDCGAN_generator.onnx``, else the embedded default)."""
    if model is None:
        from cgan.runtime.resolve import EMBEDDED_DEFAULT, LAST_EXPORT

        if not (LAST_EXPORT.is_file() or EMBEDDED_DEFAULT.is_file()):
            raise EvalError(f"no MODEL given, no {LAST_EXPORT} here and no embedded default model in this "
                            "installation; give an .onnx file, a .pth/.pt checkpoint or hf:OWNER/REPO, "
                            "or run `cgan-export` first")
    if model is None or str(model).startswith("hf:"):
        return OnnxSource(model, provider=device, threads=threads)
    path = Path(model).expanduser()
    if not path.exists():
        raise EvalError(f"model {path} does not exist; give an .onnx file, a .pth/.pt checkpoint or hf:OWNER/REPO")
    if path.is_dir():
        raise EvalError(f"model {path} is a folder; give an .onnx file or a .pth/.pt checkpoint")
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        try:
            from cgan.export.api import load_generator  # type: ignore[attr-defined]
        except ImportError:
            from cgan.export.checkpoints import load_generator
        from .classifier import resolve_device

        generator, meta = load_generator(path)
        prov = meta.get("provenance", {})
        data = prov.get("training_data") or prov.get("cgan.training_data") or "not recorded"
        dev = resolve_device(device)
        return TorchSource(generator, description=f"{path} [checkpoint, {meta.get('format', '?')}, torch on {dev.type}]",
                           device=str(dev), training_data=data)
    if path.suffix.lower() != ".onnx":
        raise EvalError(f"model {path} has an unknown extension {path.suffix!r}; expected .onnx or a .pth/.pt checkpoint")
    return OnnxSource(path, provider=device, threads=threads)


# ---------------------------------------------------------------- the evaluation

@dataclass
class EvalConfig:
    model: str | None = None
    data: Path | None = None
    classes: list[str] | None = None
    cache_dir: Path | None = None
    n: int = 256
    seed: int = 0
    out: Path = Path("model_output") / "eval"
    classifier: Path | None = None
    retrain_classifier: bool = False
    device: str = "auto"
    threads: int | None = None
    classifier_config: Any = None  # ClassifierConfig; None: the default
    markers: bool | None = None  # None: on the synthetic set only

    def validate(self) -> None:
        if self.n < 2:
            raise EvalError(f"--n must be at least 2 (pairwise diversity and covariances need two images), got {self.n}")
        if self.seed < 0:
            raise EvalError(f"--seed must be >= 0, got {self.seed}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise EvalError(f"--device {self.device!r} is unknown; choose auto, cpu or cuda")
        if self.threads is not None and self.threads < 1:
            raise EvalError(f"--threads must be >= 1, got {self.threads}")


@dataclass
class EvalResult:
    report: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def passes_bar(self) -> dict[str, Any]:
        return self.report["passes_bar"]


def _subset(idx: np.ndarray, k: int, rng: np.random.Generator, *, shuffle: bool = False) -> np.ndarray:
    """``k`` of ``idx`` chosen by ``rng`` (all of them when there are no more than ``k``); sorted, or in
    random order with ``shuffle`` (so that any prefix is a random sample, even of files listed by subject)."""
    idx = np.asarray(idx)
    if shuffle:
        return idx[rng.permutation(len(idx))[:k]]
    if len(idx) <= k:
        return idx
    return np.sort(rng.choice(idx, size=k, replace=False))


def _stage_balanced_weights(groups: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.full(len(g), 1.0 / len(g)) for g in groups])


def _chunks(x: np.ndarray, m: int) -> list[np.ndarray]:
    return [x[j * m : (j + 1) * m] for j in range(len(x) // m)]


def matched_frechet(gen: Sequence[np.ndarray], held: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> dict[str, Any]:
    """Fréchet distances of generated and of held-out features against the train reference, per stage,
    at matched sample sizes. Lists are per stage, features ``[N, D]``.

    Per stage s, with ``m = min(len(gen[s]), len(held[s]))``: the generated FD is the mean over the
    disjoint chunks of m generated features, the baseline the mean over the disjoint chunks of m
    held-out features; both against the same reference Gaussian. The estimator's bias depends on m
    (it grows as m shrinks), so equal m makes the two comparable, and averaging chunks steadies both.

    ``overall`` (what the bar uses) is the mean over stages of the per-stage ratios. ``pooled`` is the
    FD of equal-weight stage mixtures (first chunk of each stage on each side); it is reported for
    information only: with few images in a rare stage it swings by a factor 2-3 between samples of
    real images, too much to judge by.
    """
    k = len(ref)
    m = [min(len(g), len(h)) for g, h in zip(gen, held)]
    ref_m = [moments(r) for r in ref]
    per_stage = []
    for s in range(k):
        g = float(np.mean([frechet_distance(*moments(c), *ref_m[s]) for c in _chunks(gen[s], m[s])]))
        b = float(np.mean([frechet_distance(*moments(c), *ref_m[s]) for c in _chunks(held[s], m[s])]))
        per_stage.append({"generated": g, "baseline": b, "ratio": _ratio(g, b), "m": m[s],
                          "chunks_generated": len(gen[s]) // m[s], "chunks_baseline": len(held[s]) // m[s]})
    ratios = [p["ratio"] for p in per_stage]
    overall = {"ratio": float(np.mean(ratios)), "worst_stage_ratio": float(np.max(ratios)),
               "generated": float(np.mean([p["generated"] for p in per_stage])),
               "baseline": float(np.mean([p["baseline"] for p in per_stage])),
               "what": "mean over stages of the per-stage ratio (generated and baseline: mean per-stage FD)"}
    ref_all = moments(np.concatenate(ref), _stage_balanced_weights(ref))
    gen_parts = [g[: m[s]] for s, g in enumerate(gen)]
    held_parts = [h[: m[s]] for s, h in enumerate(held)]
    pg = frechet_distance(*moments(np.concatenate(gen_parts), _stage_balanced_weights(gen_parts)), *ref_all)
    pb = frechet_distance(*moments(np.concatenate(held_parts), _stage_balanced_weights(held_parts)), *ref_all)
    pooled = {"generated": pg, "baseline": pb, "ratio": _ratio(pg, pb), "m": m,
              "what": "equal-weight stage mixtures, one chunk of m per stage; noisy, for information"}
    return {"overall": overall, "pooled": pooled, "per_stage": per_stage}


def _ratio(a: float, b: float) -> float:
    if b > 0:
        return float(a / b)
    return 0.0 if a == 0 else float("inf")


def evaluate(config: EvalConfig, *, source: Source | None = None, image_set: Any = None, classifier: Any = None,
             log: Log = print) -> EvalResult:
    """Measure a generator (see the module doc) and write report.json, report.md and samples.png to ``config.out``.

    ``source``, ``image_set`` and ``classifier`` may be passed in (tests, notebooks); otherwise they
    come from ``config``: the model resolution of cgan-run, ``load_image_set`` and the cached classifier.
    """
    import torch

    config.validate()
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _evaluate(config, source=source, image_set=image_set, classifier=classifier, log=log)
    finally:
        torch.set_num_threads(threads_before)


def _evaluate(config: EvalConfig, *, source: Source | None, image_set: Any, classifier: Any, log: Log) -> EvalResult:
    from .classifier import ClassifierConfig, _plain, accuracy_summary, confusion, dataset_key, get_classifier

    times: dict[str, float] = {}
    t_all = t = time.perf_counter()
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise EvalError(f"--out {out} exists and is not a folder")

    if source is None:
        source = load_source(config.model, device=config.device, threads=config.threads)
    log(f"model: {source.description}; trained on: {source.training_data}; {source.img_size} px, {source.num_classes} stages")
    if image_set is None:
        from .data import load_image_set

        image_set = load_image_set(config.data, img_size=source.img_size, classes=config.classes,
                                   cache_dir=config.cache_dir, log=log)
    names = list(source.stage_names)
    k = len(image_set.class_names)
    if k != source.num_classes:
        raise EvalError(f"the model has {source.num_classes} stages but the data has {k} classes "
                        f"({', '.join(image_set.class_names)}); give data with the model's stages")
    if image_set.images.shape[-1] != source.img_size:
        raise EvalError(f"the data is {image_set.images.shape[-1]} px but the model makes {source.img_size} px images")
    synthetic = config.data is None and str(getattr(image_set, "description", "")).startswith("synthetic")
    times["load"] = time.perf_counter() - t

    t = time.perf_counter()
    if classifier is None:
        classifier = get_classifier(image_set, config.classifier_config or ClassifierConfig(), path=config.classifier,
                                    cache_dir=config.cache_dir, device=config.device,
                                    retrain=config.retrain_classifier, log=log)
    if classifier.num_classes != k:
        raise EvalError(f"the classifier knows {classifier.num_classes} stages, the data has {k}")
    times["classifier"] = time.perf_counter() - t

    # ---- real features: the train reference and the held-out baseline
    t = time.perf_counter()
    labels = np.asarray(image_set.labels, dtype=np.int64)
    train_idx, held_idx = classifier.split(labels)
    clean = classifier.dataset.get("key") == dataset_key(image_set)
    rng = np.random.default_rng([config.seed, 0xE7A1])
    ref_idx = [_subset(train_idx[labels[train_idx] == s], REFERENCE_PER_STAGE, rng) for s in range(k)]
    held_by_stage = [held_idx[labels[held_idx] == s] for s in range(k)]
    if any(len(h) < 2 for h in held_by_stage) or any(len(r) < 2 for r in ref_idx):
        raise EvalError("every stage needs at least 2 held-out and 2 train images for the baseline; the data has too few")
    # held-out images in random order, up to BASELINE_CHUNKS * n per stage: the first n are the real
    # side of the diversity and the figure, all of them feed the baseline's chunks
    base_idx = [_subset(h, BASELINE_CHUNKS * config.n, rng, shuffle=True) for h in held_by_stage]
    ref_feats = [classifier.embed(image_set.images[i])[1] for i in ref_idx]
    base_logits_feats = [classifier.embed(image_set.images[i]) for i in base_idx]
    base_feats = [f for _, f in base_logits_feats]
    if clean and "held_out" in classifier.metrics:
        ceiling = dict(classifier.metrics["held_out"])
    else:
        log("warning: the classifier was not trained on this data's split; its 'held-out' images may include "
            "images it was trained on, so the ceiling and the baseline are optimistic")
        pred = np.concatenate([lg.argmax(axis=1) for lg, _ in base_logits_feats])
        ceiling = accuracy_summary(confusion(labels[np.concatenate(base_idx)], pred, k))
    times["real_features"] = time.perf_counter() - t

    # ---- generate and classify
    t = time.perf_counter()
    gen_images, gen_logits, gen_feats = [], [], []
    log(f"generating {config.n} images per stage (seed {config.seed}) ...")
    for s in range(k):
        imgs = source.generate(s, config.n, config.seed)
        if imgs.shape != (config.n, source.img_size, source.img_size) or imgs.dtype != np.uint8:
            raise EvalError(f"the generator returned {imgs.dtype} {imgs.shape}; expected uint8 "
                            f"[{config.n}, {source.img_size}, {source.img_size}]")
        gen_images.append(imgs)
    times["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    for imgs in gen_images:
        lg, ft = classifier.embed(imgs)
        gen_logits.append(lg)
        gen_feats.append(ft)
    intended = np.repeat(np.arange(k), config.n)
    pred = np.concatenate([lg.argmax(axis=1) for lg in gen_logits])
    cond = accuracy_summary(confusion(intended, pred, k))

    # ---- Fréchet distance and diversity
    fd = matched_frechet(gen_feats, base_feats, ref_feats)
    diversity: dict[str, Any] = {"feature": {}, "pixel": {}}
    pix = PIXEL_DIVERSITY_SIZE if source.img_size % PIXEL_DIVERSITY_SIZE == 0 else source.img_size
    for space, fn_gen, fn_real in (
        ("feature", lambda s: gen_feats[s], lambda s: base_feats[s][: config.n]),
        ("pixel", lambda s: pixel_vectors(gen_images[s], pix),
         lambda s: pixel_vectors(np.asarray(image_set.images[np.sort(base_idx[s][: config.n])]), pix)),
    ):
        g = [mean_pairwise_distance(fn_gen(s)) for s in range(k)]
        r = [mean_pairwise_distance(fn_real(s)) for s in range(k)]
        diversity[space] = {"generated": g, "real": r, "ratio": [_ratio(a, b) for a, b in zip(g, r)]}
    diversity["feature"]["space"] = f"classifier features ({classifier.config.feature_dim}-d), Euclidean"
    diversity["pixel"]["space"] = f"pixels area-averaged to {pix} px in [0, 1], RMS difference"
    times["metrics"] = time.perf_counter() - t

    # ---- calibration: the same held-out images as the diversity's real side, degraded a little
    t = time.perf_counter()
    calib_real = [np.asarray(image_set.images[np.sort(base_idx[s][: config.n])]) for s in range(k)]
    calibration = []
    for kind, amount, what in CALIBRATION:
        feats = [classifier.embed(perturb(calib_real[s], kind, amount, seed=config.seed + s))[1] for s in range(k)]
        cfd = matched_frechet(feats, base_feats, ref_feats)
        calibration.append({"perturbation": what, "kind": kind, "amount": amount,
                            "ratio": cfd["overall"]["ratio"], "per_stage": [p["ratio"] for p in cfd["per_stage"]]})
    times["calibration"] = time.perf_counter() - t

    # ---- atrophy markers (synthetic set)
    t = time.perf_counter()
    markers = None
    if config.markers if config.markers is not None else synthetic:
        markers = _marker_table(gen_images, image_set, labels, k, config.seed)
    times["markers"] = time.perf_counter() - t

    report = {
        "tool": "cgan-eval",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "model": {"source": source.description, "kind": source.kind, "img_size": source.img_size,
                  "num_classes": source.num_classes, "stage_names": names, "training_data": source.training_data},
        "data": {"description": str(getattr(image_set, "description", "")), "class_names": list(image_set.class_names),
                 "counts": np.bincount(labels, minlength=k).tolist(), "synthetic": synthetic},
        "settings": {"n_per_stage": config.n, "seed": config.seed, "device": config.device,
                     "noise_version": NOISE_VERSION,
                     "noise": f"image k of stage s uses cgan.runtime.contract.noise(seed, k, 1, z_dim, version={NOISE_VERSION})"},
        "classifier": {
            "path": str(classifier.path) if classifier.path else None,
            "config": classifier.config.to_dict(),
            "trained_on": classifier.dataset,
            "clean_held_out": bool(clean),
            "held_out": ceiling,
            "n_train": classifier.metrics.get("n_train"),
            "n_held_out": classifier.metrics.get("n_held_out"),
            "train_seconds": classifier.metrics.get("train_seconds"),
        },
        "conditional_accuracy": {"overall": cond["accuracy"], "per_stage": cond["per_class"],
                                 "confusion": cond["confusion"],
                                 "confusion_axes": "rows: intended stage, columns: predicted stage"},
        "frechet": {"space": f"classifier penultimate features ({classifier.config.feature_dim}-d)",
                    "reference": f"train split, up to {REFERENCE_PER_STAGE} per stage; overall: equal-weight stage mixture",
                    "baseline": "held-out real images vs the same reference, same m per stage, mean over up to "
                                f"{BASELINE_CHUNKS} disjoint chunks",
                    **fd,
                    "calibration": {"what": "real held-out images (the diversity's real side), degraded, scored "
                                            "like a generator against the same reference and baseline",
                                    "rows": calibration}},
        "diversity": diversity,
        "markers": markers,
    }
    report["passes_bar"] = passes_bar(report)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "report.json", "markdown": out / "report.md", "figure": out / "samples.png"}
    report["files"] = {key: str(p) for key, p in files.items()}
    times["total"] = time.perf_counter() - t_all
    report["timing_s"] = {key: round(v, 2) for key, v in times.items()}
    write_figure(files["figure"], gen_images, [np.asarray(image_set.images[np.sort(i[:FIGURE_COLUMNS])]) for i in base_idx], names)
    atomic_write_text(files["markdown"], markdown(report))
    atomic_write_text(files["json"], json.dumps(_plain(report, json_safe=True), indent=1, allow_nan=True) + "\n")
    return EvalResult(report=report, files=files)


def _marker_table(gen_images: list[np.ndarray], image_set: Any, labels: np.ndarray, k: int, seed: int) -> dict[str, Any]:
    from .synth import MARKER_NAMES, estimate_markers

    rng = np.random.default_rng([seed, 0x3A7])
    table: dict[str, Any] = {name: {"generated_mean": [], "generated_std": [], "real_mean": [], "real_std": [],
                                    "effect_size": []} for name in MARKER_NAMES}
    for s in range(k):
        real_idx = _subset(np.flatnonzero(labels == s), MARKER_REAL_PER_STAGE, rng)
        g = estimate_markers(gen_images[s])
        r = estimate_markers(np.asarray(image_set.images[real_idx]))
        for name in MARKER_NAMES:
            row = table[name]
            row["generated_mean"].append(float(np.mean(g[name])))
            row["generated_std"].append(float(np.std(g[name])))
            row["real_mean"].append(float(np.mean(r[name])))
            row["real_std"].append(float(np.std(r[name])))
            row["effect_size"].append(_ratio(row["generated_mean"][-1] - row["real_mean"][-1], row["real_std"][-1]))
    table["_note"] = ("cgan.train.synth.estimate_markers on generated and on real images of each stage (up to "
                      f"{MARKER_REAL_PER_STAGE}); effect size = (generated mean - real mean) / real std")
    return table


def passes_bar(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's bar, each criterion with its value, threshold and whether it is met."""
    ceiling = report["classifier"]["held_out"]["balanced_accuracy"]
    cond = report["conditional_accuracy"]
    div = report["diversity"]
    div_min = min(min(div["feature"]["ratio"]), min(div["pixel"]["ratio"]))
    rows = [
        ("real_held_out_accuracy", "reference classifier's held-out balanced accuracy (mean per-stage recall)",
         ceiling, ">=", BAR["real_held_out_accuracy"]),
        ("conditional_accuracy_overall", "classifier accuracy on generated images, all stages",
         cond["overall"], ">=", BAR["conditional_accuracy_overall"]),
        ("conditional_accuracy_min_stage", "lowest per-stage conditional accuracy",
         min(cond["per_stage"]), ">=", BAR["conditional_accuracy_min_stage"]),
        ("fd_ratio_overall", "Fréchet distance / real-vs-real baseline, mean of the per-stage ratios",
         report["frechet"]["overall"]["ratio"], "<=", BAR["fd_ratio_overall"]),
        ("diversity_ratio_min", "lowest generated/real diversity ratio over stages, feature and pixel space",
         div_min, ">=", BAR["diversity_ratio_min"]),
        ("n_per_stage", "generated images per stage", report["settings"]["n_per_stage"], ">=", BAR["n_per_stage"]),
    ]
    criteria = []
    for name, what, value, op, threshold in rows:
        met = bool(value >= threshold) if op == ">=" else bool(value <= threshold)
        criteria.append({"name": name, "what": what, "value": float(value), "op": op, "threshold": threshold, "met": met})
    return {"criteria": criteria, "all_met": all(c["met"] for c in criteria)}


# ---------------------------------------------------------------- the summary, as markdown

def summary_table(report: dict[str, Any]) -> str:
    """The per-stage table (markdown) that cgan-eval prints at the end."""
    names = report["model"]["stage_names"]
    cond = report["conditional_accuracy"]
    fd = report["frechet"]
    div = report["diversity"]
    ceiling = report["classifier"]["held_out"]
    lines = [
        "| stage | cond. acc. | real held-out acc. | FD gen | FD real (baseline) | FD ratio | m | div. feat gen/real | div. pixel gen/real |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s, name in enumerate(names):
        f = fd["per_stage"][s]
        lines.append(
            f"| {s} {name} | {cond['per_stage'][s]:.3f} | {ceiling['per_class'][s]:.3f} | {f['generated']:.3f} | "
            f"{f['baseline']:.3f} | {f['ratio']:.2f} | {f['m']} | "
            f"{div['feature']['generated'][s]:.3f}/{div['feature']['real'][s]:.3f} ({div['feature']['ratio'][s]:.2f}) | "
            f"{div['pixel']['generated'][s]:.4f}/{div['pixel']['real'][s]:.4f} ({div['pixel']['ratio'][s]:.2f}) |"
        )
    o, p = fd["overall"], fd["pooled"]
    lines.append(
        f"| all (mean of stages) | {cond['overall']:.3f} | {ceiling['balanced_accuracy']:.3f} (bal.) | {o['generated']:.3f} | "
        f"{o['baseline']:.3f} | {o['ratio']:.2f} | | | |"
    )
    lines.append(
        f"| pooled mixture (info) | | | {p['generated']:.3f} | {p['baseline']:.3f} | {p['ratio']:.2f} | {sum(p['m'])} | | |"
    )
    return "\n".join(lines)


def bar_lines(report: dict[str, Any]) -> list[str]:
    out = []
    for c in report["passes_bar"]["criteria"]:
        mark = "met" if c["met"] else "NOT met"
        value = f"{c['value']:.0f}" if c["name"] == "n_per_stage" else f"{c['value']:.3f}"
        out.append(f"- [{'x' if c['met'] else ' '}] {c['name']}: {value} {c['op']} {c['threshold']} ({mark}) — {c['what']}")
    return out


def calibration_line(report: dict[str, Any]) -> str:
    """One line: the FD ratios of slightly degraded real images, for scale."""
    rows = report["frechet"].get("calibration", {}).get("rows", [])
    return ("for scale, real held-out images scored like a generator: "
            + "; ".join(f"{r['perturbation']}: {r['ratio']:.2f}" for r in rows)) if rows else ""


def markdown(report: dict[str, Any]) -> str:
    names = report["model"]["stage_names"]
    k = len(names)
    clf = report["classifier"]
    cond = report["conditional_accuracy"]
    bar = report["passes_bar"]
    parts = [
        "# cgan-eval report",
        "",
        f"_{report['disclaimer']}_",
        "",
        f"- model: {report['model']['source']} (trained on: {report['model']['training_data']})",
        f"- data: {report['data']['description']}",
        f"- generated: {report['settings']['n_per_stage']} images per stage, seed {report['settings']['seed']}",
        f"- reference classifier: held-out accuracy {clf['held_out']['accuracy']:.4f}, balanced "
        f"{clf['held_out']['balanced_accuracy']:.4f} ({clf['n_train']} train / {clf['n_held_out']} held-out images"
        + ("" if clf["clean_held_out"] else "; NOT a clean held-out split for this data") + ")",
        f"- created {report['created']} by cgan-eval {report['version']} in {report['timing_s']['total']:.0f} s",
        "",
        "## Per stage",
        "",
        summary_table(report),
        "",
        "Conditional accuracy: the reference classifier's accuracy on generated images of the intended stage "
        "(real held-out accuracy beside it is the ceiling). FD: Fréchet distance in the classifier's feature space "
        "against the train split; the baseline is real held-out images against the same reference with the same "
        "number of images m (both averaged over disjoint chunks of m); a ratio near 1 means generated images are as "
        "close to the real ones as unseen real images are. The bar uses the mean of the per-stage ratios; the pooled "
        "mixture row (all stages at once) swings by a factor 2-3 between samples of real images and is shown for "
        "information. Rare stages have a small m, hence a large baseline, and are judged less sharply. Diversity: mean pairwise distance within the stage, generated/real (ratio).",
        "",
        "## Passes the bar",
        "",
        f"**{'all criteria met' if bar['all_met'] else 'not all criteria met'}**",
        "",
        *bar_lines(report),
        "",
        "## Confusion matrix (generated images)",
        "",
        "rows: intended stage, columns: predicted stage",
        "",
        "| intended \\ predicted | " + " | ".join(f"{s} {n}" for s, n in enumerate(names)) + " |",
        "| --- |" + " ---: |" * k,
    ]
    for s, row in enumerate(cond["confusion"]):
        parts.append(f"| {s} {names[s]} | " + " | ".join(str(v) for v in row) + " |")
    calib = report["frechet"].get("calibration")
    if calib and calib["rows"]:
        parts += ["", "## What an FD ratio means on this data", "",
                  "Real held-out images, degraded a little, scored exactly like a generator (same reference, "
                  "baseline and m). A generator below a row is closer to the real images, in the classifier's eyes, "
                  "than real images given that degradation.", "",
                  "| real images with | FD ratio (mean of stages) | " + " | ".join(f"{s} {n}" for s, n in enumerate(names)) + " |",
                  "| --- | ---: |" + " ---: |" * k,
                  f"| (this model) | {report['frechet']['overall']['ratio']:.2f} | "
                  + " | ".join(f"{p['ratio']:.2f}" for p in report["frechet"]["per_stage"]) + " |"]
        for row in calib["rows"]:
            parts.append(f"| {row['perturbation']} | {row['ratio']:.2f} | " + " | ".join(f"{v:.2f}" for v in row["per_stage"]) + " |")
    markers = report.get("markers")
    if markers:
        parts += ["", "## Atrophy markers (synthetic set)", "", markers["_note"], "",
                  "| marker | " + " | ".join(f"{s} {n}: generated / real" for s, n in enumerate(names)) + " |",
                  "| --- |" + " --- |" * k]
        for name, row in markers.items():
            if name.startswith("_"):
                continue
            cells = [f"{row['generated_mean'][s]:.4f} ± {row['generated_std'][s]:.4f} / "
                     f"{row['real_mean'][s]:.4f} ± {row['real_std'][s]:.4f} (d={row['effect_size'][s]:+.2f})"
                     for s in range(k)]
            parts.append(f"| {name} | " + " | ".join(cells) + " |")
    parts += ["", f"![generated and real samples per stage]({Path(report['files']['figure']).name})", ""]
    return "\n".join(parts)


# ---------------------------------------------------------------- the figure

def write_figure(path: Path, generated: Sequence[np.ndarray], real: Sequence[np.ndarray], names: Sequence[str],
                 columns: int = FIGURE_COLUMNS) -> Path:
    """A PNG with one row per stage: ``columns`` generated images, a gap, then ``columns`` real ones, labelled."""
    from PIL import Image, ImageDraw

    size = max(int(generated[0].shape[-1]), 64)
    label_w, head_h, gap, pad = 150, 22, 16, 2
    cell = size + pad
    width = label_w + 2 * columns * cell + gap
    height = head_h + len(names) * cell
    canvas = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(canvas)
    draw.text((label_w, 5), "generated", fill=0)
    draw.text((label_w + columns * cell + gap, 5), "real (held-out)", fill=0)
    for s, name in enumerate(names):
        y = head_h + s * cell
        draw.text((4, y + size // 2 - 6), f"{s}: {name}"[:24], fill=0)
        for row, x0 in ((generated[s], label_w), (real[s], label_w + columns * cell + gap)):
            for j, img in enumerate(np.asarray(row)[:columns]):
                tile = Image.fromarray(np.ascontiguousarray(img), mode="L")
                if tile.size[0] != size:
                    tile = tile.resize((size, size), Image.Resampling.NEAREST)
                canvas.paste(tile, (x0 + j * cell, y))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
