"""Charts of a LoRA run: the taught answers' token probabilities, before/after per fact, the loss per step and
the singular values of the learned updates. Pure figure builders: numbers in, plotly figures out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout, legend_below

GRID = "rgba(128,128,128,0.25)"
BEFORE, AFTER = OKABE_ITO[0], OKABE_ITO[1]


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, font=dict(size=14))


def answer_token_probabilities(labels: Sequence[str], facts: Sequence[str], probs: Sequence[float],
                               after: Sequence[float] | None = None, title: str = "", height: int = 340) -> go.Figure:
    """One bar per answer token (label 'fact · token'), its probability given everything before it; with `after`,
    a second bar per token after training. Log scale: unknown facts start near 1e-4 and end near 1."""
    names = [plain(f"{f} · {t}") for f, t in zip(facts, labels)]
    fig = go.Figure(go.Bar(x=names, y=[max(float(p), 1e-9) for p in probs], name="before training (the model)",
                           marker_color=BEFORE, customdata=np.asarray(probs, dtype=float),
                           hovertemplate="%{x}<br>p = %{customdata:.3g}<extra>before</extra>"))
    if after is not None:
        fig.add_trace(go.Bar(x=names, y=[max(float(p), 1e-9) for p in after], name="after LoRA training",
                             marker_color=AFTER, customdata=np.asarray(after, dtype=float),
                             hovertemplate="%{x}<br>p = %{customdata:.3g}<extra>after</extra>"))
    fig.update_yaxes(type="log", range=[-6, 0.05], title="probability of the answer token", gridcolor=GRID,
                     tickvals=[1e-6, 1e-4, 1e-2, 1], ticktext=["0.0001%", "0.01%", "1%", "100%"])
    fig.update_xaxes(tickangle=-35, automargin=True)
    fig.update_layout(**base_layout(title=_title(title), height=height, barmode="group", bargap=0.3))
    legend_below(fig, bottom=90)
    return fig


def loss_per_step(losses: Sequence[float], title: str = "", height: int = 300,
                  y_title: str = "mean loss on the answers (nats)") -> go.Figure:
    steps = np.arange(1, len(losses) + 1)
    fig = go.Figure(go.Scatter(x=steps, y=list(losses), mode="lines+markers", line=dict(color=OKABE_ITO[2], width=2),
                               marker=dict(size=5), name="loss",
                               hovertemplate="step %{x}<br>loss %{y:.4f} nats<extra></extra>"))
    fig.update_yaxes(title=y_title, rangemode="tozero", gridcolor=GRID)
    fig.update_xaxes(title="optimizer step", gridcolor=GRID, dtick=1 if len(losses) <= 20 else None)
    fig.update_layout(**base_layout(title=_title(title), height=height, showlegend=False))
    return fig


def update_singular_values(names: Sequence[str], values: Sequence[Sequence[float]], title: str = "",
                           height: int = 320) -> go.Figure:
    """Singular values of each learned update (one line per matrix): at most r are non-zero."""
    fig = go.Figure()
    for i, (name, vals) in enumerate(zip(names, values)):
        fig.add_trace(go.Scatter(x=np.arange(1, len(vals) + 1), y=list(vals), mode="lines+markers", name=plain(name),
                                 line=dict(color=OKABE_ITO[i % len(OKABE_ITO)], width=2),
                                 hovertemplate=f"{plain(name)}<br>singular value %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_yaxes(title="singular value of ΔW", rangemode="tozero", gridcolor=GRID)
    fig.update_xaxes(title="index (largest first)", dtick=1 if max((len(v) for v in values), default=1) <= 16 else None,
                     gridcolor=GRID)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=80)
    return fig
