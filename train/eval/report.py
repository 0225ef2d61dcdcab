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


def _ci(ci: Any, fmt: str = ".2f") -> str:
    """`` [lo, hi]`` of a 95% interval, or nothing where there is none."""
    if not ci or any(v is None or not np.isfinite(v) for v in ci):
        return ""
    return f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def _at(d: dict[str, Any], key: str, s: int) -> Any:
    v = d.get(key)
    return v[s] if v else None


def judge_table(report: dict[str, Any], j: dict[str, Any]) -> str:
    """Per-stage figures of one judge (markdown), with 95% intervals in brackets."""
    names = report["model"]["stage_names"]
    pix = report["pixel_diversity"]
    held_ci = (j.get("held_out_ci") or {}).get("per_class", {}).get("ci") or [None] * len(names)
    lines = ["| stage | held-out acc. (real) [95%] | cond. acc. [95%] | FD ratio (gen / real) | KID ×1000 gen ± se (real) | "
             "precision gen [95%] (real) | recall gen [95%] (real) | diversity feat. / pixel (gen/real) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ca, prall = j["conditional_accuracy"], j["precision_recall"]
    for s, name in enumerate(names):
        f, kd, pr = j["frechet"]["per_stage"][s], j["kid"]["per_stage"][s], prall["per_stage"][s]
        lines.append(
            f"| {s} {name} | {_f(j['held_out']['per_class'][s], '.2f')}{_ci(held_ci[s])} | "
            f"{_f(ca['per_stage'][s], '.2f')}{_ci(_at(ca, 'per_stage_ci', s))} | "
            f"{_f(f['ratio'], '.2f')} ({_f(f['generated'], '.2f')} / {_f(f['baseline'], '.2f')}, m={f['m']}) | "
            f"{_f(1000 * kd['generated']['kid'], '.2f')} ± {_f(1000 * kd['generated']['se'], '.2f')} "
            f"({_f(1000 * kd['baseline']['kid'], '.2f')}) | {_f(pr['generated']['precision'], '.2f')}"
            f"{_ci(_at(prall, 'precision_ci', s))} ({_f(pr['baseline']['precision'], '.2f')}) | "
            f"{_f(pr['generated']['recall'], '.2f')}{_ci(_at(prall, 'recall_ci', s))} "
            f"({_f(pr['baseline']['recall'], '.2f')}) | {_f(j['diversity']['ratio'][s], '.2f')} / {_f(pix['ratio'][s], '.2f')} |")
    pr = j["precision_recall"]
    bal_ci = (j.get("held_out_ci") or {}).get("balanced_accuracy_ci")
    lines.append(f"| all | {_f(j['held_out']['balanced_accuracy'])}{_ci(bal_ci, '.3f')} (bal.) | "
                 f"{_f(j['conditional_accuracy']['overall'])}{_ci(ca.get('overall_ci'), '.3f')} | "
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


MARK = {"met": "x", "not met": " ", "inconclusive": "?", "–": "–"}


def bar_lines(report: dict[str, Any]) -> list[str]:
    bar = report["passes_bar"]
    out = [f"verdict: {bar['verdict']} ({bar['reason']})"]
    for c in bar["criteria"]:
        status = c.get("status", "met" if c["met"] else "not met")
        value = f"{c['value']:.0f}" if c["name"] == "n_per_stage" else _f(c["value"])
        shown = {"met": "met", "not met": "NOT met", "inconclusive": "INCONCLUSIVE: the decision flips inside the interval",
                 "–": "–: decides nothing, a judge is below its gate" if bar["verdict"] == "no verdict" and "gate" in bar["reason"]
                 else "–: decides nothing"}[status]
        out.append(f"- [{MARK[status]}] {c['name']}: {value}{_ci(c.get('ci'), '.3f')} {c['op']} {c['threshold']} "
                   f"({shown}; judge {c['judge']}) — {c['what']}")
    if report["disagreement"]["flag"]:
        out.append(report["disagreement"]["sentence"])
    return out


def severity_lines(report: dict[str, Any]) -> list[str]:
    sev, names = report.get("severity"), report["model"]["stage_names"]
    if not sev:
        return []
    e = sev["real_error"]
    out = [f"Estimator: {sev['estimator']}. On {e['n']:,} real held-out images: RMSE {e['rmse']:.2f}, MAE {e['mae']:.2f}, "
           f"bias {e['bias']:+.2f} stage spacings (r = {e['correlation']:.2f}); per stage, the median estimate sits "
           + ", ".join(f"{v:+.2f}" for v in e["median_error_per_stage"]) + " stage spacings from the true median. "
           f"Units: {sev['units']} ({sev['spacing']:.3f} severity).", "",
           "| stage | generated median | real median | median offset (spacings) | Wasserstein-1 (spacings) |",
           "| --- | ---: | ---: | ---: | ---: |"]
    for s, name in enumerate(names):
        out.append(f"| {s} {name} | {sev['generated_median'][s]:.3f} | {sev['real_median'][s]:.3f} | "
                   f"{sev['median_offset'][s]:+.2f} | {sev['wasserstein'][s]:.2f} |")
    out += ["", f"Generated stages in order of severity: **{'yes' if sev['in_order'] else 'NO'}** "
                f"(real held-out stages: {'yes' if sev['real_in_order'] else 'no'})."]
    return out


def artefact_lines(report: dict[str, Any]) -> list[str]:
    art, names = report.get("artefacts"), report["model"]["stage_names"]
    if not art:
        return []
    rows = art["per_stage"]
    out = [art["what"] + ".", "",
           "| images | " + " | ".join(f"{s} {n}" for s, n in enumerate(names)) + " | all |",
           "| --- |" + " ---: |" * (len(names) + 1)]
    for key, what in (("generated", "generated"), ("real_held_out", "real held-out"), ("corrupted_real", "corrupted real (calibration)")):
        out.append(f"| {what} | " + " | ".join(f"{v:.1%}" for v in rows[key]) + f" | {art['rate'][key]:.1%} |")
    kinds = art["by_kind_generated"]
    out += ["", "Generated images flagged by kind (share, per stage): " + "; ".join(
        f"{key} " + ", ".join(f"{v:.1%}" for v in vals) for key, vals in kinds.items()) + "."]
    return out


CONSOLE_COLUMNS = 100  # the printed summary fits a terminal this wide; report.md holds the full tables


def console_table(report: dict[str, Any], j: dict[str, Any]) -> str:
    """One judge's per-stage figures as the console shows them: aligned columns, no intervals (report.md has them)."""
    names = report["model"]["stage_names"]
    ca, pr = j["conditional_accuracy"], j["precision_recall"]
    width = max(len(f"{s} {n}") for s, n in enumerate(names + ["all"]))
    head = ("held-out", "cond.acc", "FD ratio", "KID x1000", "precision", "recall", "diversity")
    lines = [f"  {'stage':<{width}}  " + "  ".join(f"{h:>9}" for h in head)]
    for s, name in enumerate(names):
        cells = (j["held_out"]["per_class"][s], ca["per_stage"][s], j["frechet"]["per_stage"][s]["ratio"],
                 1000 * j["kid"]["per_stage"][s]["generated"]["kid"], pr["per_stage"][s]["generated"]["precision"],
                 pr["per_stage"][s]["generated"]["recall"], j["diversity"]["ratio"][s])
        lines.append(f"  {f'{s} {name}':<{width}}  " + "  ".join(f"{_f(v, '.2f'):>9}" for v in cells))
    cells = (j["held_out"]["balanced_accuracy"], ca["overall"], j["frechet"]["overall"]["ratio"], 1000 * j["kid"]["overall"],
             pr["precision"], pr["recall"], None)
    lines.append((f"  {'all':<{width}}  " + "  ".join(f"{_f(v, '.2f') if v is not None else '':>9}" for v in cells)).rstrip())
    return "\n".join(lines)


def plain_lines(report: dict[str, Any]) -> list[str]:
    """What the figures mean, in a few sentences: whether the judges could judge, what they read, the verdict."""
    judges, bar = report["judges"], report["passes_bar"]
    out = ["in short:"]
    failed = [j for j in judges if not j["competent"]]
    if failed and len(failed) == len(judges):
        accs = " and ".join(f"{j['held_out']['balanced_accuracy']:.2f}" for j in judges)
        out.append(f"- No judge passed its competence gate: on the held-out real images they told the stages apart "
                   f"with balanced accuracy {accs}, below the gate of {judges[0]['gate']:.2f}, so their figures say "
                   "little about the generator. That is the judges' shortfall, not the images': they need more real "
                   "subjects or more training (cgan-eval without --quick, or with a larger --data).")
    elif failed:
        out.append(f"- Judge {', '.join(j['judge'] for j in failed)} is below its competence gate; only the other counts.")
    for j in judges:
        if j["competent"]:
            out.append(f"- Judge {j['judge']} reads {j['conditional_accuracy']['overall']:.0%} of the generated images as "
                       f"the stage they were asked for, and {j['held_out']['balanced_accuracy']:.0%} of real held-out "
                       f"images right (balanced); their Fréchet distance is {j['frechet']['overall']['ratio']:.2f}x "
                       "that between two real samples (1 is as close as real images are to each other).")
    out.append(f"- Verdict: {bar['verdict']} ({bar['reason']}).")
    if report.get("settings", {}).get("quick"):
        out.append("- --quick is a smoke check of the chain: for a measurement, run cgan-eval with its defaults.")
    out.append("- Every figure with its 95% interval, and how to read it: report.md beside this run, docs/evaluation.md.")
    return out


def _fit(lines: list[str], width: int = CONSOLE_COLUMNS) -> list[str]:
    """Prose lines wrapped to ``width`` (a list item's continuation indented); table rows left as they are."""
    import textwrap

    out = []
    for line in lines:
        for part in line.split("\n"):
            if len(part) <= width or part.lstrip().startswith("|") or part.startswith("  "):
                out.append(part)
            else:
                bullet = part.startswith(("- ", "verdict"))
                out.extend(textwrap.wrap(part, width, subsequent_indent="  " if bullet else "", break_on_hyphens=False))
    return out


def summary(report: dict[str, Any]) -> str:
    """What the CLI prints at the end: each judge's table, the verdict, the severity check, the artefact
    rate, the learning curve, then what it means in plain words; prose wrapped to a terminal's width."""
    names = report["model"]["stage_names"]
    parts = []
    for j in report["judges"]:
        gate = "passes" if j["competent"] else "FAILS"
        parts += [f"judge {j['judge']} ({gate} its competence gate {j['gate']:.2f}):", console_table(report, j), ""]
    parts += bar_lines(report)
    if report.get("severity"):
        parts += ["", "severity check (no judge; synthetic ground truth):", *severity_lines(report)]
    if report.get("artefacts"):
        parts += ["", "implausible anatomy:", *artefact_lines(report)]
    if report.get("augment"):
        from .augment import curve_sentence, curve_table

        parts += ["", "learning curve (held-out real subjects, mean ± sd over repeats):",
                  curve_table(report["augment"], names), curve_sentence(report["augment"], names)]
    parts += ["", *plain_lines(report)]
    return "\n".join(_fit(parts))


def markdown(report: dict[str, Any]) -> str:
    names = report["model"]["stage_names"]
    k = len(names)
    parts = ["# cgan-eval report", "", f"_{report['disclaimer']}_", "",
             f"- model: {report['model']['source']} (trained on: {report['model']['training_data']})",
             f"- data: {report['data']['description']}" + (f" ({report['data']['note']})" if report['data'].get('note') else ""),
             *split_lines(report),
             f"- generated: {report['settings']['n_per_stage']} images per stage, seed {report['settings']['seed']}",
             f"- created {report['created']} by cgan-eval {report['version']} in {report['timing_s']['total']:.0f} s", "",
             f"- intervals: {report['settings']['intervals']}",
             *(["- **--quick: a smoke check, never a verdict**"] if report["settings"].get("quick") else []), "",
             "## Verdict", "", *bar_lines(report), ""]
    for j in report["judges"]:
        parts += [f"## Judge {j['judge']}", "",
                  f"Held-out balanced accuracy {j['held_out']['balanced_accuracy']:.3f}"
                  f"{_ci((j.get('held_out_ci') or {}).get('balanced_accuracy_ci'), '.3f')} (gate {j['gate']:.2f}: "
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
    if report.get("severity"):
        parts += ["## Severity against the ground truth (synthetic set, no judge)", "", *severity_lines(report), ""]
    if report.get("artefacts"):
        parts += ["## Implausible anatomy", "", *artefact_lines(report), ""]
        if (report.get("files") or {}).get("artefacts"):
            parts += ["Flagged generated images (up to 16):", "", "![flagged images](artefacts.png)", ""]
    if report.get("augment"):
        from .augment import curve_sentence, curve_table

        parts += ["## Learning curve: real only, real + generated, generated only", "",
                  curve_table(report["augment"], names), "", curve_sentence(report["augment"], names), "",
                  "![learning curve](augment.png)", ""]
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


def figure_font_size(width: int) -> int:
    """Label size for a figure ``width`` pixels wide: readable when the figure is shown at a page's width
    (~800 px, where a 2,246-px figure is drawn at a third of its size), never below 14 px."""
    return max(14, width // 55)


def write_figure(path: Path, generated: Sequence[np.ndarray], real: Sequence[np.ndarray], names: Sequence[str],
                 columns: int = FIGURE_COLUMNS) -> Path:
    """A PNG with one row per stage: ``columns`` generated images, a gap, then ``columns`` real ones, labelled
    in a font that stays readable when the figure is scaled down to a page's width."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(int(generated[0].shape[-1]), 64)
    gap, pad = 16, 2
    cell = size + pad
    images_w = 2 * columns * cell + gap
    font = ImageFont.load_default(size=figure_font_size(images_w))
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    labels = [f"{s}: {name}"[:24] for s, name in enumerate(names)]
    text_h = measure.textbbox((0, 0), "Ag", font=font)[3]
    label_w = max(measure.textbbox((0, 0), t, font=font)[2] for t in labels) + 16
    head_h = text_h + 14
    canvas = Image.new("L", (label_w + images_w, head_h + len(names) * cell), 255)
    draw = ImageDraw.Draw(canvas)
    draw.text((label_w, 5), "generated", fill=0, font=font)
    draw.text((label_w + columns * cell + gap, 5), "real (held-out)", fill=0, font=font)
    for s, label in enumerate(labels):
        y = head_h + s * cell
        draw.text((6, y + (size - text_h) // 2), label, fill=0, font=font)
        for row, x0 in ((generated[s], label_w), (real[s], label_w + columns * cell + gap)):
            for j, img in enumerate(np.asarray(row)[:columns]):
                tile = Image.fromarray(np.ascontiguousarray(img), mode="L")
                if tile.size[0] != size:
                    tile = tile.resize((size, size), Image.Resampling.NEAREST)
                canvas.paste(tile, (x0 + j * cell, y))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)


def write_flagged(path: Path, images: Sequence[np.ndarray], columns: int = FIGURE_COLUMNS) -> Path:
    """The flagged generated images, ``columns`` to a row."""
    from PIL import Image

    size = max(int(images[0].shape[-1]), 64)
    rows = -(-len(images) // columns)
    canvas = Image.new("L", (columns * (size + 2), rows * (size + 2)), 255)
    for i, img in enumerate(images):
        tile = Image.fromarray(np.ascontiguousarray(img), mode="L").resize((size, size), Image.Resampling.NEAREST)
        canvas.paste(tile, ((i % columns) * (size + 2), (i // columns) * (size + 2)))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)


def write_report(out: Path, report: dict[str, Any], generated: Sequence[np.ndarray],
                 real: Sequence[np.ndarray], flagged: Sequence[np.ndarray] | None = None) -> dict[str, Path]:
    files = {"json": out / "report.json", "markdown": out / "report.md", "figure": out / "samples.png"}
    if report.get("augment"):
        from .augment import write_plot

        files["augment"] = write_plot(out / "augment.png", report["augment"], report["model"]["stage_names"])
    if flagged:
        files["artefacts"] = write_flagged(out / "artefacts.png", flagged)
    report["files"] = {key: str(p) for key, p in files.items()}
    write_figure(files["figure"], generated, real, report["model"]["stage_names"])
    atomic_write_text(files["markdown"], markdown(report))
    atomic_write_text(files["json"], json.dumps(plain(report, json_safe=True), indent=1) + "\n")
    return files
