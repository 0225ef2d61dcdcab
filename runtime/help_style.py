"""One look for every command's ``--help``: typer's rich panels, the options grouped by what they are for,
each option shown with the first sentence of its help.

The whole help text of an option stays where it is written (typer's option, ``RunOptions``, ``TrainConfig``)
and is what the command's page in the docs shows in its option table (docs/_hooks/options.py reads the
commands themselves); ``--help`` is the short version a terminal can hold. Help texts are plain text, never
rich markup: brackets (``dementia-cgan[openvino]``) are escaped here, so they print as written.

typer and rich are imported only when help is drawn: ``cgan-run``'s start does not pay for them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

MAX_FIRST_PARAGRAPH = 200  # characters: the summary above the panels, two lines of an 100-column terminal


def brief(text: str, limit: int = 180) -> str:
    """The first sentence of ``text``: up to the first full stop outside brackets that ends a sentence
    (followed by a space and a capital, a backquote or a dash). A sentence longer than ``limit`` characters
    is cut at its last clause (a comma, semicolon or colon) before the limit, with an ellipsis, and the
    brackets it leaves open are closed: the whole text is on the command's page."""
    depth, cuts = 0, []
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == "." and depth == 0 and text[i + 1: i + 2] == " " and text[i + 2: i + 3][:1] in _SENTENCE_STARTS:
            text = text[: i + 1]
            break
        elif ch in ",;:" and text[i + 1: i + 2] == " " and i < limit:
            cuts.append((i, depth))
    if len(text) <= limit or not cuts:
        return text
    at, open_brackets = cuts[-1]
    return text[:at] + "…" + ")" * open_brackets


_SENTENCE_STARTS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ`-")


def panel_map(panels: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """``{panel title: [parameter names]}`` -> ``{parameter name: panel title}``."""
    return {name: title for title, names in panels.items() for name in names}


def command_class(panels: Mapping[str, Sequence[str]] | None = None, *, default_panel: str = "Other options"):
    """A typer command class whose ``--help`` groups the options into ``panels`` (``{title: [parameter
    names]}``; a parameter not named there goes to ``default_panel``) and shows each option's first sentence.
    Pass it as ``app.command(cls=...)``."""
    from rich.markup import escape
    from typer.core import TyperCommand

    where = panel_map(panels or {})

    class Command(TyperCommand):
        def format_help(self, ctx, formatter):  # noqa: D102 -- click's
            kept = [(p, p.help, getattr(p, "rich_help_panel", None)) for p in self.params]
            kept_help = self.help
            try:
                for p in self.params:
                    if getattr(p, "help", None):
                        p.help = escape(brief(" ".join(p.help.split())))
                    if type(p).__name__.endswith("Option") and p.name != "help":
                        p.rich_help_panel = where.get(p.name, getattr(p, "rich_help_panel", None) or default_panel)
                self.help = escape(self.help or "")
                return super().format_help(ctx, formatter)
            finally:
                for p, text, panel in kept:
                    p.help = text
                    if hasattr(p, "rich_help_panel"):
                        p.rich_help_panel = panel
                self.help = kept_help

    return Command


def typer_app(name: str, help: str, **settings):
    """A typer app in the look every command shares (rich panels; plain-text help; no shell completion)."""
    import typer

    return typer.Typer(name=name, help=help, add_completion=False, pretty_exceptions_enable=False,
                       rich_markup_mode="rich", **settings)


def page(command: str) -> str:
    """The line under every command's summary that sends the reader to the full description."""
    return f"Every option in full, with examples: docs/commands/{command}.md (the documentation site)."
