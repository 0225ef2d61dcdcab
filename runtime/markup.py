"""Text read from a model or a path, written into Markdown or HTML that we publish (the model card, the
site's README): never markup, never a new line or table row."""

from __future__ import annotations

import re

# Characters that make HTML tags, Markdown links, code spans, emphasis or table cells; in the text they are
# written as character references, which show as the character itself and never read as markup (an
# underscore inside a word, as in ckpt_000003000.pt, is never emphasis and is kept).
_MARKUP = re.compile(r"[&<>\"'`*\[\]|\\]")


def md_text(value: object) -> str:
    """``value`` as literal text for Markdown or an HTML table cell, on one line."""
    return _MARKUP.sub(lambda m: f"&#{ord(m.group())};", " ".join(str(value).split()))


def md_code(value: object) -> str:
    """``value`` in a Markdown code span where it is plain (hex digits, names, numbers), else as :func:`md_text`."""
    value = str(value)
    return f"`{value}`" if re.fullmatch(r"[\w.+\-, ]*", value) else md_text(value)
