"""Every command's --help in one look: typer's rich panels, a short summary, the options grouped by what they
are for, the research-only line, a pointer to the command's page, and a length a terminal can hold."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from cgan.runtime.contract import DISCLAIMER
from cgan.runtime.help_style import brief

COLUMNS = 100
MAX_LINES = 160  # at 100 columns; cgan-train, with 42 options, is the longest: past this, move text to its page
MAX_SUMMARY_LINES = 4

COMMANDS = [["cgan-run"], ["cgan-train"], ["cgan-export"], ["cgan-eval"], ["cgan-data", "synth"], ["cgan-data", "scan"],
            ["cgan-web", "build"], ["cgan-web", "serve"]]
GROUPS = [["cgan-data"], ["cgan-web"]]


def _help(argv: list[str]) -> list[str]:
    exe = shutil.which(argv[0])
    assert exe, f"{argv[0]} is not installed (pip install -e .)"
    env = dict(os.environ, COLUMNS=str(COLUMNS), TERMINAL_WIDTH=str(COLUMNS), NO_COLOR="1")
    done = subprocess.run([exe, *argv[1:], "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _paragraphs(lines: list[str]) -> list[str]:
    """The text paragraphs above the first panel, each joined into one line."""
    text, paragraphs = [], []
    for line in lines:
        if line.startswith("╭"):
            break
        if line.strip():
            text.append(line.strip())
        elif text:
            paragraphs.append(" ".join(text))
            text = []
    return paragraphs + ([" ".join(text)] if text else [])


def _panels(lines: list[str]) -> dict[str, list[str]]:
    """Panel title -> the long option names of its rows."""
    panels: dict[str, list[str]] = {}
    title = None
    for line in lines:
        head = re.match(r"╭─ (.+?) ─", line)
        if head:
            title = head.group(1)
            panels[title] = []
        elif line.startswith("╰"):
            title = None
        elif title is not None:
            row = re.match(r"│\s+(?:\*\s+)?(--[a-z][a-z0-9-]*)", line)
            if row:
                panels[title].append(row.group(1))
    return panels


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_has_the_same_help_look_and_a_length_a_terminal_holds(argv):
    lines = _help(argv)
    assert len(lines) <= MAX_LINES, f"{' '.join(argv)} --help: {len(lines)} lines at {COLUMNS} columns"
    assert max(len(line.rstrip()) for line in lines) <= COLUMNS
    assert re.match(rf"^ Usage: {' '.join(argv)} \[OPTIONS\]", next(line for line in lines if line.strip()))
    usage, summary, *rest = _paragraphs(lines)
    summary_lines = [line for line in lines if line.strip() and line.strip() in summary]
    assert summary and len(summary_lines) <= MAX_SUMMARY_LINES, summary
    assert " ".join(DISCLAIMER.split()) in rest, rest
    assert any(f"docs/commands/{argv[0]}.md" in p for p in rest), rest
    panels = _panels(lines)
    # the options sit in panels named for what they are for; the generic one holds --help alone
    assert panels.get("Options") == ["--help"], panels
    grouped = {title: names for title, names in panels.items() if title not in ("Options", "Arguments")}
    assert grouped and all(grouped.values()), panels
    assert "Other options" not in panels, f"{' '.join(argv)}: options without a panel: {panels.get('Other options')}"


@pytest.mark.parametrize("argv", GROUPS, ids=" ".join)
def test_commands_with_sub_commands_list_them_in_the_same_look(argv):
    lines = _help(argv)
    assert re.match(rf"^ Usage: {argv[0]} \[OPTIONS\] COMMAND \[ARGS\]", next(line for line in lines if line.strip()))
    assert "Commands" in _panels(lines)
    assert " ".join(DISCLAIMER.split()) in " ".join(" ".join(lines).split())


def test_cgan_train_help_is_a_page_not_a_manual():
    assert len(_help(["cgan-train"])) <= MAX_LINES < 304  # 304 lines before its options were grouped and cut to a sentence


def test_brief_keeps_the_first_sentence_outside_brackets():
    assert brief("Images per step (per process, e.g. 16. Or more). Then more.") == "Images per step (per process, e.g. 16. Or more)."
    assert brief("Latent size.") == "Latent size."
    assert brief("version 1.2. Next") == "version 1.2."
    assert brief("no full stop") == "no full stop"
    long = "What trains: all (every weight) or stage (only its code: the table, the gains, " + "and more, " * 20 + "the end)."
    assert brief(long, limit=70) == "What trains: all (every weight) or stage (only its code: the table…)"
