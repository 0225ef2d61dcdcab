"""The augmentation experiment: do generated images help a classifier on real held-out subjects?

For every judge architecture, on the fit part of the subject-level split, the judge's network is
trained (a) on the real images alone, (b) on the real images plus generated ones that top up every
stage to the largest stage (or, with ``ratio``, add ``ratio`` generated images per real image of the
stage), (c) on generated images alone (train on synthetic, test on real), each over ``repeats`` seeds,
with the same early stopping on the same real validation subjects, and measured on the same held-out
real subjects: balanced accuracy and per-stage recall, mean ± sd. Every fit draws the same number of
class-balanced images per epoch, so the arms differ only in the pool they draw from. Repeat 1 of arm (a)
is the judge itself (same data, seed and settings), so its figure is the judge's held-out accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .fit import fit, predict, resize_u8
from .metrics import accuracy_summary, confusion
from .networks import build
from .sources import EvalError

Log = Callable[[str], object]
ARMS = (("a", "real only"), ("b", "real + generated"), ("c", "generated only"))


@dataclass(frozen=True)
class AugmentConfig:
    repeats: int = 3
    ratio: float | None = None  # None: top every stage up to the largest; else generated per real image
    max_per_stage: int = 2000  # cap on the generated images of a stage (cost)
    seed: int = 1  # noise seed of the generated pool (the evaluation's images use --seed)
    reuse_judge: bool = True  # repeat 1 of arm (a) is the judge itself (False: trained again, for checking)

    def validate(self) -> None:
        if self.repeats < 1:
            raise EvalError(f"--repeats must be at least 1, got {self.repeats}")
        if self.ratio is not None and self.ratio <= 0:
            raise EvalError(f"--ratio must be > 0 (generated images per real image of a stage), got {self.ratio}")
        if self.max_per_stage < 1:
            raise EvalError(f"--augment-max-per-stage must be >= 1, got {self.max_per_stage}")


def pool_sizes(counts: np.ndarray, config: AugmentConfig) -> tuple[list[int], list[int]]:
    """Generated images per stage for arm (b) and for arm (c)."""
    top = int(counts.max())
    if config.ratio is None:
        add = [max(0, top - int(c)) for c in counts]
    else:
        add = [int(round(config.ratio * int(c))) for c in counts]
    only = [top] * len(counts)
    cap = config.max_per_stage
    return [min(a, cap) for a in add], [min(o, cap) for o in only]


def _stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    bal = np.array([r["balanced_accuracy"] for r in runs])
    per = np.array([r["per_class"] for r in runs], dtype=np.float64)
    sd = (lambda a: a.std(axis=0, ddof=1)) if len(runs) > 1 else (lambda a: np.zeros_like(a.mean(axis=0)))
    return {"balanced_accuracy_mean": float(bal.mean()), "balanced_accuracy_sd": float(sd(bal)),
            "recall_mean": per.mean(axis=0).tolist(), "recall_sd": np.atleast_1d(sd(per)).tolist(), "runs": runs}


def run_augment(config: AugmentConfig, *, image_set: Any, split: Any, judges: list[Any], source: Any,
                device: torch.device, log: Log = print, small_cache: dict[int, np.ndarray] | None = None) -> dict[str, Any]:
    config.validate()
    labels = np.asarray(image_set.labels, dtype=np.int64)
    k = len(image_set.class_names)
    fit_idx = split.fit
    counts = np.bincount(labels[fit_idx], minlength=k)
    add, only = pool_sizes(counts, config)
    need = [max(a, o) for a, o in zip(add, only)]
    log(f"augmentation experiment: generating {sum(need):,} images for the pool (seed {config.seed}; arm b adds "
        f"{', '.join(map(str, add))} per stage, arm c uses {', '.join(map(str, only))}) ...")
    pool = [source.generate(s, n, config.seed) if n else np.zeros((0,) + image_set.images.shape[1:], np.uint8)
            for s, n in enumerate(need)]
    small_cache = {} if small_cache is None else small_cache
    result: dict[str, Any] = {"settings": {**asdict(config), "fit_counts": counts.tolist(), "added_b": add,
                                           "generated_c": only},
                              "arms": dict(ARMS), "per_judge": []}
    for judge in judges:
        cfg = judge.config
        size = cfg.size_for(judge.img_size)
        if size not in small_cache:
            small_cache[size] = resize_u8(np.asarray(image_set.images), size)
        small = small_cache[size]
        gen_small = [resize_u8(p, size) if len(p) else np.zeros((0, size, size), np.uint8) for p in pool]
        x_real, y_real = small[fit_idx], labels[fit_idx]
        x_gen_b = np.concatenate([g[:a] for g, a in zip(gen_small, add)])
        y_gen_b = np.repeat(np.arange(k), add)
        x_gen_c = np.concatenate([g[:o] for g, o in zip(gen_small, only)])
        y_gen_c = np.repeat(np.arange(k), only)
        data = {"a": (x_real, y_real), "b": (np.concatenate([x_real, x_gen_b]), np.concatenate([y_real, y_gen_b])),
                "c": (x_gen_c, y_gen_c)}
        x_val, y_val = small[split.val], labels[split.val]
        x_held, y_held = small[split.held], labels[split.held]
        arms = {}
        for arm, what in ARMS:
            runs = []
            for r in range(config.repeats):
                seed = cfg.seed + r
                if arm == "a" and r == 0 and config.reuse_judge:
                    runs.append({"seed": seed, **judge.held_out, "from": "the judge itself"})
                    continue
                x, y = data[arm]
                torch.manual_seed(seed)
                model = build(cfg.arch, k, input_size=size, width=cfg.width, feature_dim=cfg.feature_dim)
                run_cfg = type(cfg)(**{**cfg.to_dict(), "seed": seed})
                hist = fit(model, x, y, x_val, y_val, num_classes=k, config=run_cfg, device=device,
                           name=f"augment {judge.name} arm {arm} ({what}) repeat {r + 1}/{config.repeats}",
                           log=lambda _m: None)
                summary = accuracy_summary(confusion(y_held, predict(model, x_held, device), k))
                runs.append({"seed": seed, **summary, "epochs": hist["epochs"]})
                log(f"augment {judge.name} arm {arm} ({what}) repeat {r + 1}/{config.repeats}: held-out balanced "
                    f"accuracy {summary['balanced_accuracy']:.3f} ({hist['epochs']} epochs)")
            arms[arm] = _stats(runs)
        result["per_judge"].append({"judge": judge.name, "arch": cfg.arch, "arms": arms})
    return result


def write_plot(path: Path, augment: dict[str, Any], stage_names: list[str]) -> Path:
    """One panel per judge: per-stage recall and balanced accuracy, a bar per arm with ± sd."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from cgan.runtime.fileio import atomic_path

    judges = augment["per_judge"]
    fig, axes = plt.subplots(1, len(judges), figsize=(6 * len(judges), 3.6), squeeze=False)
    labels = [*stage_names, "balanced acc."]
    x = np.arange(len(labels))
    width = 0.8 / len(ARMS)
    for ax, j in zip(axes[0], judges):
        for i, (arm, what) in enumerate(ARMS):
            a = j["arms"][arm]
            mean = [*a["recall_mean"], a["balanced_accuracy_mean"]]
            sd = [*a["recall_sd"], a["balanced_accuracy_sd"]]
            ax.bar(x + (i - 1) * width, mean, width, yerr=sd, capsize=2, label=f"({arm}) {what}")
        ax.set_xticks(x, [s.replace(" ", "\n") for s in labels], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"judge {j['judge']}: held-out real subjects", fontsize=9)
        ax.set_ylabel("recall / balanced accuracy")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return Path(path)
