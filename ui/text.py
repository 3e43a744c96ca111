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
