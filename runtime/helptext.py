"""Help text for the typer commands: one line per paragraph.

typer's rich help keeps every newline of a help text, so a text wrapped by hand in the source shows
ragged, half-empty lines in any terminal narrower than the source; unwrapped, rich fills the width."""

from __future__ import annotations

import inspect
import re


def unwrap(text: str) -> str:
    """``text`` (a docstring or a wrapped string) with each paragraph on one line; blank lines kept between."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
