"""Showing model or user text inside Streamlit labels and markdown without it being read as markup."""
from __future__ import annotations

import re

# Markdown, Streamlit's colour/icon directives (:red[...], :material/x:), and KaTeX ($) all start with these.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def escape_markdown(text: str) -> str:
    """Backslash-escape every character Markdown or Streamlit could read as formatting."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)
