"""Plotly reads a few HTML-like tags in labels (<b>, <br>, <a>): escape user and model text before drawing it."""
from __future__ import annotations

import html


def plain(text: str) -> str:
    return html.escape(str(text), quote=False)
