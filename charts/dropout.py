"""Charts of dropout: the next-token probabilities of repeated passes, and train against validation loss of two
baby-GPT runs. Pure figure builders."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout, legend_below

GRID = "rgba(128,128,128,0.25)"


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, font=dict(size=14))


def pass_spread(labels: Sequence[str], pass_probs: np.ndarray, clean: Sequence[float], title: str = "") -> go.Figure:
    """For each candidate token, one dot per pass (its probability in that pass) and the model's own pass as a
    bar behind them."""
    x = [plain(l) for l in labels]
    probs = np.asarray(pass_probs, dtype=float)     # [passes, tokens]
    fig = go.Figure(go.Bar(x=x, y=list(clean), name="no dropout (the model's own pass)", marker_color=PRIMARY,
                           opacity=0.45, hovertemplate="%{x}<br>no dropout: %{y:.3f}<extra></extra>"))
    for i, row in enumerate(probs):
        fig.add_trace(go.Scatter(x=x, y=list(row), mode="markers", name="one pass with dropout",
                                 legendgroup="passes", showlegend=i == 0,
                                 marker=dict(color=ACCENT, size=9, opacity=0.8, line=dict(color="white", width=0.5)),
                                 hovertemplate=f"pass {i + 1}<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(**base_layout(title=_title(title), height=400))
    legend_below(fig, bottom=110)
    fig.update_layout(legend=dict(y=-0.4))
    fig.update_xaxes(tickangle=-40, tickfont=dict(family="ui-monospace, Menlo, Consolas, monospace", size=12))
    fig.update_yaxes(title="probability of the next token", rangemode="tozero", gridcolor=GRID)
    return fig


def train_val_runs(names: Sequence[str], steps: Sequence[Sequence[int]], train: Sequence[Sequence[float]],
                   val: Sequence[Sequence[float]], title: str = "") -> go.Figure:
    """Train (solid) and validation (dotted) loss of each run, one colour per run: the gap is overfitting."""
    fig = go.Figure()
    colours = (OKABE_ITO[5], OKABE_ITO[0], OKABE_ITO[2], OKABE_ITO[3])
    for i, name in enumerate(names):
        c = colours[i % len(colours)]
        fig.add_trace(go.Scatter(x=list(steps[i]), y=list(train[i]), mode="lines+markers", name=f"{plain(name)}: train",
                                 line=dict(color=c, width=2.2), marker=dict(size=5),
                                 hovertemplate="step %{x}<br>train loss %{y:.3f}<extra></extra>"))
        fig.add_trace(go.Scatter(x=list(steps[i]), y=list(val[i]), mode="lines+markers",
                                 name=f"{plain(name)}: validation", line=dict(color=c, width=2.2, dash="dot"),
                                 marker=dict(size=6, symbol="diamond"),
                                 hovertemplate="step %{x}<br>validation loss %{y:.3f}<extra></extra>"))
    fig.update_layout(**base_layout(title=_title(title), height=420))
    legend_below(fig, bottom=100)
    fig.update_xaxes(title="optimizer step", gridcolor=GRID)
    fig.update_yaxes(title="loss (nats per character)", gridcolor=GRID)
    return fig
