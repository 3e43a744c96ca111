"""Next-token probability charts."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, PRIMARY, base_layout

ZERO_WIDTH = "\u200b"


def next_token_bars(labels: Sequence[str], probabilities: Sequence[float], ids: Sequence[int],
                    logits: Sequence[float], highlight: int | None = 0, title: str = "") -> go.Figure:
    """Horizontal bars, most likely token on top, probability in percent; hover shows id and logit."""
    percent = [100.0 * p for p in probabilities]
    colours = [ACCENT if i == highlight else PRIMARY for i in range(len(labels))]
    # Plotly merges equal category labels, so each bar gets a unique, invisible rank suffix.
    rows = [plain(label) + ZERO_WIDTH * rank for rank, label in enumerate(labels)]
    fig = go.Figure(go.Bar(
        x=percent, y=rows, orientation="h", marker_color=colours,
        text=[f"{p:.1f}%" if p >= 0.05 else f"{p:.2g}%" for p in percent], textposition="outside",
        customdata=list(zip(ids, logits, [f"{p:.6f}" for p in probabilities])),
        hovertemplate="token %{y}<br>id %{customdata[0]}<br>logit %{customdata[1]:.3f}"
                      "<br>probability %{customdata[2]}<extra></extra>",
        cliponaxis=False,
    ))
    fig.update_layout(**base_layout(title=title, height=max(220, 28 * len(labels) + 70)))
    fig.update_yaxes(autorange="reversed", title=None, tickfont=dict(family="monospace", size=14))
    fig.update_xaxes(title="probability (%)", rangemode="tozero", range=[0, max(percent, default=1) * 1.18])
    return fig
