"""Layout pieces the pages share."""
from __future__ import annotations

import streamlit as st

METRIC_WIDTH = 200   # px: four fit across a wide page; on a narrow one they wrap two by two, uncut


class _MetricSlot:
    """Stands in for a column: `.metric(...)` adds a fixed-width metric to the shared wrapping row."""

    def __init__(self, row, width: int):
        self._row, self._width = row, width

    def metric(self, *args, **kwargs):
        return self._row.metric(*args, width=self._width, **kwargs)


def metric_row(count: int, width: int = METRIC_WIDTH) -> list[_MetricSlot]:
    """A drop-in for `st.columns(count)` holding metrics: a row that wraps on a narrow window instead of
    cutting labels and values ("Log-probabi…"). Fill the slots in order: they share one row."""
    row = st.container(horizontal=True, gap="medium")
    return [_MetricSlot(row, width) for _ in range(count)]


def described_metrics(*items: tuple) -> None:
    """Described metrics side by side that wrap onto a new line on a narrow window instead of cutting their
    numbers. Each item is (label, value, note) or (label, value, note, help); the note is a description, not a
    change (no arrow, no colour)."""
    with st.container(horizontal=True, gap="medium"):
        for label, value, note, *help_text in items:
            st.metric(label, value, note, delta_color="off", delta_arrow="off", width="content",
                      help=help_text[0] if help_text else None)
