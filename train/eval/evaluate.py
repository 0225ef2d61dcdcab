"""One cgan-eval run: load the generator and the real images, split them by subject, get the judges
(cached), generate, compute every figure per judge, give the verdict, optionally run the augmentation
experiment, and write report.json, report.md and samples.png."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cgan.runtime import __version__
from cgan.runtime.contract import DISCLAIMER
from cgan.runtime.noise import NOISE_VERSION

from .judges import Judge, JudgeConfig, default_judges
from .metrics import mean_pairwise_distance, pixel_vectors, plain, ratio, PIXEL_DIVERSITY_SIZE
from .sources import EvalError, Source, load_source
from .verdict import DEFAULT_MARGIN, disagreement, passes_bar

Log = Callable[[str], object]

REFERENCE_PER_STAGE = 2000  # train-side images per stage whose features form the reference (seeded sample)
BASELINE_CHUNKS = 4  # held-out chunks of n images per stage feeding the baseline (at most)
MARKER_REAL_PER_STAGE = 1000


@dataclass
class EvalConfig:
    model: str | None = None
    data: Path | None = None
    classes: list[str] | None = None
    cache_dir: Path | None = None
    n: int = 256
    seed: int = 0
    out: Path = Path("model_output") / "eval"
    judges: list[JudgeConfig] | None = None  # None: default_judges()
    retrain: bool = False
    device: str = "auto"
    threads: int | None = 1
    group_regex: str | None = None
    holdout: float = 0.2
    margin: float = DEFAULT_MARGIN
    markers: bool | None = None  # None: on the synthetic set only
    augment: Any = None  # an AugmentConfig to run the augmentation experiment; None: not run

    def validate(self) -> None:
        if self.n < 4:
            raise EvalError(f"--n must be at least 4 (covariances, diversity and 3-NN manifolds need it), got {self.n}")
        if self.seed < 0:
            raise EvalError(f"--seed must be >= 0, got {self.seed}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise EvalError(f"--device {self.device!r} is unknown; choose auto, cpu or cuda")
        if self.threads is not None and self.threads < 1:
            raise EvalError(f"--threads must be >= 1, got {self.threads}")
        if not 0.0 < self.holdout < 0.5:
            raise EvalError(f"--holdout must be between 0 and 0.5, got {self.holdout}")
        if not 0.0 <= self.margin <= 1.0:
            raise EvalError(f"--margin must be within 0..1, got {self.margin}")


@dataclass
class EvalResult:
    report: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    judges: list[Judge] = field(default_factory=list)


def _subset(idx: np.ndarray, k: int, rng: np.random.Generator, *, shuffle: bool = False) -> np.ndarray:
    idx = np.asarray(idx)
    if shuffle:
        return idx[rng.permutation(len(idx))[:k]]
    return idx if len(idx) <= k else np.sort(rng.choice(idx, size=k, replace=False))


def evaluate(config: EvalConfig, *, source: Source | None = None, image_set: Any = None,
             judges: list[Judge] | None = None, log: Log = print) -> EvalResult:
    """Measure a generator and write the report to ``config.out``. ``source``, ``image_set`` and ``judges``
    may be passed in (tests, notebooks); otherwise they come from ``config``."""
    import torch

    config.validate()
    before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _evaluate(config, source=source, image_set=image_set, judges=judges, log=log)
    finally:
        torch.set_num_threads(before)


def _evaluate(config: EvalConfig, *, source: Source | None, image_set: Any, judges: list[Judge] | None,
              log: Log) -> EvalResult:
    from .devices import resolve_device
    from .figures import judge_figures
    from .judges import get_judge
    from .report import write_report
    from .splits import split_image_set

    times: dict[str, float] = {}
    t_all = t = time.perf_counter()
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise EvalError(f"--out {out} exists and is not a folder")
    if source is None:
        source = load_source(config.model, device=config.device, threads=config.threads)
    log(f"model: {source.description}; trained on: {source.training_data}; {source.img_size} px, {source.num_classes} stages")
    if image_set is None:
        from cgan.train.data import load_image_set

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
    labels = np.asarray(image_set.labels, dtype=np.int64)
    split = split_image_set(image_set, group_regex=config.group_regex, holdout=config.holdout, seed=config.seed)
    split_info = split.describe(labels, k)
    if split.kind == "image":
        log(f"note: {split.note}")
    else:
        log(f"split by subject ({split.note}): held-out subjects per stage "
            + ", ".join(f"{a}: {b}" for a, b in zip(names, split_info["subjects_held_out"])))
    times["load"] = time.perf_counter() - t

    t = time.perf_counter()
    device = resolve_device(config.device)
    small_cache: dict[int, np.ndarray] = {}
    if judges is None:
        from cgan.train.data import default_cache_dir

        cache_dir = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
        judges = [get_judge(image_set, split, cfg, cache_dir=cache_dir, device=device, retrain=config.retrain,
                            log=log, small_cache=small_cache)
                  for cfg in (config.judges or default_judges(seed=config.seed))]
    for j in judges:
        if j.num_classes != k:
            raise EvalError(f"judge {j.name} knows {j.num_classes} stages, the data has {k}")
    times["judges"] = time.perf_counter() - t

    t = time.perf_counter()
    rng = np.random.default_rng([config.seed, 0xE7A1])
    ref_idx = [_subset(split.train[labels[split.train] == s], REFERENCE_PER_STAGE, rng, shuffle=True) for s in range(k)]
    held_by_stage = [split.held[labels[split.held] == s] for s in range(k)]
    if any(len(h) < 2 for h in held_by_stage) or any(len(r) < 2 for r in ref_idx):
        raise EvalError("every stage needs at least 2 held-out and 2 train images for the baseline; the data has too few")
    base_idx = [_subset(h, BASELINE_CHUNKS * config.n, rng, shuffle=True) for h in held_by_stage]
    ref_images = [np.asarray(image_set.images[np.sort(i)]) for i in ref_idx]
    base_images = [np.asarray(image_set.images[i]) for i in base_idx]
    log(f"generating {config.n} images per stage (seed {config.seed}) ...")
    gen_images = []
    for s in range(k):
        imgs = source.generate(s, config.n, config.seed)
        if imgs.shape != (config.n, source.img_size, source.img_size) or imgs.dtype != np.uint8:
            raise EvalError(f"the generator returned {imgs.dtype} {imgs.shape}; expected uint8 "
                            f"[{config.n}, {source.img_size}, {source.img_size}]")
        gen_images.append(imgs)
    times["generate"] = time.perf_counter() - t

    t = time.perf_counter()
    per_judge = []
    for j in judges:
        log(f"measuring with judge {j.name} ...")
        per_judge.append(judge_figures(j, gen_images, ref_images, base_images, n=config.n, seed=config.seed))
    pix = PIXEL_DIVERSITY_SIZE if source.img_size % PIXEL_DIVERSITY_SIZE == 0 else source.img_size
    pg = [mean_pairwise_distance(pixel_vectors(gen_images[s], pix)) for s in range(k)]
    pr = [mean_pairwise_distance(pixel_vectors(base_images[s][: config.n], pix)) for s in range(k)]
    pixel = {"generated": pg, "real": pr, "ratio": [ratio(a, b) for a, b in zip(pg, pr)],
             "space": f"pixels area-averaged to {pix} px in [0, 1], RMS difference"}
    markers = None
    if config.markers if config.markers is not None else synthetic:
        markers = _marker_table(gen_images, image_set, labels, k, config.seed)
    times["metrics"] = time.perf_counter() - t

    bar = passes_bar(per_judge, n_per_stage=config.n, pixel_ratio_min=min(pixel["ratio"]))
    disagree = disagreement(per_judge, names, config.margin)
    augment = None
    if config.augment is not None:
        from .augment import run_augment

        t = time.perf_counter()
        augment = run_augment(config.augment, image_set=image_set, split=split, judges=judges, source=source,
                              device=device, log=log, small_cache=small_cache)
        times["augment"] = time.perf_counter() - t

    report = {
        "tool": "cgan-eval", "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "model": {"source": source.description, "kind": source.kind, "img_size": source.img_size,
                  "num_classes": source.num_classes, "stage_names": names, "training_data": source.training_data},
        "data": {"description": str(getattr(image_set, "description", "")), "class_names": list(image_set.class_names),
                 "counts": np.bincount(labels, minlength=k).tolist(), "synthetic": synthetic},
        "split": split_info,
        "settings": {"n_per_stage": config.n, "seed": config.seed, "device": config.device,
                     "threads": config.threads, "margin": config.margin,
                     "noise_version": NOISE_VERSION,
                     "noise": f"image k of stage s uses cgan.runtime.contract.noise(seed, k, 1, z_dim, version={NOISE_VERSION})"},
        "judges": per_judge,
        "pixel_diversity": pixel,
        "markers": markers,
        "passes_bar": bar,
        "disagreement": disagree,
        "augment": augment,
    }
    out.mkdir(parents=True, exist_ok=True)
    times["total"] = time.perf_counter() - t_all
    report["timing_s"] = {key: round(v, 2) for key, v in times.items()}
    figure_real = [b[:8] for b in base_images]
    files = write_report(out, report, gen_images, figure_real)
    return EvalResult(report=plain(report), files=files, judges=list(judges))


def _marker_table(gen_images: list[np.ndarray], image_set: Any, labels: np.ndarray, k: int, seed: int) -> dict[str, Any]:
    from cgan.train.synth import MARKER_NAMES, estimate_markers

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
            row["effect_size"].append(ratio(row["generated_mean"][-1] - row["real_mean"][-1], row["real_std"][-1]))
    table["_note"] = ("cgan.train.synth.estimate_markers on generated and on real images of each stage (up to "
                      f"{MARKER_REAL_PER_STAGE}); effect size = (generated mean - real mean) / real std")
    return table

