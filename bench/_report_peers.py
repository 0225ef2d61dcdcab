"""The report's part for bench/test_bench_peers.py: the runtime against the engines a user would pick instead."""

from __future__ import annotations

RUNTIME_PREFIX = "runtime generate(), engine auto"
PEERS = ("OpenVINO compile_model, defaults", "torch.compile fp32 (freezing)")


def _fmt_ips(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _peers(benches: list[dict]) -> list[dict]:
    return sorted((b for b in benches if b["extra_info"].get("kind") == "peers"), key=lambda b: b["extra_info"]["batch"])


def isa_line(machine_info: dict) -> str | None:
    isa = machine_info.get("cgan", {}).get("isa")
    if not isa:
        return None
    return f"- CPU instructions: {isa.get('flags', '?')} (class {isa.get('class', '?')}; AVX-512, VNNI and AMX absent unless named)"


def peers_goals(benches: list[dict]) -> list[tuple[str, str, bool | None]]:
    """The runtime (load().generate(), engine auto) at most as slow as each peer, batch 1 and 64, in one interleaved run."""
    goals = []
    for b in _peers(benches):
        e = b["extra_info"]
        ms = e["median_ms"]
        runtime = next((k for k in ms if k.startswith(RUNTIME_PREFIX)), None)
        if runtime is None:
            continue
        for peer in PEERS:
            if peer in ms:
                goals.append((f"runtime ({runtime.split('(')[-1].rstrip(')')}) ≤ {peer}, batch {e['batch']}, interleaved",
                              f"{ms[runtime]:.2f} vs {ms[peer]:.2f} ms ({ms[peer] / ms[runtime]:.2f}× the peer's speed)",
                              ms[runtime] <= ms[peer]))
            elif peer in e.get("skipped", {}):
                goals.append((f"runtime ≤ {peer}, batch {e['batch']}", f"not measured: {e['skipped'][peer]}", None))
    return goals


def peers_section(benches: list[dict]) -> list[str]:
    rows = _peers(benches)
    if not rows:
        return []
    first = rows[0]["extra_info"]
    lines = ["## The runtime against its peers (CPU, interleaved call by call)", "",
             "Same batch to every contender, one after another, each call after a 100 ms pause; medians of "
             + " and ".join(f"{b['extra_info']['rounds_each']} rounds at batch {b['extra_info']['batch']}" for b in rows) + f". CPU: {first.get('isa', '?')}; fp32 peak "
             f"{first['fp32_peak_gflops']} GFLOP/s ({first['peak']['clock_ghz']} GHz × 2 FMA × "
             f"{16 if first['peak'].get('avx512_gflops') else 8} lanes × 2 × {first['peak']['cores']} cores); "
             f"{first['gflop_per_image']:.3f} GFLOP per image.", ""]
    names = list(dict.fromkeys(k for b in rows for k in b["extra_info"]["median_ms"]))
    head = "| contender | " + " | ".join(f"batch {b['extra_info']['batch']}: ms / images/s / of peak / × torch eager" for b in rows) + " |"
    lines += [head, "| --- | " + " | ".join("---:" for _ in rows) + " |"]
    for name in names:
        cells = []
        for b in rows:
            e = b["extra_info"]
            ms = e["median_ms"].get(name)
            if ms is None:
                cells.append("—")
                continue
            base = e["median_ms"]["torch eager fp32"]
            cells.append(f"{ms:.2f} / {_fmt_ips(e['images_per_s'][name])} / {e['fraction_of_fp32_peak'][name]:.1%} / {base / ms:.2f}×")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for b in rows:
        for name, why in b["extra_info"].get("skipped", {}).items():
            lines.append(f"| {name} (batch {b['extra_info']['batch']}) | skipped: {why} |" + " |" * (len(rows) - 1))
    lines += ["", "The runtime rows include drawing the noise and the uint8 conversion; the bare rows time the engine's call alone.", ""]
    return lines
