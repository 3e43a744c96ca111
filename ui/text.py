"""Showing model or user text inside Streamlit labels and markdown without it being read as markup, and
small number formats the pages share."""
from __future__ import annotations

from engine.tokens.offsets import visible


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


def ratio_delta(new: float, old: float) -> str:
    """A metric delta for a quantity that can change many-fold (a perplexity): signed percent and the factor,
    e.g. "+44,909% (×450.1)" or "-3% (×0.97)". The sign sets st.metric's arrow and colour."""
    ratio = new / old
    return f"{100 * (ratio - 1):+,.0f}% (×{ratio:,.{1 if ratio >= 10 else 2}f})"


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def large_number(x: float, digits: int = 3) -> str:
    """A positive quantity that may span many orders of magnitude (a broken model's perplexity), readable:
    "8.83", "1,709", "170,923", then "3.93 × 10⁴²" from ten million on."""
    if x != x or x in (float("inf"), float("-inf")):
        return "∞" if x == float("inf") else "n/a"
    if abs(x) < 1000:
        return f"{x:,.{max(0, digits - 1)}f}" if abs(x) < 10 else f"{x:,.{max(0, digits - 2)}f}"
    if abs(x) < 1e7:
        return f"{x:,.0f}"
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def latex_number(x: float, digits: int = 4) -> str:
    """`digits` significant digits for st.latex, with very large or small numbers as a power of ten."""
    mantissa, _, exponent = f"{x:.{digits}g}".partition("e")
    return rf"{mantissa} \times 10^{{{int(exponent)}}}" if exponent else mantissa


def wrapping_metric(row, label: str, value: str, note: str, help: str | None = None) -> None:
    """A described metric sized to its content, for a `st.container(horizontal=True)` row: on a narrow window the
    row wraps onto a second line instead of cutting labels and numbers short."""
    row.metric(label, value, note, delta_color="off", delta_arrow="off", help=help, width="content")
