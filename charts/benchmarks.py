"""Charts of a benchmark measured: one item's choice scores under each scoring format, accuracy per format with its
95% interval, and per-token log-probabilities of a famous text against a paraphrase. Data in, figure out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout, legend_below

RIGHT, WRONG, PICKED = OKABE_ITO[2], OKABE_ITO[0], OKABE_ITO[5]   # green, blue, vermilion outline
CHANCE = "#888888"
SERIES = [OKABE_ITO[5], OKABE_ITO[0], OKABE_ITO[2]]               # verbatim, paraphrase, the reader's text


def item_scores(options: Sequence[str], variants: Sequence[str], scores: Sequence[Sequence[float]], answer: int,
                units: Sequence[str], title: str = "") -> go.Figure:
    """One panel per scoring format: each option's score (closer to 0 = likelier); the true answer green, the
    option the format picks outlined."""
    fig = make_subplots(rows=1, cols=len(variants), subplot_titles=[plain(v) for v in variants],
                        horizontal_spacing=0.06, shared_yaxes=True)
    labels = [plain(o) for o in options]
    for col, (variant, values, unit) in enumerate(zip(variants, scores, units), start=1):
        values = np.asarray(values, dtype=float)
        best = int(np.argmax(values))
        fig.add_trace(go.Bar(
            y=labels, x=values, orientation="h", showlegend=False,
            marker_color=[RIGHT if i == answer else WRONG for i in range(len(labels))],
            marker_line=dict(color=[PICKED if i == best else "rgba(0,0,0,0)" for i in range(len(labels))], width=3),
            text=[f"{v:.2f}" for v in values], textposition="auto",
            customdata=values, hovertemplate="%{y}: %{customdata:.4f} " + plain(unit) + "<extra>"
                                             + plain(variant) + "</extra>"), row=1, col=col)
        fig.update_xaxes(title=plain(unit), fixedrange=True, row=1, col=col, title_font=dict(size=12))
    for name, colour in (("true answer", RIGHT), ("other options", WRONG)):
        fig.add_trace(go.Bar(x=[None], y=[None], marker_color=colour, name=name, orientation="h"))
    fig.add_trace(go.Bar(x=[None], y=[None], marker_color="rgba(0,0,0,0)", marker_line=dict(color=PICKED, width=3),
                         name="the format's pick (highest score)", orientation="h"))
    fig.update_layout(**base_layout(title=title, height=340, bargap=0.25))
    fig.update_yaxes(autorange="reversed", fixedrange=True, tickfont=dict(size=13))
    fig.update_annotations(font_size=13)
    legend_below(fig, bottom=80)
    return fig


def accuracy_bars(names: Sequence[str], accuracy: Sequence[float], low: Sequence[float], high: Sequence[float],
                  chance: float, selected: int | None = None, title: str = "") -> go.Figure:
    """Accuracy (%) per scoring format with its 95% Wilson interval as error bars, against the chance line."""
    acc = 100 * np.asarray(accuracy, dtype=float)
    fig = go.Figure(go.Bar(
        x=[plain(n) for n in names], y=acc, showlegend=False,
        marker_color=[OKABE_ITO[0] if i != selected else OKABE_ITO[5] for i in range(len(names))],
        error_y=dict(type="data", symmetric=False, array=100 * np.asarray(high) - acc,
                     arrayminus=acc - 100 * np.asarray(low), color=CHANCE, thickness=2, width=8),
        text=[f"{a:.0f}%" for a in acc], textposition="inside",
        customdata=np.stack([100 * np.asarray(low), 100 * np.asarray(high)], axis=-1),
        hovertemplate="%{x}: %{y:.1f}% (95% interval %{customdata[0]:.0f}-%{customdata[1]:.0f}%)<extra></extra>"))
    fig.add_hline(y=100 * chance, line=dict(color=CHANCE, dash="dash"))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color=CHANCE, dash="dash"),
                             name=f"chance: guessing among 4 options, {100 * chance:.0f}%", hoverinfo="skip"))
    fig.update_layout(**base_layout(title=title, height=360, bargap=0.4))
    fig.update_yaxes(title="accuracy (%), whiskers = 95% interval", range=[0, 105], fixedrange=True)
    fig.update_xaxes(fixedrange=True, tickfont=dict(size=13))
    legend_below(fig, bottom=70)
    return fig


def token_logprobs(series: Sequence[tuple[str, Sequence[str], Sequence[float], Sequence[int]]],
                   title: str = "") -> go.Figure:
    """ln p of every token along each text; the k% least likely tokens (what Min-K% averages) drawn large.

    `series` holds (name, token texts, ln p per token, positions of the lowest k%) per text.
    """
    fig = go.Figure()
    for (name, tokens, values, lowest), colour in zip(series, SERIES):
        values = np.asarray(values, dtype=float)
        size = np.full(len(values), 5.0)
        size[list(lowest)] = 13.0
        fig.add_trace(go.Scatter(
            x=np.arange(1, len(values) + 1), y=values, mode="lines+markers", name=plain(name),
            line=dict(color=colour, width=2), marker=dict(color=colour, size=size),
            customdata=[plain(t) for t in tokens],
            hovertemplate="token %{x} '%{customdata}': ln p = %{y:.2f}<extra>" + plain(name) + "</extra>"))
    fig.update_layout(**base_layout(title=title, height=380))
    fig.update_xaxes(title="token position in the text (large dots: the k% least likely tokens)", fixedrange=True)
    fig.update_yaxes(title="ln p(token | text before it)", fixedrange=True)
    legend_below(fig, bottom=80)
    return fig
