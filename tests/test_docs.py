"""The documentation: a page per command whose option table is the command's own, a README a newcomer
can read, figures that point at files that exist, and pages about the tool rather than its making."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CI = ROOT / ".ci" / "run"


def _hook():
    spec = importlib.util.spec_from_file_location("docs_options_hook", DOCS / "_hooks" / "options.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def _scripts() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return sorted(tomllib.load(fh)["project"]["scripts"])


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if not any(part.startswith("_") for part in p.relative_to(DOCS).parts))


# ---------------------------------------------------------------- README

def test_readme_is_short_and_keeps_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    ci = CI.read_text()
    # .ci/run greps the README for these two lines and runs them: they must be there, each on a line of its own
    for pattern in re.findall(r"grep -m1 -E '([^']+)' README\.md", ci):
        assert re.search(pattern, readme, re.M), pattern
    assert "pip install . && cgan-run --stage 0 --n 64" in readme.splitlines()
    assert 'pip install -e ".[dev]" && pytest' in readme.splitlines()


# ---------------------------------------------------------------- command pages

def _help_flags(argv: list[str]) -> set[str]:
    """Long options named in the option rows of ``argv --help`` (argparse's or typer's layout)."""
    env = dict(os.environ, COLUMNS="200", TERMINAL_WIDTH="200", NO_COLOR="1")
    out = subprocess.run([*argv, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    flags: set[str] = set()
    for line in out.stdout.splitlines():
        # argparse: "  --stage STAGE, -s STAGE   help";  typer: "│ *  --balance  --no-balance  <path>  help"
        row = re.match(r"^(?:\s{2}|│\s+(?:\*\s+)?)(-.*)", line)
        if not row:
            continue
        for segment in re.split(r"\s{2,}", row.group(1)):
            if not segment.startswith("-"):
                break  # the metavar or the help text: no more option names on this row
            flags.update(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", segment))
    flags.discard("--help")
    return flags


def _script_argv(name: str) -> list[str]:
    import shutil

    path = shutil.which(name)
    assert path, f"{name} is not installed (pip install -e .)"
    return [path]


@pytest.mark.parametrize("command", _scripts())
def test_every_command_has_a_page_whose_option_tables_match_its_help(command):
    hook = _hook()
    page = DOCS / "commands" / f"{command}.md"
    assert page.is_file(), f"no page for {command}"
    markers = {(m.group(1), m.group(2)) for m in hook.MARKER.finditer(page.read_text(encoding="utf-8"))}
    subs = hook.subcommands(command)
    wanted = {(command, s) for s in subs} if subs else {(command, None)}
    assert markers == wanted, f"{page.name}: option tables for {sorted(wanted, key=str)}, found {sorted(markers, key=str)}"
    for _, sub in sorted(wanted, key=str):
        table = hook.table(command, sub)
        first_column = {line.split("|")[1] for line in table.splitlines()[2:]}
        in_table = {f for cell in first_column for f in re.findall(r"`(--[a-z][a-z0-9-]*)`", cell)}
        in_help = _help_flags(_script_argv(command) + ([sub] if sub else []))
        assert in_table == in_help, f"{command} {sub or ''}: only in the table {in_table - in_help}, only in --help {in_help - in_table}"


def test_the_table_escapes_what_markdown_would_eat():
    hook = _hook()
    cell = hook._cell("a | b, *.png and ckpt_*.pt, <path>, `keep_this|one`")
    assert cell == r"a \| b, \*.png and ckpt\_\*.pt, &lt;path&gt;, `keep_this\|one`"


def test_every_page_is_in_the_nav():
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml may hold python tags (none today); ignore any
    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)

    def walk(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from walk(value)

    in_nav = {p for p in walk(config["nav"]) if p.endswith(".md")}
    on_disk = {p.relative_to(DOCS).as_posix() for p in _pages()}
    assert on_disk == in_nav, f"pages not in the nav: {on_disk - in_nav}; nav entries without a page: {in_nav - on_disk}"


# ---------------------------------------------------------------- figures and their sources

def _user_texts() -> list[Path]:
    return [ROOT / "README.md", *_pages(), ROOT / "runtime" / "assets" / "README.md"]


def test_every_figure_and_measurement_file_named_in_the_docs_exists():
    missing = []
    for page in _user_texts():
        text = page.read_text(encoding="utf-8")
        # images and local links: relative to the page
        for target in re.findall(r"!?\[[^\]]*\]\(([^)#\s]+)", text):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
        # measurement files and figures named as repository paths, e.g. `bench/RESULTS.md`, docs/levers_gpu.png
        for path in re.findall(r"(?<![\w/.-])((?:bench|docs|runtime|train|export|tests)/[\w./-]+\.(?:md|png|json|csv|py|onnx))", text):
            if not (ROOT / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, missing


# ---------------------------------------------------------------- about the tool, not its making

DEVELOPMENT_TALK = [
    (r"\bissues?\s*#?\d+", "an issue number"),
    (r"(?<![\w&])#\d{1,4}\b", "an issue number"),
    (r"\[[A-F](?:\]|: | \d| met)", "a run letter"),  # [A 180, B 268 ms], [A: 1.98], [A met; ...]
    (r"\bruns? [A-F]\b(?! [a-z])", "a run letter"),
    (r"\bcommit\s+[0-9a-f]{6,40}\b", "a commit id"),
    (r"(?<![\w-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,12}(?![\w-])", "a commit id"),
    (r"\b(?:this|development|earlier|previous|later|that|next|the lead's) session\b", "a work session"),
    (r"\bsession of\b|\blent to\b", "a work session"),
    (r"\bthis (?:[\w-]+ )?(?:shell|machine|VM|box)\b", "the developer's machine"),
]


def _talk(text: str) -> list[str]:
    found = []
    for pattern, what in DEVELOPMENT_TALK:
        for m in re.finditer(pattern, text):
            line = text.count("\n", 0, m.start()) + 1
            found.append(f"line {line}: {what}: {m.group(0)!r}")
    return found


def test_the_check_catches_development_talk():
    # each is a sentence a page used to carry
    assert _talk("measured in the session of issue 17")
    assert _talk("[A 180, B 268, C 258 ms]")
    assert _talk("Latest run (29 Nov 2026, commit 871c71b, 4 min)")
    assert _talk("on an NVIDIA H200 GPU lent to one development session")
    assert _talk("this development shell sets PYTHONDONTWRITEBYTECODE=1")
    assert _talk("14 minutes measured on this 2-core machine")
    assert _talk("the step before #15")
    assert _talk("[A met; B and C not, on a busy host]")
    # and leaves alone what a user needs
    assert not _talk("the bare session, session.run, InferenceSession, 0xD2511F53, sha256 `e9695c30a78012f3...`")
    assert not _talk("(A) BCE, (B) + DiffAugment; stage 3 Moderate; batch 64; seed 0; `[C, H, W]` values")


@pytest.mark.parametrize("page", _user_texts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_speak_of_the_tool_not_of_how_it_was_made(page):
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"sha256 \| `[0-9a-f]+`", "", text)  # a model card's checkpoint digest is data, not a commit
    assert not _talk(text), _talk(text)


def test_the_card_template_speaks_of_the_model_only():
    from cgan.export.card import render_card
    from cgan.runtime.contract import read_metadata
    from cgan.runtime.resolve import EMBEDDED_DEFAULT

    card = render_card(read_metadata(EMBEDDED_DEFAULT), "cDCGAN_generator.onnx")
    card = re.sub(r"sha256 \| `[0-9a-f]+`", "", card)
    assert not _talk(card), _talk(card)


def test_help_texts_are_unwrapped_so_a_narrow_terminal_fills_its_lines():
    """typer's rich help keeps every newline: a text wrapped by hand shows ragged half-lines at 80 columns."""
    hook = _hook()
    ragged = []
    for command in _scripts():
        group = hook._click_command(command)
        if group is None:
            continue  # cgan-run: argparse rewraps its own text
        commands = list(getattr(group, "commands", {}).values()) or [group]
        for cmd in [group, *commands]:
            texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
            ragged += [f"{command} {cmd.name}: {t[:60]!r}" for t in texts if re.search(r"[^\n]\n[^\n]", t)]
    assert not ragged, ragged


def test_the_cards_limitations_follow_the_training_data_it_records():
    import dataclasses

    from cgan.export.card import render_card
    from cgan.runtime.contract import Key, read_metadata
    from cgan.runtime.resolve import EMBEDDED_DEFAULT

    info = read_metadata(EMBEDDED_DEFAULT)
    synthetic = render_card(info, "m.onnx")
    assert "not on real MRI" in synthetic and "imbalanced" not in synthetic
    real = dataclasses.replace(info, provenance={**info.provenance, Key.TRAINING_DATA: "OASIS layout at /data (86,437 images)"})
    card = render_card(real, "m.onnx")
    assert "imbalanced" in card and "not on real MRI" not in card


def test_the_api_page_shows_sphinx_roles_as_names():
    html = ":class:<code>~cgan.runtime.balance.BalancePlan</code> and :func:<code>cgan.runtime.load</code>"
    assert _hook().on_page_content(html, None, None, None) == "<code>BalancePlan</code> and <code>cgan.runtime.load</code>"


def test_help_texts_speak_of_the_tool_not_of_how_it_was_made():
    hook = _hook()
    found = []
    for command in _scripts():
        texts = []
        group = hook._click_command(command)
        if group is not None:
            for cmd in [group, *getattr(group, "commands", {}).values()]:
                texts.append(cmd.help or "")
        else:
            texts.append(hook._entry_module(command).build_parser().description or "")
        for sub in hook.subcommands(command) or [None]:
            texts += [opt.help for opt in hook.options(command, sub)]
        found += [f"{command}: {hit}" for text in texts for hit in _talk(text)]
    assert not found, found


def test_every_figure_in_docs_is_shown_on_a_page():
    shown = "\n".join(p.read_text(encoding="utf-8") for p in _user_texts())
    unused = [p.name for p in sorted(DOCS.rglob("*.png")) if p.name not in shown]
    assert not unused, f"figures no page shows: {unused}"
