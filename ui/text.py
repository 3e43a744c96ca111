"""Showing model or user text inside Streamlit labels and markdown without it being read as markup, and
small number formats the pages share."""
from __future__ import annotations

from engine.tokens import visible


def escape_markdown(text: str) -> str:
    """Make text inert for st.markdown and widget labels.

    CommonMark lets any ASCII punctuation be backslash-escaped, so escaping all of it rules out
    emphasis, links, HTML, KaTeX ($) and Streamlit's :colour[...] and :material/...: directives at once.
    Newlines become a visible ↵ so one label stays on one line.
    """
    return "".join("\\" + c if c.isascii() and not c.isalnum() and not c.isspace() else c
                   for c in text).replace("\n", " ↵ ")


def token_markdown(text: str) -> str:
    """A token for a sentence: spaces made visible, Markdown neutralised, set in bold."""
    return f"**{escape_markdown(visible(text))}**"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def short_tokens(n: int) -> str:
    """A token count as people write context lengths: 4096 is 4k, 1000 stays 1,000."""
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else f"{n:,}"


def human_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,.0f} B"


def described_metric(column, label: str, value: str, note: str, help: str | None = None) -> None:
    """A metric whose small line under the value is a description, not a change (no arrow, no colour)."""
    column.metric(label, value, note, delta_color="off", delta_arrow="off", help=help)
