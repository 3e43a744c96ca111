"""Charts of an intervention's measured effect: per-token loss with and without it, and the next-token
distribution before and after. Data in, plotly figure out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.sampling import _unique
from charts.style import OKABE_ITO, PRIMARY, base_layout, legend_below

BASE, CHANGED = PRIMARY, OKABE_ITO[5]


def loss_comparison(labels: Sequence[str], base: np.ndarray, changed: np.ndarray, changed_name: str,
                    title: str = "", base_name: str = "the model as it is") -> go.Figure:
    """Per predicted token, the loss -log p (nats) of the real next token, with and without the change.
    Log scale: a broken model's losses run to hundreds of nats next to the intact model's few."""
    rows = _unique(labels)
    fig = go.Figure()
    for ys, name, colour in ((base, base_name, BASE), (changed, changed_name, CHANGED)):
        fig.add_trace(go.Scatter(x=rows, y=np.maximum(ys, 1e-3), name=name, mode="lines+markers",
                                 line=dict(color=colour, width=2), marker=dict(size=6),
                                 hovertemplate="predicting %{x}: %{y:.2f} nats<extra>" + plain(name) + "</extra>"))
    fig.update_xaxes(tickangle=-60, tickfont=dict(family="monospace"), title="token being predicted")
    fig.update_yaxes(title="loss −log p (nats, log scale)", type="log", dtick=1)
    # Two short entries fit one line even on a narrow window; below, they would collide with the token labels.
    fig.update_layout(**base_layout(title=title, height=420, hovermode="x unified",
                                    legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=90, b=10))
    return fig


def prediction_comparison(labels: Sequence[str], base: Sequence[float], changed: Sequence[float],
                          changed_name: str, title: str = "", base_name: str = "the model as it is") -> go.Figure:
    """The next token's probability under both models, for the union of their top tokens (percent)."""
    rows = _unique(labels)
    fig = go.Figure()
    for ys, name, colour in ((base, base_name, BASE), (changed, changed_name, CHANGED)):
        fig.add_trace(go.Bar(y=rows, x=[100 * v for v in ys], name=name, orientation="h", marker_color=colour,
                             hovertemplate="%{y}: %{x:.2f}%<extra>" + plain(name) + "</extra>"))
    fig.update_yaxes(autorange="reversed", tickfont=dict(family="monospace"))
    fig.update_xaxes(title="probability of being the next token (%)", rangemode="tozero")
    fig.update_layout(**base_layout(title=title, height=max(320, 26 * len(rows) + 170), barmode="group"))
    legend_below(fig)
    return fig
