"""Mixture-of-experts charts: the router's choices per token, the load on each expert, and perplexity against k.
Experts are shown 1-based; callers pass 0-based data."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from charts.style import ACCENT, OKABE_ITO, SEQUENTIAL, base_layout

ROUTER_STYLE = {"largest": ("router: keep the experts with the largest outputs", OKABE_ITO[0], "circle"),
                "random": ("random experts (for contrast)", OKABE_ITO[5], "diamond")}


def routing_map(shares: np.ndarray, chosen: np.ndarray, labels: Sequence[str], title: str = "") -> go.Figure:
    """Tokens (rows) x experts (columns): each expert's share of the token's FFN output; a ring marks the
    experts the router kept."""
    length, experts = shares.shape
    columns = [f"E{e + 1}" for e in range(experts)]
    rows = [f"{t + 1} {label}" for t, label in enumerate(labels)]
    kept = np.where(chosen, "kept", "dropped")
    fig = go.Figure(go.Heatmap(
        z=np.round(100 * shares, 2), x=columns, y=rows, colorscale=SEQUENTIAL, zmin=0,
        zmax=max(25.0, float(np.ceil(100 * shares.max() / 5) * 5)), text=kept,
        colorbar=dict(title="share of<br>output (%)", thickness=12),
        hovertemplate="%{y}<br>%{x}: %{z:.1f}% of the FFN output norm<br>%{text}<extra></extra>"))
    t_idx, e_idx = np.nonzero(chosen)
    fig.add_trace(go.Scatter(x=[columns[e] for e in e_idx], y=[rows[t] for t in t_idx], mode="markers",
                             showlegend=False, hoverinfo="skip",
                             marker=dict(symbol="circle-open", size=min(14, max(6, 420 // max(length, 1))),
                                         color=ACCENT, line=dict(width=2.5))))
    fig.update_xaxes(side="top", showgrid=False)
    fig.update_yaxes(autorange="reversed", showgrid=False, tickfont=dict(family="monospace", size=10),
                     showticklabels=length <= 64, type="category")
    fig.update_layout(**base_layout(title=title, height=min(1100, max(360, 15 * length + 150)),
                                    margin=dict(l=10, r=10, t=80, b=10)))
    return fig


def expert_load(load: Sequence[float], k: int, title: str = "") -> go.Figure:
    """Fraction of tokens routed to each expert, against the k/8 a perfectly balanced router would give."""
    experts = len(load)
    ideal = k / experts
    fig = go.Figure(go.Bar(
        x=[f"E{e + 1}" for e in range(experts)], y=[100 * v for v in load], marker_color=OKABE_ITO[0],
        name="tokens that kept this expert",
        text=[f"{100 * v:.0f}%" for v in load], textposition="outside", cliponaxis=False,
        hovertemplate="%{x}: picked by %{y:.1f}% of the tokens<extra></extra>"))
    # The balanced level as a legend entry: an annotation on the line would sit on top of the bars.
    fig.add_trace(go.Scatter(x=[f"E{e + 1}" for e in range(experts)], y=[100 * ideal] * experts, mode="lines",
                             name=f"balanced router: {100 * ideal:.1f}% each", hoverinfo="skip",
                             line=dict(color=OKABE_ITO[1], dash="dash", width=2)))
    fig.update_yaxes(title="tokens routed here (%)", range=[0, 118], ticksuffix="%")
    fig.update_layout(**base_layout(title=title, height=380, showlegend=True, margin=dict(l=10, r=10, t=80, b=10),
                                    legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0)))
    return fig


def perplexity_over_k(ks: Sequence[int], by_router: Mapping[str, Sequence[float]], dense: float, selected_k: int,
                      title: str = "") -> go.Figure:
    """Perplexity (log scale) against the number of experts kept per token, one line per router."""
    fig = go.Figure()
    for router, values in by_router.items():
        name, colour, symbol = ROUTER_STYLE.get(router, (router, OKABE_ITO[2], "square"))
        ys = [v if v is not None and math.isfinite(v) else None for v in values]
        fig.add_trace(go.Scatter(x=list(ks), y=ys, name=name, mode="lines+markers", connectgaps=False,
                                 line=dict(color=colour, width=2.5), marker=dict(size=9, symbol=symbol),
                                 hovertemplate="k = %{x}: perplexity %{y:,.1f}<extra>" + name + "</extra>"))
    # A trace rather than add_hline's annotation: on a log axis an annotation's y is read as log10(y).
    fig.add_trace(go.Scatter(x=[min(ks), max(ks)], y=[dense, dense], mode="lines", name=f"dense model: {dense:,.1f}",
                             line=dict(color="gray", dash="dot", width=1.5), hoverinfo="skip"))
    fig.add_vline(x=selected_k, line=dict(color=ACCENT, dash="dash", width=1.5))
    fig.update_xaxes(title="experts kept per token (k of 8)", tickvals=list(ks), range=[0.6, max(ks) + 0.4])
    fig.update_yaxes(type="log", title="perplexity (log scale)", exponentformat="power")
    fig.update_layout(**base_layout(title=title, height=460, hovermode="x unified",
                                    legend=dict(orientation="h", y=-0.2, yanchor="top", x=0),
                                    margin=dict(l=10, r=10, t=50, b=10)))
    return fig
