"""Turn pytest-benchmark's JSON into one markdown report of ratios against torch eager fp32.

    pytest --benchmark-only                      # also writes .benchmarks/latest.json
    python -m bench.report [--json FILE] [--out bench/RESULTS.md] [--no-write]

The report (machine, versions, date, throughput ratios per batch size, goals met or not, parity,
latency, cold start, end to end, where the time goes, and any other benchmark such as training)
is printed and written to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from bench._report_peers import isa_line, peers_goals, peers_section

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / ".benchmarks" / "latest.json"
DEFAULT_OUT = REPO / "bench" / "RESULTS.md"
EAGER = "eager fp32"

# The goals the runtime and the trainer are held to; each is judged from the benchmarks of one run.
GOAL_ORT_RATIO_B64 = 1.2
GOAL_ONE_IMAGE_MS = 3.0
GOAL_COLD_START_S = 0.35
GOAL_COLD_START_RATIO = 0.15
GOAL_E2E_SHARE = 0.7
GOAL_INT8_MB = 4.5
GOAL_INT8_PSNR_DB = 40.0
GOAL_INT8_MAE_GREY = 1.5
GOAL_INT8_MAX_GREY = 16  # the int8 worst case: largest pixel difference and its 99.9th percentile
GOAL_INT8_P999_GREY = 4
GOAL_TRAIN_VS_PRESENT = 1.5  # cgan-train's CPU step against the step before it
GOAL_TRAIN_VS_ORIGINAL = 2.0  # and against the original notebook's loop


def _median(b: dict) -> float:
    return float(b["stats"]["median"])


def _fmt_ips(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _fmt_s(v: float) -> str:
    return f"{v * 1e3:.2f} ms" if v < 1 else f"{v:.2f} s"


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**not met**")


def _header(data: dict) -> list[str]:
    mi = data.get("machine_info", {})
    c = mi.get("cgan", {})
    cpu = c.get("cpu_model") or mi.get("cpu", {}).get("brand_raw") or mi.get("processor", "?")
    cores = c.get("usable_cores") or c.get("logical_cores") or "?"
    versions = " · ".join(
        f"{name} {c[key]}" for name, key in
        (("torch", "torch"), ("onnxruntime", "onnxruntime"), ("openvino", "openvino"), ("numpy", "numpy"), ("Python", "python_version"))
        if c.get(key)
    )
    gpu = f" · GPU {c['gpu']}" if c.get("gpu") else ""
    date = c.get("date") or data.get("datetime", "?")
    commit = data.get("commit_info", {}).get("id", "")
    lines = [
        "# Benchmark results",
        "",
        f"- Machine: {cpu}, {cores} cores ({mi.get('system', '')} {mi.get('release', '')}){gpu}",
        *([isa_line(mi)] if isa_line(mi) else []),
        f"- Versions: {versions}",
        f"- Date: {date}" + (f" · commit {commit[:10]}" + (" (dirty)" if data.get('commit_info', {}).get('dirty') else "") if commit else ""),
        "- Command: `pytest --benchmark-only` then `python -m bench.report` (see bench/README.md).",
        "- Images/s = images per call / median call time. Ratios (×) are against torch eager fp32 "
        "(the original's inference path) at the same batch size, measured side by side in the same run.",
        "",
    ]
    return lines


def _throughput_table(benches: list[dict], device: str) -> tuple[list[str], dict]:
    rows: dict[str, dict[int, float]] = defaultdict(dict)
    notes: dict[str, str] = {}
    for b in benches:
        e = b["extra_info"]
        if e.get("kind") != "throughput" or e.get("device") != device:
            continue
        rows[e["variant"]][int(e["batch"])] = float(e.get("images_per_s") or e["images"] / _median(b))
        if e.get("note"):
            notes[e["variant"]] = e["note"]
    if not rows:
        return [], {}
    batches = sorted({bs for r in rows.values() for bs in r})
    base_name = EAGER if device == "cpu" else f"{device} {EAGER}"
    base = rows.get(base_name, {})

    def order(name: str) -> tuple:
        return (name != base_name, name.startswith("ORT"), name)

    lines = [
        f"## {device.upper()} throughput (images/s, × torch eager fp32)",
        "",
        "| variant | " + " | ".join(f"batch {bs}" for bs in batches) + " |",
        "| --- | " + " | ".join("---:" for _ in batches) + " |",
    ]
    for name in sorted(rows, key=order):
        cells = []
        for bs in batches:
            v = rows[name].get(bs)
            if v is None:
                cells.append("—")
            elif bs in base:
                cells.append(f"{_fmt_ips(v)} ({v / base[bs]:.2f}×)")
            else:
                cells.append(_fmt_ips(v))
        label = name + (" (original path)" if name == base_name else "")
        if name in notes:
            label += " ¹" if "pipe" in notes[name] else f" ({notes[name]})"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if any("pipe" in n for n in notes.values()):
        lines += ["", "¹ compiled in a worker process of its own; timed through a pipe round trip (tens of µs)."]
    lines.append("")
    return lines, rows


def _by_kind(benches: list[dict], kind: str) -> list[dict]:
    return [b for b in benches if b["extra_info"].get("kind") == kind]


def _is_training(b: dict) -> bool:
    return "test_bench_train" in b.get("fullname", "")


def build_report(data: dict) -> str:
    everything = data.get("benchmarks", [])
    benches = [b for b in everything if not _is_training(b)]
    training = [b for b in everything if _is_training(b)]
    cpu_lines, cpu_rows = _throughput_table(benches, "cpu")
    cuda_lines, _ = _throughput_table(benches, "cuda")
    lines = _header(data)
    lines += _goals_table(_goals(benches, training, cpu_rows))
    lines += peers_section(benches)
    lines += cpu_lines + cuda_lines
    lines += _ratio_section(benches)
    lines += _edge_sections(benches)
    lines += _parity_section(benches)
    lines += _timed_section(benches)
    lines += _profile_section(benches)
    lines += _train_step_section(training)
    lines += _other_sections(benches, training)
    return "\n".join(lines).rstrip() + "\n"


def _goals(benches: list[dict], training: list[dict], cpu_rows: dict) -> list[tuple[str, str, bool | None]]:
    """Every goal with what was measured against it and whether it was met (None: not measurable)."""
    goals: list[tuple[str, str, bool | None]] = []
    eager64 = cpu_rows.get(EAGER, {}).get(64)
    for variant in ("ORT fp32, runtime session", "ORT fp32, default session"):
        ort64 = cpu_rows.get(variant, {}).get(64)
        if ort64 and eager64:
            r = ort64 / eager64
            goals.append((f"{variant} ≥ {GOAL_ORT_RATIO_B64}× torch eager fp32, batch 64",
                          f"{r:.2f}× ({_fmt_ips(ort64)} vs {_fmt_ips(eager64)} images/s)", r >= GOAL_ORT_RATIO_B64))
    for b in _by_kind(benches, "ratio"):
        e = b["extra_info"]
        if e.get("batch") == 64:
            r = e["ort_over_torch"]
            goals.append(("same, torch and ORT (runtime session) interleaved round by round, batch 64",
                          f"{r:.2f}× ({_fmt_ips(e['ort_images_per_s'])} vs {_fmt_ips(e['torch_images_per_s'])} images/s)",
                          r >= GOAL_ORT_RATIO_B64))
    for b in _by_kind(benches, "latency"):
        e = b["extra_info"]
        ms = _median(b) * 1e3
        goals.append((f"one image ≤ {GOAL_ONE_IMAGE_MS:g} ms: {e['variant']}", f"{ms:.2f} ms (min {b['stats']['min'] * 1e3:.2f} ms)",
                      ms <= GOAL_ONE_IMAGE_MS))
    cold = {b["extra_info"]["variant"]: b for b in _by_kind(benches, "cold_start")}
    run_b = next((b for v, b in cold.items() if v.startswith("cgan-run")), None)
    torch_b = next((b for v, b in cold.items() if v.startswith("torch")), None)
    if run_b:
        goals.append((f"cold start to first PNG ≤ {GOAL_COLD_START_S:g} s: {run_b['extra_info']['variant']}",
                      _fmt_s(_median(run_b)), _median(run_b) <= GOAL_COLD_START_S))
    if run_b and torch_b:
        r = _median(run_b) / _median(torch_b)
        goals.append((f"cold start ≤ {GOAL_COLD_START_RATIO:g}× the torch script",
                      f"{r:.2f}× ({_fmt_s(_median(run_b))} vs {_fmt_s(_median(torch_b))})", r <= GOAL_COLD_START_RATIO))
    for b in _by_kind(benches, "e2e"):
        e = b["extra_info"]
        share = e.get("share_of_bare_session")
        goals.append((f"`{e['variant']}` ≥ {GOAL_E2E_SHARE:.0%} of the bare session at batch {e.get('batch')}",
                      f"{share:.0%} ({_fmt_ips(e['images_per_s'])} vs {_fmt_ips(e['bare_images_per_s'])} images/s)" if share else "?",
                      None if share is None else share >= GOAL_E2E_SHARE))
    for b in _by_kind(benches, "balance"):
        e = b["extra_info"]
        r = e["balance_over_n"]
        goals.append((f"`cgan-run --balance` ≤ {e['goal_ratio']:g}× `cgan-run --n` for the same {e['images']:,} PNGs, whole process, interleaved",
                      f"{r:.3f}× ({_fmt_s(e['balance_s'])} vs {_fmt_s(e['n_s'])})", r <= e["goal_ratio"]))
    goals += _edge_goals(benches)
    goals += peers_goals(benches)
    for b in _by_kind(training, "train_ratio"):
        e = b["extra_info"]
        for key, name, goal in (("present", "the present step", GOAL_TRAIN_VS_PRESENT), ("original", "the original loop", GOAL_TRAIN_VS_ORIGINAL)):
            work = f", same arithmetic speed would give {e['work_ratio_' + key]:.2f}×" if "work_ratio_" + key in e else ""
            goals.append((f"training step ≥ {goal:g}× {name}, CPU fp32 eager, batch {e['batch']}, interleaved",
                          f"{e['speedup_vs_' + key]:.2f}×{work}", e["speedup_vs_" + key] >= goal))
    return goals


def _goals_table(goals: list[tuple[str, str, bool | None]]) -> list[str]:
    lines: list[str] = []
    if goals:
        lines += ["## Goals of this round", "", "| goal | measured | |", "| --- | --- | --- |"]
        lines += [f"| {g} | {m} | {_met(ok)} |" for g, m, ok in goals]
        lines.append("")
    return lines


def _ratio_section(benches: list[dict]) -> list[str]:
    """Interleaved torch / ORT ratios, call by call."""
    lines: list[str] = []
    ratios = _by_kind(benches, "ratio")
    if ratios:
        lines += ["## Interleaved: torch eager and ORT alternating call by call (the robust ratios)", "",
                  "| batch | torch eager fp32 | ORT default session | ORT runtime session | default / torch | runtime / torch | rounds |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for b in sorted(ratios, key=lambda b: b["extra_info"]["batch"]):
            e = b["extra_info"]
            d_ips, d_r = e.get("ort_default_images_per_s"), e.get("ort_default_over_torch")
            lines.append(f"| {e['batch']} | {_fmt_ips(e['torch_images_per_s'])} | {_fmt_ips(d_ips) if d_ips else '—'} | "
                         f"{_fmt_ips(e['ort_images_per_s'])} | {f'{d_r:.2f}×' if d_r else '—'} | {e['ort_over_torch']:.2f}× | "
                         f"{e.get('rounds_each', e.get('pairs'))} |")
        lines.append("")
    return lines


def _parity_section(benches: list[dict]) -> list[str]:
    """ONNX Runtime against torch, every stage."""
    lines: list[str] = []
    parity = _by_kind(benches, "parity")
    if parity:
        lines += [
            "## Parity: ONNX Runtime (CPU) against torch eager fp32, every stage",
            "",
            "| precision | batch | max abs err | PSNR over 2 | PSNR over ref. range | ref. range (min) | max uint8 diff | tolerance (max abs err) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for b in sorted(parity, key=lambda b: (b["extra_info"]["precision"] != "fp32", b["extra_info"]["batch"])):
            e = b["extra_info"]
            lines.append(
                f"| {e['precision']} | {e['batch']} | {e['max_abs_err']:.2e} | {e['psnr_range2_db']:.1f} dB | "
                f"{e['psnr_ref_range_db']:.1f} dB | {e['min_ref_range']:.2f} | {e['max_uint8_diff']} | {e['tolerances']['max_abs_err']:g} |"
            )
        lines.append("")
    return lines


def _timed_section(benches: list[dict]) -> list[str]:
    """Latency, cold start and end-to-end timings."""
    lines: list[str] = []
    timed = _by_kind(benches, "latency") + _by_kind(benches, "cold_start") + _by_kind(benches, "e2e")
    if timed:
        lines += ["## Latency, cold start, end to end", "", "| benchmark | median | min | rounds | notes |",
                  "| --- | ---: | ---: | ---: | --- |"]
        for b in timed:
            e = b["extra_info"]
            lines.append(f"| {e['variant']} | {_fmt_s(_median(b))} | {_fmt_s(b['stats']['min'])} | {b['stats']['rounds']} | {e.get('note', '')} |")
        lines.append("")
    return lines


def _profile_section(benches: list[dict]) -> list[str]:
    """Where the time of a profiled run goes."""
    lines: list[str] = []
    profiles = _by_kind(benches, "profile")
    if profiles:
        lines += ["## Where the time goes", ""]
        for b in profiles:
            e = b["extra_info"]
            lines.append(f"**{e['variant']}**")
            lines.append("")
            for key, value in e.items():
                if key in ("kind", "variant", "images", "images_per_s", "device", "engine", "batch"):
                    continue
                if isinstance(value, dict):
                    items = list(value.items())[:8]
                    shown = ", ".join(f"{k} {v:.0%}" if isinstance(v, float) and v <= 1 and "share" in key else f"{k} {v}" for k, v in items)
                    lines.append(f"- {key.replace('_', ' ')}: {shown}")
                else:
                    lines.append(f"- {key.replace('_', ' ')}: {value}")
            lines.append("")
    return lines


def _train_step_section(training: list[dict]) -> list[str]:
    """The training step's speed ratios against their goal, and the work behind them."""
    lines: list[str] = []
    ratios = _by_kind(training, "train_ratio")
    if ratios:
        lines += ["## Training step on CPU: speed and work (original loop, present step, cgan-train; interleaved step by step)", "",
                  f"Goal: cgan-train ≥ {GOAL_TRAIN_VS_PRESENT:g}× the present step and ≥ {GOAL_TRAIN_VS_ORIGINAL:g}× the original loop, "
                  "fp32 eager. GFLOP per image as torch counts them (FlopCounterMode: forward and backward convolutions "
                  "and matrix products, 2 flops per multiply-add); the work ratio is what a loop could gain at equal "
                  "arithmetic speed.", "",
                  "| batch | loop | GFLOP / image | images/s | GFLOP/s | of AVX-512 peak | speedup of cgan-train | work ratio | goal |",
                  "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for b in ratios:
            e = b["extra_info"]
            if "cgan_train_gflop_per_image" not in e:
                continue
            for key, name, goal in (("original", "original loop", GOAL_TRAIN_VS_ORIGINAL), ("present", "present step", GOAL_TRAIN_VS_PRESENT),
                                    ("cgan_train", "cgan-train", None)):
                frac = e.get(f"{key}_fraction_of_avx512_peak")
                cells = [str(e["batch"]), name, f"{e[key + '_gflop_per_image']:.2f}", f"{e[key + '_images_per_s']:.1f}",
                         f"{e[key + '_gflops']:.0f}", "—" if frac is None else f"{frac:.0%}"]
                if goal is None:
                    cells += ["", "", ""]
                else:
                    speed = e[f"speedup_vs_{key}"]
                    cells += [f"{speed:.2f}×", f"{e['work_ratio_' + key]:.2f}×", _met(speed >= goal)]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _other_sections(benches: list[dict], training: list[dict]) -> list[str]:
    """Training throughput, and any benchmark no section above shows."""
    lines: list[str] = []
    known = {"throughput", "ratio", "parity", "latency", "cold_start", "e2e", "profile", "peers", *EDGE_KINDS}
    for title, group in (("Training throughput (bench/test_bench_train.py)", training),
                         ("Other benchmarks", [b for b in benches if b["extra_info"].get("kind") not in known])):
        if not group:
            continue
        lines += [f"## {title}", "", "| benchmark | median | details |", "| --- | ---: | --- |"]
        for b in group:
            details = ", ".join(f"{k}={v}" for k, v in b["extra_info"].items() if not isinstance(v, (dict, list)))
            lines.append(f"| {b['fullname'].split('::')[-1]} | {_fmt_s(_median(b))} | {details} |")
        lines.append("")
    return lines


EDGE_KINDS = ("int8_quality", "int8_speed", "one_image", "one_image_mode", "cold_side_by_side")  # bench/test_bench_edge.py


def _edge_goals(benches: list[dict]) -> list[tuple[str, str, bool | None]]:
    goals = []
    for b in _by_kind(benches, "int8_quality"):
        e = b["extra_info"]
        goals.append((f"int8 ≥ {GOAL_INT8_PSNR_DB:g} dB and ≤ {GOAL_INT8_MAE_GREY:g} grey levels against fp32 on every stage, ≤ {GOAL_INT8_MB:g} MB",
                      f"{e['psnr_db_worst']:.2f} dB, {e['mae_grey_worst']:.2f} levels (worst stage), {e['int8_mb']:.2f} MB (fp32 {e['fp32_mb']:.2f} MB)",
                      e["psnr_db_worst"] >= GOAL_INT8_PSNR_DB and e["mae_grey_worst"] <= GOAL_INT8_MAE_GREY and e["int8_mb"] <= GOAL_INT8_MB))
        if "max_grey_worst" in e:
            goals.append((f"int8 ({e.get('mode', '?')} mode) worst pixel ≤ {GOAL_INT8_MAX_GREY} and 99.9th percentile ≤ {GOAL_INT8_P999_GREY} grey levels, "
                          f"fresh images, this {e.get('isa', '?')} CPU",
                          f"{e['max_grey_worst']} and {e['p999_grey_worst']} grey levels (worst stage)",
                          e["max_grey_worst"] <= GOAL_INT8_MAX_GREY and e["p999_grey_worst"] <= GOAL_INT8_P999_GREY))
    for b in _by_kind(benches, "one_image"):
        e = b["extra_info"]
        ms = e["median_ms"]
        for name in ("fp32 runtime session", "int8 runtime session"):
            if name in ms:
                # 12 settings alternate call by call, each after the others pushed its weights out of the
                # caches: it ranks the settings; the goal's case (one model, call after call) is the row below
                goals.append((f"one image, {len(ms)} session settings interleaved call by call (cold caches; ranks the settings): {name}",
                              f"{ms[name]:.2f} ms", None))
    for b in _by_kind(benches, "one_image_mode"):
        ms = b["extra_info"]["median_ms"]
        for name in ("fp32 latency", "int8 latency"):
            if name in ms:
                goals.append((f"one image ≤ {GOAL_ONE_IMAGE_MS:g} ms, generate() in turns of 50 calls: {name} (`load(latency=True)`)",
                              f"{ms[name]:.2f} ms (default session {ms[name.replace('latency', 'default')]:.2f} ms)",
                              ms[name] <= GOAL_ONE_IMAGE_MS))
    for b in _by_kind(benches, "cold_side_by_side"):
        e = b["extra_info"]
        sec = e["seconds"]
        for name, ratio in (("cgan-run fp32", e["fp32_over_torch"]), ("cgan-run int8", e["int8_over_torch"])):
            goals.append((f"cold start ≤ {GOAL_COLD_START_S:g} s and ≤ {GOAL_COLD_START_RATIO:g}× the torch script, interleaved: {name}",
                          f"{_fmt_s(sec[name])}, {ratio:.3f}× ({_fmt_s(sec['torch script'])} torch)",
                          sec[name] <= GOAL_COLD_START_S and ratio <= GOAL_COLD_START_RATIO))
    return goals


def _edge_sections(benches: list[dict]) -> list[str]:
    lines: list[str] = []
    speed = sorted(_by_kind(benches, "int8_speed"), key=lambda b: b["extra_info"]["batch"])
    quality = _by_kind(benches, "int8_quality")
    if speed or quality:
        lines += ["## int8 (cgan-export --int8) against ORT fp32 and torch eager fp32, interleaved call by call", "",
                  "| batch | torch eager fp32 | ORT fp32 | ORT int8 | int8 / fp32 | int8 / torch |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for b in speed:
            e = b["extra_info"]
            lines.append(f"| {e['batch']} | {_fmt_ips(e['torch_images_per_s'])} | {_fmt_ips(e['fp32_images_per_s'])} | "
                         f"{_fmt_ips(e['int8_images_per_s'])} | {e['int8_over_fp32']:.2f}× | {e['int8_over_torch']:.2f}× |")
        for b in quality:
            e = b["extra_info"]
            lines += ["", f"Size {e['int8_mb']:.2f} MB (fp32 {e['fp32_mb']:.2f} MB); against fp32 on {e['variant'].split(', ')[-1]}: "
                      f"PSNR per stage {', '.join(map(str, e['psnr_db_per_stage']))} dB, MAE per stage "
                      f"{', '.join(map(str, e['mae_grey_per_stage']))} grey levels; layers kept in fp32: {', '.join(e['fp32_layers']) or 'none'}."]
        lines.append("")
    for b in _by_kind(benches, "one_image"):
        e = b["extra_info"]
        peak = e["peak"]
        lines += [f"## One image (batch 1), median of interleaved calls; {e['gflop_per_image']:.3f} GFLOP per image", "",
                  "| session | median | GFLOP/s | of fp32 peak (AVX2) |", "| --- | ---: | ---: | ---: |"]
        for name, ms in e["median_ms"].items():
            rate = e["gflop_per_image"] / (ms / 1e3)
            lines.append(f"| {name} | {ms:.2f} ms | {rate:.1f} | {rate / peak['avx2_gflops']:.0%} |")
        extra = f"; AVX-512 would double it to {peak['avx512_gflops']} GFLOP/s" if peak.get("avx512_gflops") else ""
        lines += ["", f"fp32 peak: {peak['clock_ghz']} GHz × 2 FMA units × 8 fp32 lanes × 2 × {peak['cores']} cores = "
                  f"{peak['avx2_gflops']} GFLOP/s{extra}. int8 rows are the same arithmetic per second, for comparison.", ""]
    for b in _by_kind(benches, "one_image_mode"):
        e = b["extra_info"]
        peak = e["peak"]
        lines += ["## One image, one after another: the default session against `load(latency=True)` (generate(), turns of 50 calls)", "",
                  "| model, session | median | GFLOP/s | of fp32 peak (AVX2) | of fp32 peak (AVX-512) |", "| --- | ---: | ---: | ---: | ---: |"]
        for name, ms in e["median_ms"].items():
            rate = e["gflop_per_image"] / (ms / 1e3)
            avx512 = f"{rate / peak['avx512_gflops']:.0%}" if peak.get("avx512_gflops") else "—"
            lines.append(f"| {name} | {ms:.2f} ms | {rate:.1f} | {rate / peak['avx2_gflops']:.0%} | {avx512} |")
        gains = ", ".join(f"{k} {v:.2f}×" for k, v in e["latency_over_default"].items())
        lines += ["", f"latency mode / default: {gains}.", ""]
    for b in _by_kind(benches, "cold_side_by_side"):
        e = b["extra_info"]
        lines += ["## Cold start side by side (fresh process to PNG, interleaved round by round)", "",
                  "| program | median | × torch script |", "| --- | ---: | ---: |"]
        torch_s = e["seconds"]["torch script"]
        for name, sec in e["seconds"].items():
            lines.append(f"| {name} | {_fmt_s(sec)} | {sec / torch_s:.3f}× |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"pytest-benchmark JSON (default {DEFAULT_JSON.relative_to(REPO)})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"markdown file to write (default {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if not args.json.is_file():
        print(f"error: {args.json} does not exist; run `pytest --benchmark-only` (or pass --json FILE)", file=sys.stderr)
        return 1
    try:
        data = json.loads(args.json.read_text())
    except json.JSONDecodeError as exc:
        print(f"error: {args.json} is not pytest-benchmark JSON ({exc})", file=sys.stderr)
        return 1
    text = build_report(data)
    print(text, end="")
    if not args.no_write:
        from cgan.runtime.fileio import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
