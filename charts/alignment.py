"""Charts of refusal measured: the refusal probability against caution, and the helpful vs harmless trade-off."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout, legend_below

KIND_STYLE = {"risky": ("risky-sounding requests", OKABE_ITO[5], "circle"),
              "benign": ("benign requests", OKABE_ITO[0], "square"),
              "yours": ("your request", OKABE_ITO[2], "diamond")}


def refusal_curve(levels: Sequence[str], means: dict[str, Sequence[float]], selected: int,
                  title: str = "") -> go.Figure:
    """One line per kind of request: the mean P(refusal opening), in %, at each caution level."""
    fig = go.Figure()
    for kind, values in means.items():
        name, colour, symbol = KIND_STYLE[kind]
        fig.add_trace(go.Scatter(x=[plain(level) for level in levels], y=[100 * v for v in values],
                                 mode="lines+markers", name=name, line=dict(color=colour, width=3),
                                 marker=dict(symbol=symbol, size=10),
                                 hovertemplate="%{x}: %{y:.2f}%<extra>" + name + "</extra>"))
    if 0 <= selected < len(levels):
        fig.add_vline(x=selected, line=dict(color="gray", dash="dot", width=2))
    top = max([100 * float(np.nanmax(v)) for v in means.values() if len(v)] + [1.0])
    fig.update_yaxes(title="P(reply opens with a refusal) %", range=[0, top * 1.15], rangemode="tozero")
    fig.update_xaxes(title="caution level (the system prompt)")
    fig.update_layout(**base_layout(title=title, height=380))
    legend_below(fig, bottom=90)
    return fig


def tradeoff(levels: Sequence[str], benign: Sequence[float], risky: Sequence[float], selected: int,
             title: str = "") -> go.Figure:
    """Each caution level as a point: x = refusing benign requests (the helpfulness cost), y = refusing risky ones.

    The diagonal is 'refuses both equally': a model that tells them apart sits far above it.
    """
    x, y = [100 * v for v in benign], [100 * v for v in risky]
    right, top = max(x + [0.1]) * 1.3, max(y + [0.1]) * 1.15   # each axis fits its data; y = x stays the diagonal
    fig = go.Figure()
    corner = max(right, top)
    fig.add_trace(go.Scatter(x=[0, corner], y=[0, corner], mode="lines", name="refuses both equally",
                             line=dict(color="gray", dash="dash"), hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers+text", name="caution levels",
                             text=[plain(level.split(" · ")[0]) for level in levels], textposition="top left",
                             line=dict(color=OKABE_ITO[3], width=2), marker=dict(size=10, color=OKABE_ITO[3]),
                             customdata=[plain(level) for level in levels],
                             hovertemplate="%{customdata}<br>benign refused %{x:.2f}%<br>"
                                           "risky refused %{y:.2f}%<extra></extra>"))
    if 0 <= selected < len(levels):
        fig.add_trace(go.Scatter(x=[x[selected]], y=[y[selected]], mode="markers", name="the level you picked",
                                 marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(color=OKABE_ITO[1], width=3)),
                                 hoverinfo="skip"))
    fig.update_xaxes(title="benign requests refused (over-refusal) %", range=[0, right])
    fig.update_yaxes(title="risky requests refused %", range=[0, top])
    fig.update_layout(**base_layout(title=title, height=380))
    legend_below(fig, bottom=90)
    return fig
