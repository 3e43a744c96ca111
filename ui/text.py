"""Showing model or user text inside Streamlit labels and markdown without it being read as markup."""
from __future__ import annotations


def escape_markdown(text: str) -> str:
    """Make text inert for st.markdown and widget labels.

    CommonMark lets any ASCII punctuation be backslash-escaped, so escaping all of it rules out
    emphasis, links, HTML, KaTeX ($) and Streamlit's :colour[...] and :material/...: directives at once.
    Newlines become a visible ↵ so one label stays on one line.
    """
    return "".join("\\" + c if c.isascii() and not c.isalnum() and not c.isspace() else c
                   for c in text).replace("\n", " ↵ ")
