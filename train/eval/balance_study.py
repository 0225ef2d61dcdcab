"""The balance study: does topping a dataset's rare stages up with generated images help a classifier more
than the remedies that cost nothing?

Training sets are drawn **by subject** from the fit side of the subject split, in OASIS-like proportions
(on the judge set: the built-in synthetic set's own stage shares, about 76/16/6/2%; on ``--data``: the
folder's own), at two sizes: all the subjects those shares allow, and a quarter of them. Every repeat
draws the subjects anew (the larger size keeps every subject of the stage that limits it) and seeds the
fit anew. Five arms train the same network with the same schedule (a judge architecture, the learning
curve's schedule: :func:`.augment.curve_fit_config`) on each draw and are read on the held-out subjects
of every stage:

- (a) plain sampling: every image equally likely;
- (b) a class-balanced sampler: every image with weight 1 / its stage's count;
- (c) a class-weighted loss: plain sampling, cross-entropy weighted n / (stages x stage count);
- (d) the draw topped up with generated images as ``cgan-run --balance`` plans it for the draw's counts
  (:func:`cgan.runtime.balance.plan_counts`: every stage to the largest), plain sampling;
- (e) only the stages below half of the largest topped up, to half of it (``cgan-run --balance --target``
  at half the largest stage's count), plain sampling. Topping the stages below half up to the largest
  would be (d) again on OASIS-like shares, where every stage but the largest is below half of it.

Generated image k of stage s is image k of (model, ``seed``, s) under the noise contract: the images
``cgan-run --balance --seed`` writes for the same counts. The intervals and the verdict are in
:mod:`.balance_stats`, the report in :mod:`.balance_report`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from .balance_stats import FREE, GENERATED
from .sources import EvalError

Log = Callable[[str], object]

ARMS = (("a", "plain sampling"), ("b", "class-balanced sampler"), ("c", "class-weighted loss"),
        ("d", "generated top-up to the largest stage"), ("e", "generated top-up to half the largest"))
HOW = {"d": "cgan-run --balance", "e": "cgan-run --balance --target (half the largest stage's count)"}
SIZES = (1.0, 0.25)  # of the subjects the shares allow
MIN_REPEATS = 3


@dataclass(frozen=True)
class StudyConfig:
    repeats: int = MIN_REPEATS
    epochs: int = 8  # epochs of every fit (at most the judges' own)
    sizes: tuple[float, ...] = SIZES
    arch: str = "small"  # the judge architecture every arm trains
    replicates: int = 1000  # bootstrap replicates of every interval

    def validate(self) -> None:
        if self.repeats < MIN_REPEATS:
            raise EvalError(f"--repeats must be at least {MIN_REPEATS} for the balance study (its intervals are over "
                            f"repeats), got {self.repeats}")
        if self.epochs < 1:
            raise EvalError(f"--augment-epochs must be >= 1, got {self.epochs}")
        if not self.sizes or any(not 0.0 < f <= 1.0 for f in self.sizes):
            raise EvalError(f"balance-study sizes must be within (0, 1], got {list(self.sizes)}")


# ---------------------------------------------------------------- the training sets

def synthetic_shares() -> tuple[float, ...]:
    """The built-in synthetic set's stage shares (OASIS proportions with its floor for the rarest stage)."""
    from cgan.train.data import DEFAULT_SYNTH_N
    from cgan.train.synth import stage_counts

    c = np.asarray(stage_counts(DEFAULT_SYNTH_N), dtype=np.float64)
    return tuple(float(v) for v in c / c.sum())


def apportion(n: int, shares: Sequence[float]) -> np.ndarray:
    """``n`` subjects over the stages in proportion to ``shares`` (largest remainders), then every stage
    at least one (a stage that rounds to none gets one, so the total can exceed ``n``). Every stage's count
    is within one subject of its target, share x ``n``."""
    s = np.asarray(shares, dtype=np.float64)
    exact = s / s.sum() * n
    counts = np.floor(exact + 1e-9).astype(np.int64)
    for i in np.argsort(-(exact - counts), kind="stable")[: max(0, n - int(counts.sum()))]:
        counts[i] += 1
    return np.maximum(counts, 1)


def subject_counts(available: Sequence[int], shares: Sequence[float], fraction: float = 1.0) -> tuple[int, np.ndarray]:
    """The size asked for and the subjects per stage (:func:`apportion`) of a training set in ``shares``:
    the most subjects the ``available`` ones allow (no stage asked for more than it has), or ``fraction``
    of that many."""
    avail = np.asarray(available, dtype=np.int64)
    s = np.asarray(shares, dtype=np.float64)
    if len(avail) != len(s) or (s <= 0).any() or (avail < 1).any():
        raise EvalError(f"every stage needs a share above 0 and a subject on the fit side; shares "
                        f"{[round(float(v), 4) for v in s]}, subjects {avail.tolist()}")
    n = int(np.floor(np.min(avail / (s / s.sum())))) + len(avail)
    while n > len(avail) and (apportion(n, s) > avail).any():
        n -= 1
    if fraction < 1.0:
        n = max(1, int(round(fraction * n)))
    return n, apportion(n, s)


@dataclass
class FitSide:
    """The fit side's subjects: per stage the subject ids, and each id's image indices."""

    by_stage: list[np.ndarray]
    images: dict[str, np.ndarray]

    @property
    def available(self) -> list[int]:
        return [len(b) for b in self.by_stage]


def fit_side(split: Any, labels: np.ndarray, k: int) -> FitSide:
    """Subjects of the split's fit side (each image its own subject where the split has none), a subject's
    stage being that of most of its images."""
    idx = split.fit
    groups = (np.asarray(split.groups, dtype=object)[idx].astype(str) if split.groups is not None
              else np.array([f"image{i}" for i in idx], dtype=object))
    ids, inv = np.unique(groups, return_inverse=True)
    stage = np.array([np.bincount(labels[idx][inv == j], minlength=k).argmax() for j in range(len(ids))])
    images = {str(ids[j]): idx[inv == j] for j in range(len(ids))}
    return FitSide(by_stage=[ids[stage == s] for s in range(k)], images=images)


def draw_subjects(side: FitSide, counts: Sequence[int], rng: np.random.Generator) -> tuple[np.ndarray, list[list[str]]]:
    """``counts[s]`` subjects of every stage drawn without replacement: their image indices (sorted) and ids."""
    chosen = [sorted(rng.choice(side.by_stage[s], size=int(c), replace=False).tolist()) for s, c in enumerate(counts)]
    idx = np.sort(np.concatenate([side.images[g] for stage in chosen for g in stage]))
    return idx, chosen


# ---------------------------------------------------------------- the arms

def half_target(real: Sequence[int]) -> int:
    """Half of the largest stage's count, rounded up: the stages below half of it are those below this."""
    return max(1, math.ceil(max(int(c) for c in real) / 2))


def topup_plan(arm: str, real: Sequence[int]) -> tuple[int, ...]:
    """Generated images per stage that arm (d) or (e) adds to a draw of ``real`` images per stage: the
    runtime's own plan (``cgan-run --balance``, and ``--target`` half the largest for (e))."""
    from cgan.runtime.balance import plan_counts

    if arm == "d":
        return plan_counts(real)
    if arm == "e":
        return plan_counts(real, target=half_target(real))
    return tuple(0 for _ in real)


def loss_weights(y: np.ndarray, k: int) -> np.ndarray:
    """Arm (c): n / (stages x stage count) per stage (1 for every stage of a balanced set)."""
    counts = np.bincount(y, minlength=k).astype(np.float64)
    return np.where(counts > 0, len(y) / (k * np.maximum(counts, 1)), 0.0)


def arm_training_set(arm: str, x: np.ndarray, y: np.ndarray, pool: Sequence[np.ndarray], k: int):
    """What arm ``arm`` trains on for the real draw ``x, y``: (images, labels, sampler, loss weights, generated
    per stage). ``pool[s]`` holds stage s's generated images 0, 1, ... (already at the network's size)."""
    if arm == "b":
        return x, y, "balanced", None, [0] * k
    if arm == "c":
        return x, y, "plain", loss_weights(y, k), [0] * k
    plan = list(topup_plan(arm, np.bincount(y, minlength=k).tolist()))
    if not any(plan):
        return x, y, "plain", None, plan
    for s, n in enumerate(plan):
        if n > len(pool[s]):
            raise EvalError(f"the generated pool of stage {s} holds {len(pool[s])} images, arm ({arm}) needs {n}")
    x_all = np.concatenate([x, *[pool[s][:n] for s, n in enumerate(plan)]])
    y_all = np.concatenate([y, np.repeat(np.arange(k), plan)])
    return x_all, y_all, "plain", None, plan


# ---------------------------------------------------------------- the run

@dataclass
class StudyRun:
    """What the study measured: the JSON-ready result and each fit's held-out predictions (for the intervals)."""

    result: dict[str, Any]
    predictions: dict[tuple[int, str], list[np.ndarray]]


def run_study(config: StudyConfig, *, image_set: Any, split: Any, source: Any, judge_config: Any, device: Any,
              seed: int, shares: Sequence[float] | None = None, names: Sequence[str] | None = None,
              log: Log = print) -> StudyRun:
    """Run every arm at every size ``config.repeats`` times and measure it on the held-out subjects.
    ``shares``: the training sets' stage shares (``None``: the fit side's own subject shares); ``names``:
    the stage names to print (default: the image set's class names)."""
    from .augment import curve_fit_config
    from .balance_stats import summarise
    from .fit import fit, predict, resize_u8
    from .metrics import accuracy_summary, confusion
    from .networks import build

    import torch

    config.validate()
    labels = np.asarray(image_set.labels, dtype=np.int64)
    names = list(names or image_set.class_names)
    k = len(names)
    side = fit_side(split, labels, k)
    own = shares is None
    shares = tuple(float(v) for v in (np.asarray(side.available) / sum(side.available) if own else shares))
    if len(shares) != k:
        raise EvalError(f"{len(shares)} stage shares for {k} stages")
    asked, sizes = zip(*[subject_counts(side.available, shares, f) for f in config.sizes])
    cfg = curve_fit_config(judge_config, config.epochs, len(split.fit))
    size_px = cfg.size_for(int(image_set.images.shape[-1]))

    draws = []  # (size index, repeat, image indices, subject ids per stage)
    for si, counts in enumerate(sizes):
        for r in range(config.repeats):
            idx, chosen = draw_subjects(side, counts, np.random.default_rng([seed, si, r, 0x57D]))
            draws.append((si, r, idx, chosen))
    need = np.zeros(k, dtype=np.int64)
    for _si, _r, idx, _c in draws:
        real = np.bincount(labels[idx], minlength=k).tolist()
        for arm in GENERATED:
            need = np.maximum(need, topup_plan(arm, real))
    for si, (f, counts) in enumerate(zip(config.sizes, sizes)):
        log(f"balance study: size {si + 1} ({f:.0%}): {int(counts.sum())} training subjects per draw ("
            + ", ".join(f"{n}: {c}" for n, c in zip(names, counts)) + f"), {config.repeats} draws")
    log(f"balance study: generating {int(need.sum()):,} images for the top-ups (seed {seed}; "
        f"{', '.join(map(str, need.tolist()))} per stage) ...")
    pool = [resize_u8(source.generate(s, int(n), seed), size_px) if n else
            np.zeros((0, size_px, size_px), dtype=np.uint8) for s, n in enumerate(need)]
    small = resize_u8(np.asarray(image_set.images), size_px)
    x_val, y_val = small[split.val], labels[split.val]
    held = np.sort(split.held)
    x_held, y_held = small[held], labels[held]
    groups_held = None if split.groups is None else np.asarray(split.groups, dtype=object)[held]

    total = len(draws) * len(ARMS)
    runs: list[dict[str, Any]] = []
    predictions: dict[tuple[int, str], list[np.ndarray]] = {}
    t_start = time.perf_counter()
    for si, r, idx, chosen in draws:
        x, y = small[idx], labels[idx]
        fit_seed = int(cfg.seed) + r
        for arm, what in ARMS:
            t0 = time.perf_counter()
            xa, ya, sampler, weights, added = arm_training_set(arm, x, y, pool, k)
            torch.manual_seed(fit_seed)
            model = build(cfg.arch, k, input_size=size_px, width=cfg.width, feature_dim=cfg.feature_dim)
            hist = fit(model, xa, ya, x_val, y_val, num_classes=k, config=replace(cfg, seed=fit_seed), device=device,
                       name=f"balance study size {si + 1} ({arm}) repeat {r + 1}", log=lambda _m: None,
                       sampler=sampler, class_weights=weights)
            pred = predict(model, x_held, device)
            predictions.setdefault((si, arm), []).append(pred)
            summary = accuracy_summary(confusion(y_held, pred, k))
            runs.append({"size": si, "repeat": r, "arm": arm, "seed": fit_seed, "images": int(len(ya)),
                         "generated_per_stage": list(added), "balanced_accuracy": summary["balanced_accuracy"],
                         "per_class": summary["per_class"], "epochs": hist["epochs"], "steps": hist["steps"],
                         "seconds": round(time.perf_counter() - t0, 2)})
            done = len(runs)
            left = (time.perf_counter() - t_start) / done * (total - done)
            log(f"balance study {done}/{total}: size {si + 1}, ({arm}) {what}, repeat {r + 1}: held-out balanced "
                f"accuracy {summary['balanced_accuracy']:.3f} ({time.perf_counter() - t0:.0f} s; about "
                f"{left / 60:.0f} min left)")
    rare_first = [int(s) for s in np.argsort(np.asarray(shares), kind="stable")]
    result = {
        "settings": {**asdict(config), "seed": seed, "fit": {"arch": cfg.arch, "input_size": size_px,
                     "epochs": cfg.max_epochs, "epoch_images": cfg.epoch_images, "batch_size": cfg.batch_size,
                     "augment": cfg.augment, "average_last": cfg.average_last, "lr": cfg.lr}},
        "arms": dict(ARMS), "top_up_as": HOW, "free": list(FREE), "generated": list(GENERATED),
        "shares": list(shares), "shares_from": "the data's fit side" if own else "the built-in synthetic set",
        "stage_order": rare_first,
        "fit_subjects_available": side.available,
        "held_out": {"images": np.bincount(y_held, minlength=k).tolist(),
                     "subjects": [len(set(groups_held[y_held == s])) if groups_held is not None else int((y_held == s).sum())
                                  for s in range(k)]},
        "generated_pool": need.tolist(),
        "sizes": [{"fraction": f, "asked": n, "subjects": c.tolist()} for f, n, c in zip(config.sizes, asked, sizes)],
        "draws": [{"size": si, "repeat": r, "real_per_stage": np.bincount(labels[idx], minlength=k).tolist(),
                   "subjects": chosen} for si, r, idx, chosen in draws],
        "runs": runs,
    }
    result["per_size"] = [summarise({a: predictions[(si, a)] for a, _ in ARMS}, y_held, groups_held, k,
                                    replicates=config.replicates, seed=seed) for si in range(len(sizes))]
    return StudyRun(result=result, predictions=predictions)
