"""The report: report.json, report.md (tables per judge), samples.png and, with the augmentation
experiment, augment.png; plus the lines the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cgan.runtime.fileio import atomic_path, atomic_write_text

from .metrics import plain

FIGURE_COLUMNS = 8


def _f(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, fmt)


def judge_table(report: dict[str, Any], j: dict[str, Any]) -> str:
    """Per-stage figures of one judge (markdown)."""
    names = report["model"]["stage_names"]
    pix = report["pixel_diversity"]
    lines = ["| stage | held-out acc. (real) | cond. acc. | FD ratio (gen / real) | KID ×1000 gen ± se (real) | "
             "precision gen (real) | recall gen (real) | diversity feat. / pixel (gen/real) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s, name in enumerate(names):
        f, kd, pr = j["frechet"]["per_stage"][s], j["kid"]["per_stage"][s], j["precision_recall"]["per_stage"][s]
        lines.append(
            f"| {s} {name} | {_f(j['held_out']['per_class'][s])} | {_f(j['conditional_accuracy']['per_stage'][s])} | "
            f"{_f(f['ratio'], '.2f')} ({_f(f['generated'], '.2f')} / {_f(f['baseline'], '.2f')}, m={f['m']}) | "
            f"{_f(1000 * kd['generated']['kid'], '.2f')} ± {_f(1000 * kd['generated']['se'], '.2f')} "
            f"({_f(1000 * kd['baseline']['kid'], '.2f')}) | {_f(pr['generated']['precision'], '.2f')} "
            f"({_f(pr['baseline']['precision'], '.2f')}) | {_f(pr['generated']['recall'], '.2f')} "
            f"({_f(pr['baseline']['recall'], '.2f')}) | {_f(j['diversity']['ratio'][s], '.2f')} / {_f(pix['ratio'][s], '.2f')} |")
    pr = j["precision_recall"]
    lines.append(f"| all | {_f(j['held_out']['balanced_accuracy'])} (bal.) | {_f(j['conditional_accuracy']['overall'])} | "
                 f"{_f(j['frechet']['overall']['ratio'], '.2f')} | {_f(1000 * j['kid']['overall'], '.2f')} "
                 f"({_f(1000 * j['kid']['baseline'], '.2f')}) | {_f(pr['precision'], '.2f')} ({_f(pr['baseline_precision'], '.2f')}) | "
                 f"{_f(pr['recall'], '.2f')} ({_f(pr['baseline_recall'], '.2f')}) | |")
    return "\n".join(lines)


def calibration_table(j: dict[str, Any], names: list[str]) -> str:
    lines = ["| real held-out images with | accuracy | FD ratio | KID ×1000 | precision | recall |",
             "| --- | ---: | ---: | ---: | ---: | ---: |",
             f"| (this model) | {_f(j['conditional_accuracy']['overall'])} | {_f(j['frechet']['overall']['ratio'], '.2f')} | "
             f"{_f(1000 * j['kid']['overall'], '.2f')} | {_f(j['precision_recall']['precision'], '.2f')} | "
             f"{_f(j['precision_recall']['recall'], '.2f')} |"]
    for row in j["calibration"]:
        lines.append(f"| {row['perturbation']} | {_f(row['accuracy'])} | {_f(row['fd_ratio'], '.2f')} | "
                     f"{_f(1000 * row['kid'], '.2f')} | {_f(row['precision'], '.2f')} | {_f(row['recall'], '.2f')} |")
    return "\n".join(lines)


def split_lines(report: dict[str, Any]) -> list[str]:
    sp, names = report["split"], report["model"]["stage_names"]
    out = [f"- split: **{sp['kind']}-level** ({sp['note']})"]
    for side in ("fit", "validation", "held_out"):
        subj = sp.get(f"subjects_{side}")
        cells = [f"{n}: {i}" + (f" ({s} subjects)" if subj else "") for n, i, s in
                 zip(names, sp[f"images_{side}"], subj or [None] * len(names))]
        out.append(f"  - {side.replace('_', '-')}: " + ", ".join(cells))
    return out


def bar_lines(report: dict[str, Any]) -> list[str]:
    bar = report["passes_bar"]
    out = [f"verdict: {bar['verdict']} ({bar['reason']})"]
    for c in bar["criteria"]:
        value = f"{c['value']:.0f}" if c["name"] == "n_per_stage" else _f(c["value"])
        out.append(f"- [{'x' if c['met'] else ' '}] {c['name']}: {value} {c['op']} {c['threshold']} "
                   f"({'met' if c['met'] else 'NOT met'}; judge {c['judge']}) — {c['what']}")
    if report["disagreement"]["flag"]:
        out.append(report["disagreement"]["sentence"])
    return out


def augment_table(report: dict[str, Any]) -> str:
    aug, names = report["augment"], report["model"]["stage_names"]
    lines = ["| judge | arm | balanced acc. | " + " | ".join(f"recall {n}" for n in names) + " |",
             "| --- | --- | ---: |" + " ---: |" * len(names)]
    for j in aug["per_judge"]:
        for arm, what in aug["arms"].items():
            a = j["arms"][arm]
            lines.append(f"| {j['judge']} | ({arm}) {what} | {a['balanced_accuracy_mean']:.3f} ± {a['balanced_accuracy_sd']:.3f} | "
                         + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(a["recall_mean"], a["recall_sd"])) + " |")
    return "\n".join(lines)


def rare_stage_line(report: dict[str, Any]) -> str:
    """One sentence: the rarest stage's recall on real held-out subjects, arm (b) against arm (a), per judge."""
    from .verdict import rare_stage_recall

    aug, names = report["augment"], report["model"]["stage_names"]
    rows = rare_stage_recall(aug, aug["settings"]["fit_counts"])
    if not rows:
        return ""
    stage = names[rows[0]["stage"]]
    parts = [f"{r['judge']} {r['recall_a']:.3f} → {r['recall_b']:.3f}" for r in rows]
    return (f"Rare stage ({stage}, fewest real training images): recall on held-out real subjects, real only (a) → "
            f"real + generated (b): {'; '.join(parts)}.")


def summary(report: dict[str, Any]) -> str:
    """What the CLI prints at the end: each judge's table, the verdict, the augmentation table."""
    parts = []
    for j in report["judges"]:
        gate = "passes" if j["competent"] else "FAILS"
        parts += [f"judge {j['judge']} ({gate} its competence gate {j['gate']:.2f}):", judge_table(report, j), ""]
    parts += bar_lines(report)
    if report.get("augment"):
        parts += ["", "augmentation experiment (held-out real subjects, mean ± sd over repeats):", augment_table(report),
                  rare_stage_line(report)]
    return "\n".join(parts)


def markdown(report: dict[str, Any]) -> str:
    names = report["model"]["stage_names"]
    k = len(names)
    parts = ["# cgan-eval report", "", f"_{report['disclaimer']}_", "",
             f"- model: {report['model']['source']} (trained on: {report['model']['training_data']})",
             f"- data: {report['data']['description']}",
             *split_lines(report),
             f"- generated: {report['settings']['n_per_stage']} images per stage, seed {report['settings']['seed']}",
             f"- created {report['created']} by cgan-eval {report['version']} in {report['timing_s']['total']:.0f} s", "",
             "## Verdict", "", *bar_lines(report), ""]
    for j in report["judges"]:
        parts += [f"## Judge {j['judge']}", "",
                  f"Held-out balanced accuracy {j['held_out']['balanced_accuracy']:.3f} (gate {j['gate']:.2f}: "
                  f"{'passed' if j['competent'] else 'FAILED, no verdict from this judge'}); trained {j['epochs']} epochs "
                  f"in {_f(j['train_seconds'], '.0f')} s.", "", judge_table(report, j), "",
                  "Confusion matrix of generated images (rows: intended stage, columns: predicted):", "",
                  "| intended \\ predicted | " + " | ".join(f"{s} {n}" for s, n in enumerate(names)) + " |",
                  "| --- |" + " ---: |" * k]
        parts += [f"| {s} {names[s]} | " + " | ".join(str(v) for v in row) + " |"
                  for s, row in enumerate(j["conditional_accuracy"]["confusion"])]
        if j["calibration"]:
            parts += ["", "Calibration: real held-out images degraded a little, scored like a generator:", "",
                      calibration_table(j, names)]
        parts.append("")
    if report.get("augment"):
        parts += ["## Augmentation experiment", "", augment_table(report), "", rare_stage_line(report), "",
                  "![augmentation](augment.png)", ""]
    markers = report.get("markers")
    if markers:
        parts += ["## Atrophy markers (synthetic set)", "", markers["_note"], "",
                  "| marker | " + " | ".join(f"{s} {n}: generated / real" for s, n in enumerate(names)) + " |",
                  "| --- |" + " --- |" * k]
        for name, row in markers.items():
            if not name.startswith("_"):
                parts.append(f"| {name} | " + " | ".join(
                    f"{row['generated_mean'][s]:.4f} / {row['real_mean'][s]:.4f} (d={row['effect_size'][s]:+.2f})"
                    for s in range(k)) + " |")
        parts.append("")
    parts += ["![generated and real samples per stage](samples.png)", ""]
    return "\n".join(parts)


def write_figure(path: Path, generated: Sequence[np.ndarray], real: Sequence[np.ndarray], names: Sequence[str],
                 columns: int = FIGURE_COLUMNS) -> Path:
    """A PNG with one row per stage: ``columns`` generated images, a gap, then ``columns`` real ones, labelled."""
    from PIL import Image, ImageDraw

    size = max(int(generated[0].shape[-1]), 64)
    label_w, head_h, gap, pad = 150, 22, 16, 2
    cell = size + pad
    canvas = Image.new("L", (label_w + 2 * columns * cell + gap, head_h + len(names) * cell), 255)
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


def write_report(out: Path, report: dict[str, Any], generated: Sequence[np.ndarray],
                 real: Sequence[np.ndarray]) -> dict[str, Path]:
    files = {"json": out / "report.json", "markdown": out / "report.md", "figure": out / "samples.png"}
    if report.get("augment"):
        from .augment import write_plot

        files["augment"] = write_plot(out / "augment.png", report["augment"], report["model"]["stage_names"])
    report["files"] = {key: str(p) for key, p in files.items()}
    write_figure(files["figure"], generated, real, report["model"]["stage_names"])
    atomic_write_text(files["markdown"], markdown(report))
    atomic_write_text(files["json"], json.dumps(plain(report, json_safe=True), indent=1) + "\n")
    return files
