"""The report dict of one run (what report.json holds): model, data, split, settings, every measurement."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from cgan.runtime import __version__
from cgan.runtime.contract import DISCLAIMER
from cgan.runtime.noise import NOISE_VERSION


def build_report(config: Any, source: Any, real: Any, measured: dict[str, Any], augment: Any) -> dict[str, Any]:
    k = len(real.names)
    image_set = real.image_set
    data = {"description": str(getattr(image_set, "description", "")), "class_names": list(image_set.class_names),
            "counts": np.bincount(real.labels, minlength=k).tolist(), "synthetic": real.synthetic,
            "judge_set": real.judge_set}
    if real.judge_set:
        data["note"] = ("no --data: the judges train and are gated on the judge set, rendered with its own seed, "
                        "balanced over stages and sharing no subject with the generator's training set; every real "
                        "figure is read on it")
    return {
        "tool": "cgan-eval", "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "model": {"source": source.description, "kind": source.kind, "img_size": source.img_size,
                  "num_classes": source.num_classes, "stage_names": real.names, "training_data": source.training_data},
        "data": data,
        "split": real.split.describe(real.labels, k),
        "settings": {"n_per_stage": config.n, "seed": config.seed, "device": config.device, "quick": config.quick,
                     "threads": config.threads, "margin": config.margin,
                     "noise_version": NOISE_VERSION,
                     "noise": f"image k of stage s uses cgan.runtime.contract.noise(seed, k, 1, z_dim, version={NOISE_VERSION})",
                     "intervals": "95% percentile bootstrap, 1000 replicates: real images resampled by subject within "
                                  "their stage, generated images one by one; KID: ± 1.96 standard errors"},
        "judges": measured["judges"],
        "pixel_diversity": measured["pixel_diversity"],
        "markers": measured["markers"],
        "severity": measured["severity"],
        "artefacts": measured["artefacts"],
        "passes_bar": measured["passes_bar"],
        "disagreement": measured["disagreement"],
        "augment": augment,
    }
