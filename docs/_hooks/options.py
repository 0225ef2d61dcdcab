"""MkDocs hook: the option tables of the command pages, read from the commands themselves.

A page writes ``<!-- options: cgan-run -->`` (or ``<!-- options: cgan-data synth -->`` for a sub-command)
and the build replaces it with a table of that command's options, built from the parser the installed
console script uses (argparse for ``cgan-run``, typer/click for the others). A renamed or added option
therefore shows on its page at the next build, with no page to edit. ``tests/test_docs.py`` checks the
tables against each command's ``--help``.
"""

from __future__ import annotations

import html
import importlib
import re
from dataclasses import dataclass
from importlib.metadata import entry_points

MARKER = re.compile(r"<!--\s*options:\s*(cgan-[a-z]+)(?:\s+([a-z][a-z-]*))?\s*-->")


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]  # e.g. ("--n", "-n") or ("--balance", "--no-balance"); an argument: ("MODEL",)
    metavar: str  # "" for a flag without a value
    default: str  # "" when there is none worth showing
    help: str
    required: bool = False
    argument: bool = False


def command_names() -> list[str]:
    """The installed console scripts of this project (cgan-*)."""
    return sorted(ep.name for ep in entry_points(group="console_scripts") if ep.name.startswith("cgan-") and ep.value.startswith("cgan."))


def _entry_module(command: str):
    found = [ep for ep in entry_points(group="console_scripts") if ep.name == command]
    if not found:
        raise RuntimeError(f"{command} is not installed in this environment: the docs read its options from it "
                           f"(pip install -e \".[dev]\" first)")
    return importlib.import_module(found[0].value.split(":")[0])


def subcommands(command: str) -> list[str]:
    """Sub-command names of ``command`` (``cgan-data`` -> ["scan", "synth"]); [] for a single command."""
    click_cmd = _click_command(command)
    return sorted(getattr(click_cmd, "commands", {}) or []) if click_cmd is not None else []


def _click_command(command: str):
    module = _entry_module(command)
    app = getattr(module, "app", None)
    if app is None:
        return None
    import typer.main

    return typer.main.get_command(app)


def options(command: str, sub: str | None = None) -> list[Option]:
    """The options of ``command`` (and sub-command ``sub``), in the order ``--help`` lists them, without --help."""
    module = _entry_module(command)
    build_parser = getattr(module, "build_parser", None)
    if build_parser is not None:
        if sub is not None:
            raise ValueError(f"{command} has no sub-commands")
        return _argparse_options(build_parser())
    click_cmd = _click_command(command)
    if click_cmd is None:
        raise ValueError(f"{command}: its module {module.__name__} has neither build_parser() nor a typer app")
    if sub is not None:
        click_cmd = click_cmd.commands[sub]
    elif getattr(click_cmd, "commands", None) and len(click_cmd.commands) > 1:
        raise ValueError(f"{command} has sub-commands ({', '.join(sorted(click_cmd.commands))}): name one")
    elif getattr(click_cmd, "commands", None):
        (click_cmd,) = click_cmd.commands.values()  # a typer app with one command runs it directly
    return _click_options(click_cmd)


def _argparse_options(parser) -> list[Option]:
    import argparse

    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        takes_value = action.nargs != 0
        metavar = (action.metavar or action.dest.upper()) if takes_value else ""
        flags = tuple(sorted(action.option_strings, key=lambda f: (not f.startswith("--"), f))) or (metavar,)
        default = action.default
        shown = "" if default in (None, False, argparse.SUPPRESS) or not takes_value else str(default)
        help_text = (action.help or "").replace("%(prog)s", parser.prog)
        if isinstance(action, argparse._VersionAction):
            help_text = help_text or "Print the version and exit."
        rows.append(Option(flags, metavar, shown, help_text, required=bool(action.required), argument=not action.option_strings))
    return rows


def _click_options(cmd) -> list[Option]:
    rows = []
    for param in cmd.params:
        if param.name == "help" or getattr(param, "hidden", False):
            continue
        is_argument = type(param).__name__.endswith("Argument")
        if is_argument:
            flags = (param.metavar or param.name.upper(),)
        else:
            flags = tuple(sorted(param.opts, key=lambda f: (not f.startswith("--"), f))) + tuple(param.secondary_opts)
        is_flag = bool(getattr(param, "is_flag", False))
        metavar = "" if is_flag else _type_name(param)
        default = param.default
        if is_flag and param.secondary_opts:
            shown = flags[0] if default else param.secondary_opts[0]
        elif default is None or default is False or is_flag or callable(default):
            shown = ""
        else:
            shown = str(default)
        envvar = getattr(param, "envvar", None)
        help_text = getattr(param, "help", None) or ""
        if envvar:
            help_text += f" (environment: ${envvar})"
        rows.append(Option(flags, metavar, shown, help_text, required=bool(param.required), argument=is_argument))
    return rows


def _type_name(param) -> str:
    name = getattr(param.type, "name", "") or ""
    return {"integer": "INT", "float": "FLOAT", "text": "TEXT", "path": "PATH", "boolean": "BOOL"}.get(name, name.upper() or "VALUE")


def _cell(text: str) -> str:
    """Markdown-safe table cell: no pipe splits the row, no * or _ starts emphasis, no < opens a tag."""
    parts = " ".join(text.split()).split("`")
    for i, part in enumerate(parts):
        # inside `code` only the pipe needs escaping; outside it, tags, emphasis and link characters too
        parts[i] = part.replace("|", "\\|") if i % 2 else re.sub(r"([|*_\[\]])", r"\\\1", html.escape(part, quote=False))
    return "`".join(parts)


def table(command: str, sub: str | None = None) -> str:
    rows = ["| option | value | default | what it does |", "| --- | --- | --- | --- |"]
    for opt in options(command, sub):
        flags = ", ".join(f"`{f}`" for f in opt.flags)
        if opt.argument:
            flags += " (argument)"
        if opt.required:
            flags += " (required)"
        value = f"`{opt.metavar}`" if opt.metavar else ""
        default = f"`{opt.default}`" if opt.default else ""
        rows.append(f"| {flags} | {value} | {default} | {_cell(opt.help)} |")
    return "\n".join(rows) + "\n"


def expand(markdown: str) -> str:
    """``markdown`` with every options marker replaced by its table."""
    return MARKER.sub(lambda m: table(m.group(1), m.group(2)), markdown)


def on_page_markdown(markdown, page, config, files):  # MkDocs hook
    return expand(markdown)


SPHINX_ROLE = re.compile(r":(?:class|func|meth|data|attr|mod|exc|obj):<code>(~?)([\w.]+)</code>")


def on_page_content(html_text, page, config, files):  # MkDocs hook
    """The API page: docstrings cite names with Sphinx roles (``:class:`~a.b.X```); show the name alone
    (the last part of it after a ``~``, as Sphinx does)."""
    return SPHINX_ROLE.sub(lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>", html_text)
