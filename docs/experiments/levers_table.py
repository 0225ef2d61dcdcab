"""The levers table of docs/levers.md, read from cgan-eval's report.json files.

    python docs/experiments/levers_table.py runs/levers/evals        # one folder per arm: eval0/, eval1/
    python docs/experiments/levers_table.py runs/levers/evals default stage-ac-900    # these arms, in this order

Per arm and evaluation seed: the worse judge's conditional accuracy relative to its own (with its 95%
interval), the deep judge's per-stage conditional accuracy, the severity medians' offsets from the real
stages' (in stage spacings, no judge), the implausible-anatomy rate, the lowest diversity ratio, the KID
ratio to the 1-px-blur row, the lowest precision and recall, and the verdict.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def criterion(report: dict, name: str) -> dict:
    return next(c for c in report["passes_bar"]["criteria"] if c["name"] == name)


def row(arm: str, seed: int, report: dict) -> str:
    rel = criterion(report, "conditional_accuracy_relative")
    deep = next(j for j in report["judges"] if j["judge"].startswith("deep"))
    per_stage = " / ".join(f"{a:.2f}" for a in deep["conditional_accuracy"]["per_stage"])
    sev = report.get("severity") or {}
    offsets = " / ".join(f"{o:+.2f}" for o in sev.get("median_offset", [])) or "–"
    art = report["artefacts"]["rate"]
    div = criterion(report, "diversity_ratio_min")["value"]
    kid = criterion(report, "kid_over_blur1")
    prec = criterion(report, "precision_min_stage")["value"]
    rec = criterion(report, "recall_min_stage")["value"]
    lo, hi = rel["ci"]
    return (f"| {arm} | {seed} | {rel['value']:.3f} [{lo:.2f}, {hi:.2f}] | {per_stage} | {offsets} | "
            f"{100 * art['generated']:.1f}% | {div:.2f} | {kid['value']:.2f} | {prec:.2f} / {rec:.2f} | "
            f"{report['passes_bar']['verdict']} |")


HEADER = ("| arm | eval seed | cond. acc. / judge's own [95%] (worse judge) | deep judge per stage (0 / 1 / 2 / 3) | "
          "severity offset, stage spacings (0 / 1 / 2 / 3) | implausible anatomy | diversity (min) | "
          "KID / 1-px blur | precision / recall (min) | verdict |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "runs/levers/evals")
    arms = [root / name for name in argv[1:]] or sorted(p for p in root.iterdir() if p.is_dir())
    missing = [str(arm) for arm in arms if not arm.is_dir()]
    if missing:
        print(f"error: no evaluation folder {', '.join(missing)}", file=sys.stderr)
        return 2
    print(HEADER)
    for arm in arms:
        for seed in (0, 1):
            path = arm / f"eval{seed}" / "report.json"
            if path.exists():
                print(row(arm.name, seed, json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
