"""Charts of scaling laws: the loss along one compute budget's line, and the compute-optimal frontier with real
models placed on it. Pure figure builders: numbers in, plotly figures out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, base_layout, legend_below

GRID = "rgba(128,128,128,0.25)"
LAW_COLOURS = (OKABE_ITO[5], OKABE_ITO[0])   # blue, orange: one per law, the same on both charts
LAW_DASH = ("solid", "dash")


def _size(x: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if x >= size:
            return f"{x / size:g}{unit}"
    return f"{x:g}"


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, font=dict(size=14))


def iso_compute_loss(parameters: Sequence[float], losses: Sequence[Sequence[float]], law_names: Sequence[str],
                     optimum_parameters: Sequence[float], optimum_losses: Sequence[float],
                     title: str = "") -> go.Figure:
    """Predicted loss against model size with the budget fixed (D = C / 6N), one curve per law, each minimum
    starred."""
    n = np.asarray(parameters, dtype=float)
    fig = go.Figure()
    for i, (name, loss) in enumerate(zip(law_names, losses)):
        colour = LAW_COLOURS[i % 2]
        fig.add_trace(go.Scatter(x=n, y=list(loss), mode="lines", name=plain(name),
                                 line=dict(color=colour, width=2.4, dash=LAW_DASH[i % 2]),
                                 hovertemplate="%{x:.3s} parameters<br>loss %{y:.3f}<extra>" + plain(name) +
                                               "</extra>"))
        fig.add_trace(go.Scatter(x=[optimum_parameters[i]], y=[optimum_losses[i]], mode="markers",
                                 name=f"lowest loss ({plain(name)})", showlegend=True,
                                 marker=dict(color=colour, size=15, symbol="star", line=dict(color="white", width=1)),
                                 hovertemplate="compute-optimal<br>%{x:.3s} parameters<br>loss %{y:.3f}"
                                               "<extra></extra>"))
    finite = np.concatenate([np.asarray(l, float) for l in losses])
    low = float(np.min(optimum_losses))
    fig.update_layout(**base_layout(title=_title(title), height=420))
    legend_below(fig, bottom=90)
    fig.update_xaxes(type="log", title="model size N, parameters (log scale); tokens D = C / 6N fall to the right",
                     gridcolor=GRID)
    fig.update_yaxes(title="predicted loss (nats per token)", gridcolor=GRID,
                     range=[low - 0.05, min(float(np.nanmax(finite)), low + 1.5)])
    return fig


def compute_frontier(budgets: Sequence[float], frontier_parameters: Sequence[Sequence[float]],
                     law_names: Sequence[str], model_names: Sequence[str], model_compute: Sequence[float],
                     model_parameters: Sequence[float], highlight: Sequence[bool], budget: float,
                     title: str = "") -> go.Figure:
    """Compute-optimal model size against training compute (log-log), one line per law, with real models
    placed at their own compute 6ND and size, and the chosen budget as a vertical line."""
    c = np.asarray(budgets, dtype=float)
    fig = go.Figure()
    for i, (name, n) in enumerate(zip(law_names, frontier_parameters)):
        fig.add_trace(go.Scatter(x=c, y=list(n), mode="lines", name=f"compute-optimal N ({plain(name)})",
                                 line=dict(color=LAW_COLOURS[i % 2], width=2.4, dash=LAW_DASH[i % 2]),
                                 hovertemplate="C = %{x:.3s} FLOPs<br>optimal N %{y:.3s}<extra></extra>"))
    fig.add_trace(go.Scatter(x=list(model_compute), y=list(model_parameters), mode="markers+text",
                             text=[plain(m) for m in model_names], cliponaxis=False, showlegend=False,
                             textposition=["top left" if i % 2 == 0 else "bottom right" for i in range(len(model_names))],
                             marker=dict(color=[ACCENT if h else OKABE_ITO[3] for h in highlight], size=13,
                                         line=dict(color="white", width=1)),
                             hovertemplate="%{text}<br>%{y:.3s} parameters<br>C = 6ND = %{x:.3s} FLOPs"
                                           "<extra></extra>"))
    fig.add_vline(x=budget, line=dict(color="rgba(128,128,128,0.8)", dash="dot", width=1.4),
                  annotation=dict(text="your budget", font=dict(size=12)), annotation_position="bottom right")
    fig.update_layout(**base_layout(title=_title(title), height=460))
    legend_below(fig, bottom=80)
    fig.update_xaxes(type="log", title="training compute C, FLOPs (log scale)", gridcolor=GRID)
    decades = [10.0 ** e for e in range(6, 15)]
    fig.update_yaxes(type="log", title="parameters N (log scale)", gridcolor=GRID, tickvals=decades,
                     ticktext=[_size(v) for v in decades])
    return fig
