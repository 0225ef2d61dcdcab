"""The balance study's report: report.json (the study under ``balance_study``), report.md (a table per
size, the sentence), balance_study.png, and the lines the CLI prints."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cgan.runtime.fileio import atomic_path, atomic_write_text

from .balance_stats import size_sentence, study_sentence
from .metrics import plain


def build_study_report(config: Any, source: Any, real: Any, study: dict[str, Any]) -> dict[str, Any]:
    from cgan.runtime import __version__
    from cgan.runtime.contract import DISCLAIMER
    from cgan.runtime.noise import NOISE_VERSION

    k = len(real.names)
    return {
        "tool": "cgan-eval", "version": __version__, "kind": "balance study",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "model": {"source": source.description, "kind": source.kind, "img_size": source.img_size,
                  "num_classes": source.num_classes, "stage_names": real.names, "training_data": source.training_data},
        "data": {"description": str(getattr(real.image_set, "description", "")),
                 "class_names": list(real.image_set.class_names),
                 "counts": np.bincount(real.labels, minlength=k).tolist(), "judge_set": real.judge_set},
        "split": real.split.describe(real.labels, k),
        "settings": {"seed": config.seed, "quick": config.quick, "device": config.device, "threads": config.threads,
                     "noise_version": NOISE_VERSION,
                     "generated": f"image k of stage s is image k of (model, seed {config.seed}, s) under noise version "
                                  f"{NOISE_VERSION}: what cgan-run --balance --seed {config.seed} writes"},
        "balance_study": study,
        "sentence": study_sentence(study),
        "sentences": [size_sentence(st, study["arms"], size["subjects"])
                      for st, size in zip(study["per_size"], study["sizes"])],
    }


def _ci(v: dict[str, Any], s: int | None = None) -> str:
    value, ci = (v["value"], v["ci"]) if s is None else (v["value"][s], v["ci"][s])
    if ci is None or any(c is None or not np.isfinite(c) for c in ci):
        return f"{value:.3f}"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def size_table(study: dict[str, Any], si: int, names: list[str], *, compact: bool = False) -> str:
    """One size: per arm, balanced accuracy, recall per stage (rarest first), macro-F1, each with its 95%
    interval, and the images it trained on (mean over repeats). ``compact`` (the console): the recalls
    without their intervals, in one column."""
    order = study["stage_order"]
    summary = study["per_size"][si]
    runs = [r for r in study["runs"] if r["size"] == si]
    if compact:
        lines = ["| arm | balanced acc. [95%] | macro-F1 [95%] | recall: " + " / ".join(names[s] for s in order)
                 + " | images (generated) |", "| --- | ---: | ---: | ---: | ---: |"]
    else:
        lines = ["| arm | balanced acc. [95%] | " + " | ".join(f"{names[s]} recall" for s in order) +
                 " | macro-F1 | images (generated) |",
                 "| --- | ---: | " + " | ".join("---:" for _ in order) + " | ---: | ---: |"]
    for arm, what in study["arms"].items():
        a = summary["arms"][arm]
        mine = [r for r in runs if r["arm"] == arm]
        imgs = int(np.mean([r["images"] for r in mine]))
        gen = int(np.mean([sum(r["generated_per_stage"]) for r in mine]))
        label = f"({arm}) {what}" + (" (best)" if arm == summary["best"] else "")
        if compact:
            recall = " / ".join(f"{a['recall']['value'][s]:.2f}" for s in order)
            lines.append(f"| {label} | {_ci(a['balanced_accuracy'])} | {_ci(a['macro_f1'])} | {recall} | "
                         f"{imgs:,} ({gen:,}) |")
        else:
            lines.append(f"| {label} | {_ci(a['balanced_accuracy'])} | "
                         + " | ".join(_ci(a["recall"], s) for s in order)
                         + f" | {_ci(a['macro_f1'])} | {imgs:,} ({gen:,}) |")
    return "\n".join(lines)


def size_heading(study: dict[str, Any], si: int, names: list[str]) -> str:
    size = study["sizes"][si]
    return (f"{size['fraction']:.0%} of the subjects the shares allow: {sum(size['subjects'])} training subjects ("
            + ", ".join(f"{n} {c}" for n, c in zip(names, size["subjects"])) + ")")


def study_lines(report: dict[str, Any], *, compact: bool = False) -> list[str]:
    """The study's tables and sentences (report.md; ``compact``: the CLI's summary)."""
    study, names = report["balance_study"], report["model"]["stage_names"]
    fit = study["settings"]["fit"]
    held = study["held_out"]
    out = [f"Training sets drawn by subject from the fit side in {study['shares_from']}'s stage shares ("
           + ", ".join(f"{n} {v:.1%}" for n, v in zip(names, study["shares"])) + f"); {study['settings']['repeats']} "
           f"draws per size, each arm fitted on each ({fit['arch']} judge network at {fit['input_size']} px, "
           f"{fit['epochs']} epochs of {fit['epoch_images']:,} draws). Read on the held-out subjects of every stage ("
           + ", ".join(f"{n} {s}" for n, s in zip(names, held["subjects"])) + "); mean over draws with a 95% interval "
           "(draws and held-out subjects resampled). Top-ups: "
           + "; ".join(f"({a}) as {how}" for a, how in study["top_up_as"].items()) + ".", ""]
    for si in range(len(study["sizes"])):
        out += [f"{size_heading(study, si, names)}:", "", size_table(study, si, names, compact=compact), "",
                size_sentence(study["per_size"][si], study["arms"], study["sizes"][si]["subjects"]), ""]
    return out


def study_markdown(report: dict[str, Any]) -> str:
    parts = ["# cgan-eval balance study", "", f"_{report['disclaimer']}_", "",
             f"- model: {report['model']['source']} (trained on: {report['model']['training_data']})",
             f"- data: {report['data']['description']}",
             f"- split: {report['split']['kind']}-level ({report['split']['note']})",
             f"- generated: {report['settings']['generated']}",
             f"- created {report['created']} by cgan-eval {report['version']} in {report['timing_s']['total']:.0f} s",
             *(["- **--quick: a smoke check; its figures decide nothing**"] if report["settings"]["quick"] else []), "",
             "## Does topping up with generated images beat the free remedies?", "", *study_lines(report),
             "![balance study](balance_study.png)", ""]
    return "\n".join(parts)


def study_summary(report: dict[str, Any]) -> str:
    """What the CLI prints at the end."""
    import textwrap

    lines = ["balance study (held-out real subjects; mean over draws, 95% intervals):", *study_lines(report, compact=True)]
    return "\n".join(line if line.startswith("|") else textwrap.fill(line, 100, break_on_hyphens=False)
                     for line in lines)


def write_plot(path: Path, study: dict[str, Any], names: list[str]) -> Path:
    """Per size (rows): balanced accuracy, the rarest stage's recall and macro-F1 of every arm with 95%
    intervals; free arms in one colour, top-ups in another."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rare = study["stage_order"][0]
    arms = list(study["arms"])
    sizes = study["per_size"]
    fig, axes = plt.subplots(len(sizes), 3, figsize=(10, 3.0 * len(sizes)), squeeze=False)
    for si, (row, summary) in enumerate(zip(axes, sizes)):
        panels = ((lambda a: summary["arms"][a]["balanced_accuracy"], "balanced accuracy"),
                  (lambda a: {"value": summary["arms"][a]["recall"]["value"][rare],
                              "ci": summary["arms"][a]["recall"]["ci"][rare]}, f"{names[rare]} recall"),
                  (lambda a: summary["arms"][a]["macro_f1"], "macro-F1"))
        for ax, (get, what) in zip(row, panels):
            ax.axhline(get(summary["best_free"])["value"], ls="--", lw=0.8, color="grey")
            for x, arm in enumerate(arms):
                v = get(arm)
                lo, hi = (v["ci"] if v["ci"] and all(c is not None and np.isfinite(c) for c in v["ci"])
                          else (v["value"], v["value"]))
                colour = "tab:blue" if arm in study["free"] else "tab:orange"
                ax.errorbar([x], [v["value"]], yerr=[[v["value"] - lo], [hi - v["value"]]], fmt="o", capsize=4,
                            color=colour)
            ax.set_xticks(range(len(arms)), [f"({a})" for a in arms])
            ax.set_ylim(0, 1.02)
            ax.set_ylabel(what)
            ax.grid(axis="y", alpha=0.3)
            ax.set_title(f"{sum(study['sizes'][si]['subjects'])} training subjects", fontsize=9)
    fig.text(0.5, 0.005, "(a) plain  (b) balanced sampler  (c) weighted loss  |  generated top-ups: (d) to the "
             "largest  (e) to half the largest  |  dashed: the best arm without generated images", ha="center",
             fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return Path(path)


def write_study_report(out: Path, report: dict[str, Any]) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "report.json", "markdown": out / "report.md", "plot": out / "balance_study.png"}
    report["files"] = {key: str(p) for key, p in files.items()}
    write_plot(files["plot"], report["balance_study"], report["model"]["stage_names"])
    atomic_write_text(files["markdown"], study_markdown(report))
    atomic_write_text(files["json"], json.dumps(plain(report, json_safe=True), indent=1) + "\n")
    return files
