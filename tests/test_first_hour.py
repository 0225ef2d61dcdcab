"""A newcomer's first hour: the README's and the getting-started page's commands, read top-down and run in
order in a fresh folder, work as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting-started.md"


def bash_lines(page: Path, heading: str | None = None) -> list[str]:
    """The command lines of ``page``'s bash blocks (under the section ``heading`` when given), in reading order,
    without their comments."""
    text = page.read_text(encoding="utf-8")
    if heading is not None:
        start = text.index(f"\n## {heading}")
        end = text.find("\n## ", start + 1)
        text = text[start: end if end > 0 else None]
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def cgan_commands(lines: list[str]) -> list[list[str]]:
    """Each ``cgan-*`` command of ``lines`` (a line may chain several with ``&&``), as argv lists."""
    found = []
    for line in lines:
        for part in line.split("&&"):
            argv = shlex.split(part)
            if argv and argv[0].startswith("cgan-"):
                found.append(argv)
    return found


def run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name(argv[0])
    assert exe.exists(), f"{argv[0]} is not installed (pip install -e .)"
    env = dict(os.environ, CGAN_PROGRESS_INTERVAL="3600")
    return subprocess.run([str(exe), *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_readme_installs_the_cpu_build_of_torch_before_the_dev_command():
    """Copied top-down, the README's install block gets PyTorch's CPU build, not the CUDA one the dev extra would pull."""
    lines = bash_lines(README, "Install")
    torch_cpu = [i for i, line in enumerate(lines) if line.startswith("pip install torch") and "/whl/cpu" in line]
    dev = [i for i, line in enumerate(lines) if line.startswith('pip install -e ".[dev]"')]
    assert torch_cpu and dev and torch_cpu[0] < dev[0], lines
    assert lines[0].startswith("pip install . && cgan-run "), lines  # the runtime alone comes first, before any torch
    index = bash_lines(ROOT / "docs" / "index.md", "Install")
    assert [i for i, line in enumerate(index) if "/whl/cpu" in line][0] < [i for i, line in enumerate(index) if '".[dev]"' in line][0]


def test_the_runtime_commands_of_readme_and_getting_started_run_in_reading_order(tmp_path):
    """The README's first command, then every `cgan-run` of the getting-started page, in one folder: none is
    refused for files an earlier one wrote."""
    readme_run = cgan_commands(bash_lines(README, "Install"))
    assert readme_run and readme_run[0][0] == "cgan-run"
    page_runs = [argv for argv in cgan_commands(bash_lines(GETTING_STARTED)) if argv[0] == "cgan-run"]
    assert len(page_runs) >= 2
    for argv in [readme_run[0], *page_runs]:
        done = run(argv, tmp_path)
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr[-1500:]}"
    assert (tmp_path / "first.png").is_file() and len(list((tmp_path / "generated").glob("*.png"))) == 64


# The getting-started page's sizes, cut down so the whole chain runs in a few minutes on 2 busy cores; every
# command and flag is otherwise the page's own.
SMALLER = {("cgan-data", "--n"): "96", ("cgan-train", "--max-steps"): "2"}


@pytest.mark.slow
def test_getting_started_runs_top_to_bottom_in_a_fresh_folder(tmp_path):
    """Every command of the getting-started page, in order, in an empty folder (after the README's first)."""
    commands = cgan_commands(bash_lines(README, "Install"))[:1] + cgan_commands(bash_lines(GETTING_STARTED))
    names = [argv[0] for argv in commands]
    for wanted in ("cgan-data", "cgan-train", "cgan-export", "cgan-eval"):
        assert wanted in names, f"getting-started lost its {wanted} step"
    for argv in commands:
        argv = [SMALLER.get((argv[0], argv[i - 1]), a) if i else a for i, a in enumerate(argv)]
        done = run(argv, tmp_path, timeout=1800)
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr[-2000:]}"
    assert (tmp_path / "model_output" / "cDCGAN_generator.onnx").is_file()
    assert (tmp_path / "mine" / "progression.png").is_file()
    assert (tmp_path / "model_output" / "eval" / "report.md").is_file()
