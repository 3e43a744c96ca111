"""The hostile-link sweep: which keys a running page binds to its URL, and the link values to throw at them.

Keys are read from the page as it runs (every widget proto carries its `query_param_key`), so a new page is
swept without a line written for it.
"""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

UNKNOWN = {"utm_source": "<script>alert(1)</script>", "": "empty-key"}

# Values every bound key gets at once, one state per value: what a mangled or malicious link can carry.
COMBINED = {
    "empty": "",
    "huge": "🍓 <b>bold</b> **x** $y$ :red[z] " * 330,                 # ~10k characters: emoji, markup
    "control and mixed scripts": "\x00\x07\x1b[31m\u202e 日本語 العربية Ελληνικά 🇺🇦 e\u0301\ufffd \t\r\n",
    "not a number": "nan",
    "overflow": "-1e400",
}

# One more state: each key gets the value most likely to break its kind of widget.
BY_KIND = {
    "Slider": "99999999",
    "NumberInput": "inf",
    "TextArea": " \n\t ",
    "TextInput": " \n\t ",
    "Checkbox": "maybe",
    "ButtonGroup": "not-an-option",
    "Selectbox": "not-an-option",
    "Radio": "not-an-option",
    "MultiSelect": "not-an-option,also-not",
}
FALLBACK = "[1, 2, {\"a\": null}]"    # a kind of widget not listed above (a page adds a new one)


def bound_widgets(at: AppTest) -> dict[str, str]:
    """{query parameter key: widget kind} of every widget on the page bound to the URL."""
    found: dict[str, str] = {}

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and hasattr(proto, "query_param_key") and proto.HasField("query_param_key"):
            found[proto.query_param_key] = type(proto).__name__
        children = getattr(node, "children", None) or {}
        for child in (children.values() if isinstance(children, dict) else children):
            walk(child)

    walk(at._tree)
    return found


def hostile_states(widgets: dict[str, str]) -> dict[str, dict[str, str]]:
    """Named link states for a page with these bound widgets."""
    states = {name: {key: value for key in widgets} | UNKNOWN for name, value in COMBINED.items()}
    states["by kind"] = {key: BY_KIND.get(kind, FALLBACK) for key, kind in widgets.items()}
    return states
