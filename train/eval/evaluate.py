"""One cgan-eval run: check the output folder, load the generator and the real images (on the built-in
synthetic set: the judges' own set, :mod:`.judge_set`), split them by subject, get the judges (cached),
generate, compute every figure per judge with its interval, the severity check and the artefact rate,
give the verdict, optionally run the learning curve, and write the report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cgan.runtime.contract import EVAL_DIR

from .judges import Judge, JudgeConfig, default_judges
from .sources import EvalError, Source, load_source
from .verdict import DEFAULT_MARGIN

Log = Callable[[str], object]

REFERENCE_PER_STAGE = 2000  # train-side images per stage whose features form the reference (seeded sample)
BASELINE_CHUNKS = 4  # held-out chunks of n images per stage feeding the baseline (at most)
MIN_N = 8  # generated images per stage: KID needs 4 per side, 3-NN precision/recall more than 3
MIN_REAL = 8  # real held-out and train images per stage, for the same reasons
QUICK_N = 64
QUICK_EPOCHS = 3


@dataclass
class EvalConfig:
    model: str | None = None
    data: Path | None = None
    classes: list[str] | None = None
    cache_dir: Path | None = None
    n: int = 256
    seed: int = 0
    out: Path = EVAL_DIR
    judges: list[JudgeConfig] | None = None  # None: default_judges()
    retrain: bool = False
    device: str = "auto"
    threads: int | None = 1
    group_regex: str | None = None
    holdout: float = 0.2
    margin: float = DEFAULT_MARGIN
    markers: bool | None = None  # None: on the synthetic set only
    augment: Any = None  # a CurveConfig to run the learning curve; None: not run
    overwrite: bool = False  # write into an --out that already holds a report
    quick: bool = False  # a smoke check: small judge set, few judge epochs, never a verdict
    artefacts: bool = True
    balance_study: Any = None  # a StudyConfig: run the balance study instead of the evaluation

    def validate(self) -> None:
        if self.n < MIN_N:
            raise EvalError(f"--n must be at least {MIN_N} generated images per stage (KID needs 4 per side and "
                            f"3-NN precision/recall more than 3), got {self.n}")
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
        if self.group_regex is not None:
            from .splits import compile_group_regex

            compile_group_regex(self.group_regex)  # a bad pattern is refused whether or not it will be used
            if self.data is None:
                raise EvalError("--group-regex names the subjects of --data's files; without --data the built-in judge set "
                                "is split by its own subjects: give --data, or drop --group-regex")


@dataclass
class EvalResult:
    report: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    judges: list[Judge] = field(default_factory=list)


@dataclass
class Real:
    """The real side of a run: the images, their split, and what the report says about them."""

    image_set: Any
    split: Any
    labels: np.ndarray
    names: list[str]
    synthetic: bool
    judge_set: bool


REPORT_PROBE_BYTES = 1 << 20  # written and removed by the --out check: a full disk is refused before the evaluation, not after it


def check_out(out: Path, *, overwrite: bool) -> None:
    """Refuse, before any work, an ``--out`` that is a file, holds a report already (without ``overwrite``)
    or cannot be written."""
    import os
    import tempfile

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EvalError(f"--out {out} exists and is not a folder; choose a folder")
    if (out / "report.json").exists() and not overwrite:
        raise EvalError(f"--out {out} already holds a report (report.json); pass --overwrite to replace it or choose another --out")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise EvalError(f"--out {out}: {probe} is not a folder; choose a writable folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cgan-eval-probe.", dir=probe)
        try:  # bytes, not an empty file: an empty file is made on a full disk too (a short write is not an error)
            left = REPORT_PROBE_BYTES
            while left:
                left -= os.write(fd, bytes(min(left, 1 << 16)))
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise EvalError(f"--out {out} is not writable ({probe}: {exc.strerror or exc}); choose a writable folder") from None


def check_cache(cache_dir: Path) -> None:
    """The cache folder (the judge set, decoded images, trained judges) can be made and written, checked before
    any work: a read-only HOME under the default cache is one line naming the way out, not a traceback."""
    import os
    import tempfile

    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".cgan-eval-probe.", dir=cache_dir)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise EvalError(f"cannot write the cache {cache_dir} ({exc.strerror or exc}); "
                        "set --cache-dir or $CGAN_CACHE to a writable folder") from None


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
    check_out(Path(config.out), overwrite=config.overwrite)
    check_cache(_cache_dir(config))
    before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _evaluate(config, source=source, image_set=image_set, judges=judges, log=log)
    finally:
        torch.set_num_threads(before)


def _cache_dir(config: EvalConfig) -> Path:
    from cgan.train.data import default_cache_dir

    return Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()


def load_real(config: EvalConfig, source: Source, image_set: Any, log: Log, *, check: Callable[[Real], None] | None = None) -> Real:
    """The real images and their subject split: the given set, the user's --data, or (no --data) the
    judge set, rendered with its own seed, balanced, sharing no subject with the generator's set.
    ``check`` refuses data too small for what runs next (default: :func:`check_real_sizes`)."""
    from .splits import split_image_set

    judge_set = False
    if image_set is None and config.data is None:
        from .judge_set import HOLDOUT, QUICK_SUBJECTS_PER_STAGE, JudgeSetSpec, load_judge_set

        spec = JudgeSetSpec(img_size=source.img_size)
        if config.quick:
            spec.subjects_per_stage = QUICK_SUBJECTS_PER_STAGE
        image_set = load_judge_set(spec, cache_dir=_cache_dir(config), log=log)
        split = split_image_set(image_set, holdout=HOLDOUT, seed=config.seed)
        judge_set = True
    else:
        if image_set is None:
            from cgan.train.data import load_image_set

            image_set = load_image_set(config.data, img_size=source.img_size, classes=config.classes,
                                       cache_dir=config.cache_dir, log=log)
        split = None
    names = list(source.stage_names)
    k = len(image_set.class_names)
    if k != source.num_classes:
        raise EvalError(f"the model has {source.num_classes} stages but the data has {k} classes "
                        f"({', '.join(image_set.class_names)}); give data with the model's stages")
    if image_set.images.shape[-1] != source.img_size:
        raise EvalError(f"the data is {image_set.images.shape[-1]} px but the model makes {source.img_size} px images")
    if split is None:
        split = split_image_set(image_set, group_regex=config.group_regex, holdout=config.holdout, seed=config.seed)
    labels = np.asarray(image_set.labels, dtype=np.int64)
    synthetic = judge_set or (config.data is None and str(getattr(image_set, "description", "")).startswith("synthetic"))
    real = Real(image_set=image_set, split=split, labels=labels, names=names, synthetic=synthetic, judge_set=judge_set)
    (check or check_real_sizes)(real)
    info = split.describe(labels, k)
    if split.kind == "image":
        log(f"note: {split.note}")
    else:
        log(f"split by subject ({split.note}): held-out subjects per stage "
            + ", ".join(f"{a}: {b}" for a, b in zip(names, info["subjects_held_out"])))
    return real


def check_real_sizes(real: Real) -> None:
    """Refuse, before any judge trains, real data with too few held-out or train images of a stage."""
    for side, idx in (("held-out", real.split.held), ("train", real.split.train)):
        counts = np.bincount(real.labels[idx], minlength=len(real.names))
        short = [f"{real.names[s]} ({int(c)})" for s, c in enumerate(counts) if c < MIN_REAL]
        if short:
            raise EvalError(f"too few real images for KID and precision/recall: the {side} side of the "
                            f"{real.split.kind}-level split has fewer than {MIN_REAL} images of {', '.join(short)}; "
                            "give more images (or subjects) per stage")


def get_judges(config: EvalConfig, real: Real, judges: list[Judge] | None, device: Any, log: Log,
               small_cache: dict[int, np.ndarray]) -> list[Judge]:
    from .judges import get_judge

    if judges is None:
        configs = config.judges or default_judges(seed=config.seed)
        judges = [get_judge(real.image_set, real.split, cfg, cache_dir=_cache_dir(config), device=device,
                            retrain=config.retrain, log=log, small_cache=small_cache) for cfg in configs]
    for j in judges:
        if j.num_classes != len(real.names):
            raise EvalError(f"judge {j.name} knows {j.num_classes} stages, the data has {len(real.names)}")
    return judges


@dataclass
class Samples:
    gen: list[np.ndarray]
    ref: list[np.ndarray]
    ref_groups: list[Any]
    base: list[np.ndarray]
    held: tuple[np.ndarray, np.ndarray, Any]


def draw_samples(config: EvalConfig, real: Real, source: Source, log: Log) -> Samples:
    """Reference (train side) and baseline (held-out) real images per stage, and the generated ones."""
    k, split, labels = len(real.names), real.split, real.labels
    rng = np.random.default_rng([config.seed, 0xE7A1])
    ref_idx = [np.sort(_subset(split.train[labels[split.train] == s], REFERENCE_PER_STAGE, rng, shuffle=True))
               for s in range(k)]
    held_by_stage = [split.held[labels[split.held] == s] for s in range(k)]
    base_idx = [_subset(h, BASELINE_CHUNKS * config.n, rng, shuffle=True) for h in held_by_stage]
    images = real.image_set.images
    groups = split.groups
    log(f"generating {config.n} images per stage (seed {config.seed}) ...")
    gen = []
    for s in range(k):
        imgs = source.generate(s, config.n, config.seed)
        if imgs.shape != (config.n, source.img_size, source.img_size) or imgs.dtype != np.uint8:
            raise EvalError(f"the generator returned {imgs.dtype} {imgs.shape}; expected uint8 "
                            f"[{config.n}, {source.img_size}, {source.img_size}]")
        gen.append(imgs)
        log(f"  generated stage {s} ({real.names[s]}): {config.n} images")
    held = np.sort(split.held)
    return Samples(gen=gen, ref=[np.asarray(images[i]) for i in ref_idx],
                   ref_groups=[None if groups is None else np.asarray(groups)[i] for i in ref_idx],
                   base=[np.asarray(images[i]) for i in base_idx],
                   held=(np.asarray(images[held]), labels[held], None if groups is None else np.asarray(groups)[held]))


def _evaluate(config: EvalConfig, *, source: Source | None, image_set: Any, judges: list[Judge] | None,
              log: Log) -> EvalResult:
    from .devices import resolve_device
    from .measure import measure
    from .report import write_report
    from .report_build import build_report

    times: dict[str, float] = {}
    t_all = t = time.perf_counter()
    if source is None:
        source = load_source(config.model, device=config.device, threads=config.threads)
    log(f"model: {source.description}; trained on: {source.training_data}; {source.img_size} px, {source.num_classes} stages")
    if config.balance_study is not None:
        return _balance_study(config, source, image_set, log, times, t_all)
    if config.quick:
        log("--quick: a smoke check (small judge set, judges trained briefly, few images); it never gives a verdict")
    real = load_real(config, source, image_set, log)
    times["load"] = time.perf_counter() - t

    t = time.perf_counter()
    device = resolve_device(config.device)
    small_cache: dict[int, np.ndarray] = {}
    judges = get_judges(config, real, judges, device, log, small_cache)
    times["judges"] = time.perf_counter() - t

    t = time.perf_counter()
    samples = draw_samples(config, real, source, log)
    times["generate"] = time.perf_counter() - t

    measured = measure(config, real, samples, judges, source, log, times)

    augment = None
    if config.augment is not None:
        from .augment import run_curve

        t = time.perf_counter()
        augment = run_curve(config.augment, image_set=real.image_set, split=real.split, judges=judges, source=source,
                            device=device, log=log, small_cache=small_cache)
        times["augment"] = time.perf_counter() - t

    report = build_report(config, source, real, measured, augment)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    times["total"] = time.perf_counter() - t_all
    report["timing_s"] = {key: round(v, 2) for key, v in times.items()}
    files = write_report(out, report, samples.gen, [b[:8] for b in samples.base], measured.get("flagged"))
    from .metrics import plain

    log(f"done in {times['total']:.0f} s")
    return EvalResult(report=plain(report), files=files, judges=list(judges))


def check_study_sizes(real: Real) -> None:
    """Refuse, before any fit, data whose held-out or fit side lacks a stage (the balance study draws every
    stage's training subjects from the fit side and reads every stage's recall on the held-out side)."""
    for side, idx in (("held-out", real.split.held), ("fit", real.split.fit)):
        counts = np.bincount(real.labels[idx], minlength=len(real.names))
        short = [real.names[s] for s, c in enumerate(counts) if c == 0]
        if short:
            raise EvalError(f"the balance study needs every stage on both sides of the split, but the {side} side of "
                            f"the {real.split.kind}-level split has no image of {', '.join(short)}; give at least 3 "
                            "subjects per stage")


def _balance_study(config: EvalConfig, source: Source, image_set: Any, log: Log, times: dict[str, float],
                   t_all: float) -> EvalResult:
    """The balance study (:mod:`.balance_study`) on the judge set or ``--data``, and its report."""
    from .balance_report import build_study_report, write_study_report
    from .balance_study import run_study, synthetic_shares
    from .devices import resolve_device
    from .metrics import plain

    if config.quick:
        log("--quick: a smoke check of the balance study (small judge set, short fits); its figures decide nothing")
    t = time.perf_counter()
    real = load_real(config, source, image_set, log, check=check_study_sizes)
    times["load"] = time.perf_counter() - t
    study_config = config.balance_study
    configs = config.judges or default_judges(seed=config.seed)
    judge_config = next((c for c in configs if c.arch == study_config.arch), configs[0])
    t = time.perf_counter()
    run = run_study(study_config, image_set=real.image_set, split=real.split, source=source,
                    judge_config=judge_config, device=resolve_device(config.device), seed=config.seed,
                    shares=synthetic_shares() if real.judge_set else None, names=real.names, log=log)
    times["balance_study"] = time.perf_counter() - t
    report = build_study_report(config, source, real, run.result)
    times["total"] = time.perf_counter() - t_all
    report["timing_s"] = {key: round(v, 2) for key, v in times.items()}
    files = write_study_report(Path(config.out), report)
    log(f"done in {times['total']:.0f} s")
    return EvalResult(report=plain(report), files=files)
