"""Charts of the positional-encoding page: the sinusoidal table, its relative-position property, and the
measured effects of order on SmolLM2."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import DIVERGING, OKABE_ITO, PRIMARY, base_layout


def sinusoid_heatmap(table: np.ndarray, base: float, title: str = "") -> go.Figure:
    """[positions, d] encoding: rows are positions (0 at the top), columns the dimensions as the formula
    numbers them (0-based: even columns sin, odd columns cos)."""
    positions, dims = table.shape
    fig = go.Figure(go.Heatmap(
        z=table, x=np.arange(dims), y=np.arange(positions), zmin=-1, zmax=1, zmid=0, colorscale=DIVERGING,
        colorbar=dict(title="value", thickness=12, len=0.7),
        hovertemplate="position %{y} · dimension %{x}<br>PE = %{z:.4f}<extra></extra>"))
    fig.update_xaxes(title="dimension j (even: sin, odd: cos)", showgrid=False)
    fig.update_yaxes(title="position", autorange="reversed", showgrid=False)
    fig.update_layout(**base_layout(title=title, height=420))
    return fig


def offset_similarity(offsets: np.ndarray, curves: dict[str, np.ndarray], title: str = "") -> go.Figure:
    """PE(p) . PE(p + k) against k for a few starting positions p: the curves lie on top of each other,
    because the dot product depends only on the offset k."""
    fig = go.Figure()
    for i, (name, values) in enumerate(curves.items()):
        style = dict(color=OKABE_ITO[i % 4], width=5 - 1.5 * i, dash=("solid", "dash", "dot")[i % 3])
        fig.add_trace(go.Scatter(x=offsets, y=values, name=name, mode="lines", line=style,
                                 hovertemplate=f"{name}<br>offset k = %{{x}}<br>dot product %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(title="offset k (positions apart)")
    fig.update_yaxes(title="PE(p) · PE(p + k)")
    fig.update_layout(**base_layout(title=title, height=420, legend=dict(orientation="h", y=-0.22)))
    return fig


def order_bars(names: Sequence[str], shares: Sequence[float], texts: Sequence[str], title: str = "") -> go.Figure:
    """The share of next-token probability that moves when the words are shuffled, one bar per model setting,
    labelled with `texts` (the page's own number format)."""
    colours = [OKABE_ITO[5], OKABE_ITO[1], OKABE_ITO[2], OKABE_ITO[4]]
    fig = go.Figure(go.Bar(
        x=[100 * s for s in shares], y=[plain(n) for n in names], orientation="h",
        marker_color=[colours[i % len(colours)] for i in range(len(names))], text=list(texts),
        textposition="outside", cliponaxis=False,
        hovertemplate="%{y}<br>%{x:.4f}% of the probability moves<extra></extra>"))
    fig.update_xaxes(title="probability that moves to other tokens (%)", range=[0, 115 * max(max(shares), 0.05)])
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(**base_layout(title=title, height=260, margin=dict(l=10, r=40, t=40, b=10)))
    return fig


def perplexity_bars(names: Sequence[str], values: Sequence[float], highlight: int | None = None,
                    title: str = "") -> go.Figure:
    """One bar per setting; the model as trained in the primary colour, the changed ones in grey-orange."""
    colours = [PRIMARY if i == highlight else OKABE_ITO[1] for i in range(len(names))]
    fig = go.Figure(go.Bar(x=[plain(n) for n in names], y=list(values), marker_color=colours,
                           text=[f"{v:,.1f}" for v in values], textposition="outside", cliponaxis=False,
                           hovertemplate="%{x}<br>perplexity %{y:,.2f}<extra></extra>"))
    fig.update_yaxes(title="perplexity (lower = better)", rangemode="tozero")
    fig.update_layout(**base_layout(title=title, height=360))
    return fig
