"""The learning curve for augmentation: *when* do generated images help a classifier on real held-out subjects?

On the fit side of the subject split, for each fraction of the real training subjects (at least 10%,
25%, 50%, 100%, drawn per stage, by subject, anew for every repeat), a judge-architecture network is
trained (a) on those real images alone and (b) on them plus generated images, and, once, (c) on
generated images alone (at 100%: no real image). Arm (b) adds, per stage, as many generated images as
the largest stage has real ones at 100% (or, with ``ratio``, that many per real image at the fraction),
so the generated part stays fixed while the real part grows. Every fit draws the same number of
class-balanced images per epoch with the same early stopping on the same real validation subjects, and
is measured on the same held-out real subjects: balanced accuracy and the rarest stage's recall, mean ±
sd over ``repeats`` seeds.

The cost follows the run: a fit trains ``epochs`` epochs but never more than its judge's own (so
``--judge-epochs`` and ``--quick`` bound it), and an epoch draws the judge's ``epoch_images`` or one
pass over the real fit side where that is smaller (:func:`.fit.epoch_draws`: a small set's epochs are
short).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .fit import epoch_draws, fit, predict, resize_u8
from .judges import averaged_tail
from .metrics import accuracy_summary, confusion
from .networks import build
from .sources import EvalError

Log = Callable[[str], object]
ARMS = (("a", "real only"), ("b", "real + generated"), ("c", "generated only"))
FRACTIONS = (0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class CurveConfig:
    repeats: int = 3
    fractions: tuple[float, ...] = FRACTIONS
    ratio: float | None = None  # None: a fixed generated pool per stage (the largest stage's real count at 100%)
    max_per_stage: int = 2000  # cap on the generated images of a stage (cost)
    seed: int = 1  # noise seed of the generated pool (the evaluation's images use --seed)
    archs: tuple[str, ...] = ("small",)  # judge architectures to train (each judge of these kinds)
    epochs: int = 8  # epochs of every fit (the judges' own: 30; the curve has many fits)

    def validate(self) -> None:
        if self.repeats < 1:
            raise EvalError(f"--repeats must be at least 1, got {self.repeats}")
        if self.ratio is not None and self.ratio <= 0:
            raise EvalError(f"--ratio must be > 0 (generated images per real image of a stage), got {self.ratio}")
        if self.max_per_stage < 1:
            raise EvalError(f"--augment-max-per-stage must be >= 1, got {self.max_per_stage}")
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise EvalError(f"learning-curve fractions must be within (0, 1], got {list(self.fractions)}")
        if self.epochs < 1:
            raise EvalError(f"--augment-epochs must be >= 1, got {self.epochs}")


AugmentConfig = CurveConfig  # the name the command line used before the curve


def pool_sizes(counts: np.ndarray, config: CurveConfig) -> list[int]:
    """Generated images per stage in the pool: the largest stage's real count (or ratio x each), capped."""
    top = int(np.max(counts))
    want = [top] * len(counts) if config.ratio is None else [int(round(config.ratio * int(c))) for c in counts]
    return [min(max(w, top), config.max_per_stage) for w in want]


def curve_fit_config(judge_config: Any, epochs: int, n_fit: int) -> Any:
    """The schedule of an extra fit on a judge's architecture (the learning curve's, the balance study's):
    ``epochs`` but at most the judge's own, the whole one-cycle schedule, the judge's weight averaging
    over its last third, and :func:`.fit.epoch_draws` draws per epoch for a fit side of ``n_fit`` images."""
    e = max(1, min(int(epochs), int(judge_config.max_epochs)))
    return replace(judge_config, max_epochs=e, min_epochs=e, epoch_images=epoch_draws(judge_config, n_fit),
                   average_last=averaged_tail(e) if judge_config.average_last else 0)


def subject_subset(idx: np.ndarray, labels: np.ndarray, groups: Any, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``fraction`` of every stage's subjects in ``idx`` (at least one), all their images."""
    g = np.asarray(groups, dtype=object)[idx] if groups is not None else idx.astype(object)
    keep = []
    for s in np.unique(labels[idx]):
        at = idx[labels[idx] == s]
        subj = np.unique(g[labels[idx] == s].astype(str))
        chosen = set(rng.choice(subj, size=max(1, int(round(fraction * len(subj)))), replace=False).tolist())
        keep.append(at[np.isin(g[labels[idx] == s].astype(str), list(chosen))])
    return np.sort(np.concatenate(keep))


def _stats(runs: list[dict[str, Any]], rare: int) -> dict[str, Any]:
    bal = np.array([r["balanced_accuracy"] for r in runs])
    per = np.array([r["per_class"] for r in runs], dtype=np.float64)
    sd = (lambda a: a.std(axis=0, ddof=1)) if len(runs) > 1 else (lambda a: np.zeros_like(a.mean(axis=0)))
    return {"balanced_accuracy_mean": float(bal.mean()), "balanced_accuracy_sd": float(sd(bal)),
            "rare_recall_mean": float(per[:, rare].mean()), "rare_recall_sd": float(sd(per[:, rare])),
            "recall_mean": per.mean(axis=0).tolist(), "recall_sd": np.atleast_1d(sd(per)).tolist(), "runs": runs}


def run_curve(config: CurveConfig, *, image_set: Any, split: Any, judges: list[Any], source: Any,
              device: torch.device, log: Log = print, small_cache: dict[int, np.ndarray] | None = None) -> dict[str, Any]:
    config.validate()
    labels = np.asarray(image_set.labels, dtype=np.int64)
    k = len(image_set.class_names)
    counts = np.bincount(labels[split.fit], minlength=k)
    # the rarest stage: fewest real training images (ties: the later stage, the rarer one in OASIS)
    rare = int(max(range(k), key=lambda s: (-counts[s], s)))
    sizes = pool_sizes(counts, config)
    log(f"learning curve: generating {sum(sizes):,} images for the pool (seed {config.seed}; "
        f"{', '.join(map(str, sizes))} per stage) ...")
    pool = [source.generate(s, n, config.seed) for s, n in enumerate(sizes)]
    small_cache = {} if small_cache is None else small_cache
    chosen = [j for j in judges if j.config.arch in config.archs] or judges[:1]
    result: dict[str, Any] = {"settings": {**asdict(config), "fit_counts": counts.tolist(), "pool": sizes,
                                           "rare_stage": rare},
                              "arms": dict(ARMS), "fractions": list(config.fractions), "per_judge": []}
    total = len(chosen) * (2 * len(config.fractions) + 1) * config.repeats
    done = 0
    for judge in chosen:
        cfg = curve_fit_config(judge.config, config.epochs, len(split.fit))
        size = cfg.size_for(judge.img_size)
        if size not in small_cache:
            small_cache[size] = resize_u8(np.asarray(image_set.images), size)
        small = small_cache[size]
        gen_small = [resize_u8(p, size) for p in pool]
        x_val, y_val = small[split.val], labels[split.val]
        x_held, y_held = small[split.held], labels[split.held]

        def one(x: np.ndarray, y: np.ndarray, seed: int, what: str) -> dict[str, Any]:
            nonlocal done
            torch.manual_seed(seed)
            model = build(cfg.arch, k, input_size=size, width=cfg.width, feature_dim=cfg.feature_dim)
            hist = fit(model, x, y, x_val, y_val, num_classes=k, config=replace(cfg, seed=seed), device=device,
                       name=f"curve {judge.name} {what}", log=lambda _m: None)
            summary = accuracy_summary(confusion(y_held, predict(model, x_held, device), k))
            done += 1
            log(f"learning curve {done}/{total}: {judge.name} {what}: held-out balanced accuracy "
                f"{summary['balanced_accuracy']:.3f}, {image_set.class_names[rare]} recall {summary['per_class'][rare]:.3f}")
            return {"seed": seed, **summary, "epochs": hist["epochs"], "steps": hist["steps"], "images": int(len(y))}

        curve: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        for fi, fraction in enumerate(config.fractions):
            runs: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
            for r in range(config.repeats):
                seed = cfg.seed + r
                idx = subject_subset(split.fit, labels, split.groups, fraction, np.random.default_rng([seed, fi, 0xC0E]))
                x_real, y_real = small[idx], labels[idx]
                real_counts = np.bincount(y_real, minlength=k)
                add = sizes if config.ratio is None else [min(int(round(config.ratio * c)), p) for c, p in zip(real_counts, sizes)]
                x_gen = np.concatenate([g[:a] for g, a in zip(gen_small, add)])
                y_gen = np.repeat(np.arange(k), add)
                runs["a"].append(one(x_real, y_real, seed, f"{fraction:.0%} real only, repeat {r + 1}"))
                runs["b"].append(one(np.concatenate([x_real, x_gen]), np.concatenate([y_real, y_gen]), seed,
                                     f"{fraction:.0%} real + generated, repeat {r + 1}"))
            for arm in ("a", "b"):
                curve[arm].append({"fraction": fraction, **_stats(runs[arm], rare)})
        x_c = np.concatenate([g[:n] for g, n in zip(gen_small, sizes)])
        y_c = np.repeat(np.arange(k), sizes)
        only = [one(x_c, y_c, cfg.seed + r, f"generated only, repeat {r + 1}") for r in range(config.repeats)]
        result["per_judge"].append({"judge": judge.name, "arch": cfg.arch, "epochs": cfg.max_epochs,
                                    "epoch_images": cfg.epoch_images, "curve": curve, "c": _stats(only, rare)})
    return result


def _verdict(a: dict[str, Any], b: dict[str, Any], key: str, repeats: int) -> tuple[str, float]:
    """"helps" / "hurts" when b - a is beyond two standard errors of the difference, else "no clear difference"."""
    diff = b[f"{key}_mean"] - a[f"{key}_mean"]
    se = float(np.sqrt((a[f"{key}_sd"] ** 2 + b[f"{key}_sd"] ** 2) / max(repeats, 1)))
    if repeats > 1 and diff > 2 * se:
        return "helps", diff
    if repeats > 1 and diff < -2 * se:
        return "hurts", diff
    return "no clear difference", diff


def curve_sentence(aug: dict[str, Any], stage_names: list[str]) -> str:
    """One sentence per judge: at which fractions generated images help and where they hurt."""
    reps = aug["settings"]["repeats"]
    rare = stage_names[aug["settings"]["rare_stage"]]
    parts = []
    for j in aug["per_judge"]:
        said: dict[str, list[str]] = {}
        for a, b in zip(j["curve"]["a"], j["curve"]["b"]):
            for key, what in (("balanced_accuracy", "balanced accuracy"), ("rare_recall", f"{rare} recall")):
                v, d = _verdict(a, b, key, reps)
                if v != "no clear difference":
                    said.setdefault(v, []).append(f"{what} at {a['fraction']:.0%} ({d:+.3f})")
        verb = {"helps": "help", "hurts": "hurt"}
        text = "; ".join(f"they {verb[v]} {', '.join(w)}" for v, w in said.items()) or \
            "no difference beyond two standard errors at any fraction"
        parts.append(f"{j['judge']}: {text}; trained on generated images alone, balanced accuracy "
                     f"{j['c']['balanced_accuracy_mean']:.3f}")
    return ("Adding generated images to the real ones, on held-out real subjects (mean of "
            f"{reps} repeats, a difference counts beyond two standard errors) — " + " | ".join(parts) + ".")


def curve_table(aug: dict[str, Any], stage_names: list[str]) -> str:
    rare = stage_names[aug["settings"]["rare_stage"]]
    lines = [f"| judge | real subjects | arm | balanced acc. (mean ± sd) | {rare} recall (mean ± sd) | images |",
             "| --- | ---: | --- | ---: | ---: | ---: |"]
    for j in aug["per_judge"]:
        rows = [(row["fraction"], arm, row) for arm in ("a", "b") for row in j["curve"][arm]]
        rows.sort(key=lambda t: (t[0], t[1]))
        rows.append((1.0, "c", j["c"]))
        for fraction, arm, row in rows:
            imgs = int(np.mean([r["images"] for r in row["runs"]]))
            lines.append(f"| {j['judge']} | {'–' if arm == 'c' else f'{fraction:.0%}'} | ({arm}) {aug['arms'][arm]} | "
                         f"{row['balanced_accuracy_mean']:.3f} ± {row['balanced_accuracy_sd']:.3f} | "
                         f"{row['rare_recall_mean']:.3f} ± {row['rare_recall_sd']:.3f} | {imgs:,} |")
    return "\n".join(lines)


def write_plot(path: Path, aug: dict[str, Any], stage_names: list[str]) -> Path:
    """Per judge: balanced accuracy and the rarest stage's recall against the real fraction, arms (a) and
    (b) with ± sd bars, arm (c) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from cgan.runtime.fileio import atomic_path

    rare = stage_names[aug["settings"]["rare_stage"]]
    judges = aug["per_judge"]
    fig, axes = plt.subplots(len(judges), 2, figsize=(9, 3.4 * len(judges)), squeeze=False)
    for row, j in zip(axes, judges):
        for ax, key, what in ((row[0], "balanced_accuracy", "balanced accuracy"), (row[1], "rare_recall", f"{rare} recall")):
            for arm in ("a", "b"):
                pts = j["curve"][arm]
                ax.errorbar([100 * p["fraction"] for p in pts], [p[f"{key}_mean"] for p in pts],
                            yerr=[p[f"{key}_sd"] for p in pts], marker="o", capsize=3, label=f"({arm}) {aug['arms'][arm]}")
            ax.axhline(j["c"][f"{key}_mean"], ls="--", color="grey", label="(c) generated only")
            ax.set_xscale("log")
            ax.set_xticks([100 * f for f in aug["fractions"]], [f"{f:.0%}" for f in aug["fractions"]])
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("real training subjects used")
            ax.set_ylabel(what)
            ax.set_title(f"judge {j['judge']}: held-out real subjects", fontsize=9)
        row[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return Path(path)
