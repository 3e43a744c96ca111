"""Charts of the emergence page: one answer's per-token probabilities, per-token vs exact-match scores by number
of digits, and the curves p^L that turn a smooth per-token change into a cliff. Pure figure builders."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout, legend_below

GRID = "rgba(128,128,128,0.25)"
PER_TOKEN, EXACT = OKABE_ITO[0], OKABE_ITO[5]


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, font=dict(size=14))


def answer_tokens(pieces: Sequence[str], probs: Sequence[float], top: Sequence[str], title: str = "",
                  height: int = 340) -> go.Figure:
    """P(correct token) at each answer position; bars in blue when it is the model's top choice, else orange."""
    correct = [p == t for p, t in zip(pieces, top)]
    x = [f"{i + 1}: {plain(p)}" for i, p in enumerate(pieces)]
    fig = go.Figure(go.Bar(x=x, y=list(probs), marker_color=[PER_TOKEN if c else EXACT for c in correct],
                           text=[f"{p:.2f}" for p in probs], textposition="outside", cliponaxis=False,
                           customdata=[plain(t) for t in top], name="P(correct digit)",
                           hovertemplate="%{x}<br>P(correct) %{y:.3f}<br>model's top choice: %{customdata}"
                                         "<extra></extra>"))
    fig.update_xaxes(title="answer token (position: correct digit)", type="category")
    fig.update_yaxes(title="probability of the correct token", range=[0, 1.12], gridcolor=GRID)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    return fig


def two_metrics(digits: Sequence[int], token_prob: Sequence[float], token_acc: Sequence[float],
                exact_prob: Sequence[float], greedy: Sequence[float], predicted: Sequence[float],
                log_y: bool = False, title: str = "", height: int = 420) -> go.Figure:
    """Per-token scores (blue) and whole-answer scores (vermilion) against the number of digits k."""
    fig = go.Figure()
    series = (("mean P(correct token)", token_prob, PER_TOKEN, "solid", "circle"),
              ("per-token accuracy (top choice right)", token_acc, PER_TOKEN, "dot", "square"),
              ("exact match: P(whole answer) = product", exact_prob, EXACT, "solid", "circle"),
              ("exact match, greedy (all digits top choice)", greedy, EXACT, "dot", "square"),
              ("(mean P per token)^(answer length)", predicted, "rgba(128,128,128,0.9)", "dash", None))
    for name, values, colour, dash, symbol in series:
        y = np.asarray(values, dtype=float)
        if log_y:
            y = np.where(y > 0, y, np.nan)   # a log axis cannot show 0
        fig.add_trace(go.Scatter(x=list(digits), y=y, mode="lines+markers" if symbol else "lines", name=name,
                                 line=dict(color=colour, dash=dash, width=2.6), marker=dict(size=8, symbol=symbol),
                                 hovertemplate=f"{name}<br>k = %{{x}} digits<br>%{{y:.3g}}<extra></extra>"))
    fig.update_xaxes(title="k: digits per operand", dtick=1, gridcolor=GRID)
    if log_y:
        fig.update_yaxes(type="log", title="score (log scale)", gridcolor=GRID, exponentformat="power")
    else:
        fig.update_yaxes(title="score", range=[0, 1.02], gridcolor=GRID)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=110)
    return fig


def power_curves(lengths: Sequence[int], measured_p: float | None = None, title: str = "",
                 height: int = 380) -> go.Figure:
    """p^L against p for several answer lengths L: each curve is smooth in p, yet for long answers nearly all
    of its rise happens close to p = 1."""
    p = np.linspace(0, 1, 201)
    fig = go.Figure()
    for i, length in enumerate(lengths):
        fig.add_trace(go.Scatter(x=p, y=p ** length, mode="lines", name=f"L = {length}",
                                 line=dict(color=OKABE_ITO[i % 7], width=2.2),
                                 hovertemplate=f"L = {length}<br>p = %{{x:.2f}}<br>p^L = %{{y:.3f}}<extra></extra>"))
    if measured_p is not None and np.isfinite(measured_p):
        fig.add_vline(x=measured_p, line=dict(color="rgba(128,128,128,0.9)", dash="dash", width=1.4),
                      annotation=dict(text=f"this model: p = {measured_p:.2f}", font=dict(size=12),
                                      xanchor="left", yanchor="top", y=1))
    fig.update_xaxes(title="p: probability of each token being right (rises smoothly with scale)", range=[0, 1],
                     gridcolor=GRID)
    fig.update_yaxes(title="p^L: whole answer right", range=[0, 1.02], gridcolor=GRID)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=80)
    return fig
