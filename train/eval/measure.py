"""Everything one run measures once it has its judges and images: every judge's figures (with intervals),
pixel diversity, the atrophy markers and the severity check (synthetic sets), the implausible-anatomy
rate, the bar and the judges' disagreement."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .metrics import PIXEL_DIVERSITY_SIZE, mean_pairwise_distance, pixel_vectors, ratio

Log = Callable[[str], object]
MARKER_REAL_PER_STAGE = 1000


def measure(config: Any, real: Any, samples: Any, judges: list[Any], source: Any, log: Log,
            times: dict[str, float]) -> dict[str, Any]:
    from .figures import judge_figures, strip_replicates
    from .verdict import disagreement, passes_bar

    k = len(real.names)
    t = time.perf_counter()
    per_judge = []
    for j in judges:
        log(f"measuring with judge {j.name} (figures, 95% bootstrap intervals, calibration rows) ...")
        per_judge.append(judge_figures(j, samples.gen, samples.ref, samples.base, n=config.n, seed=config.seed,
                                       ref_groups=samples.ref_groups, held=samples.held))
    pix = PIXEL_DIVERSITY_SIZE if source.img_size % PIXEL_DIVERSITY_SIZE == 0 else source.img_size
    pg = [mean_pairwise_distance(pixel_vectors(samples.gen[s], pix)) for s in range(k)]
    pr = [mean_pairwise_distance(pixel_vectors(samples.base[s][: config.n], pix)) for s in range(k)]
    pixel = {"generated": pg, "real": pr, "ratio": [ratio(a, b) for a, b in zip(pg, pr)],
             "space": f"pixels area-averaged to {pix} px in [0, 1], RMS difference"}
    times["metrics"] = time.perf_counter() - t

    out: dict[str, Any] = {"pixel_diversity": pixel, "markers": None, "severity": None, "artefacts": None}
    if config.markers if config.markers is not None else real.synthetic:
        out["markers"] = marker_table(samples.gen, real.image_set, real.labels, k, config.seed)
    severity = getattr(real.image_set, "severity", None)
    if severity is not None:
        from .severity import severity_check

        t = time.perf_counter()
        log("severity check: fitting the estimator on real judge-set images of known severity ...")
        out["severity"] = severity_check(real.image_set, real.split, samples.gen, seed=config.seed, log=log)
        times["severity"] = time.perf_counter() - t
    if config.artefacts:
        from .artefacts import artefact_check

        t = time.perf_counter()
        log("implausible anatomy: calibrating on real held-out images and a corruption row ...")
        out["artefacts"], out["flagged"] = artefact_check(samples.gen, samples.base, real.names, reference=samples.ref,
                                                              seed=config.seed)
        times["artefacts"] = time.perf_counter() - t

    out["passes_bar"] = passes_bar(per_judge, n_per_stage=config.n, pixel_ratio_min=min(pixel["ratio"]),
                                   quick=config.quick)
    out["judges"] = [strip_replicates(j) for j in per_judge]
    out["disagreement"] = disagreement(out["judges"], real.names, config.margin)
    return out


def marker_table(gen_images: list[np.ndarray], image_set: Any, labels: np.ndarray, k: int, seed: int) -> dict[str, Any]:
    from cgan.train.synth import MARKER_NAMES, estimate_markers

    rng = np.random.default_rng([seed, 0x3A7])
    table: dict[str, Any] = {name: {"generated_mean": [], "generated_std": [], "real_mean": [], "real_std": [],
                                    "effect_size": []} for name in MARKER_NAMES}
    for s in range(k):
        idx = np.flatnonzero(labels == s)
        real_idx = idx if len(idx) <= MARKER_REAL_PER_STAGE else np.sort(rng.choice(idx, MARKER_REAL_PER_STAGE, replace=False))
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
