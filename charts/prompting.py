"""Charts of prompting measured: each answer's score for one text, accuracy over a labelled set, and the sweep
over shots and example orders. Data in, plotly figure out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout, legend_below

ZERO, FEW = OKABE_ITO[4], OKABE_ITO[0]          # sky blue, blue
RAW, CALIBRATED = OKABE_ITO[0], OKABE_ITO[5]    # blue, vermilion
LABEL_COLOURS = [OKABE_ITO[i] for i in (0, 1, 2, 3, 4, 5)]
CHANCE = "#888888"   # mid grey: visible on light and dark backgrounds


def _chance_line(fig: go.Figure, chance: float) -> None:
    """The majority-label baseline: a dashed line across the plot, named in the legend (not on the bars)."""
    fig.add_hline(y=100 * chance, line=dict(color=CHANCE, dash="dash"))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color=CHANCE, dash="dash"),
                             name=f"always the commonest label: {100 * chance:.0f}%", hoverinfo="skip"))


def choice_scores(words: Sequence[str], conditions: Sequence[tuple[str, Sequence[float], Sequence[float]]],
                  score_name: str, title: str = "") -> go.Figure:
    """Each answer's share among the answers (bars) under each prompt; the score itself is printed on the bar.

    `conditions` holds (name, scores, shares over the answers) per prompt.
    """
    fig = go.Figure()
    colours = [ZERO, FEW, *OKABE_ITO[2:]]
    for (name, scores, shares), colour in zip(conditions, colours):
        best = int(np.argmax(scores))
        fig.add_trace(go.Bar(
            x=[plain(w) for w in words], y=[100 * s for s in shares], name=plain(name), marker_color=colour,
            marker_line=dict(color=["#D55E00" if i == best else "rgba(0,0,0,0)" for i in range(len(words))],
                             width=3),
            text=[f"{s:.2f}" for s in scores], textposition="outside", cliponaxis=False,
            customdata=[[f"{s:.4f}", f"{100 * p:.1f}"] for s, p in zip(scores, shares)],
            hovertemplate="%{x}<br>" + plain(score_name) + " %{customdata[0]}<br>%{customdata[1]}% of the "
                          "answers' probability<extra>" + plain(name) + "</extra>"))
    fig.update_layout(**base_layout(title=title, height=380, barmode="group", bargap=0.3))
    fig.update_yaxes(title="share among the answers (%)", range=[0, 118], fixedrange=True)
    fig.update_xaxes(title="answer the model could give", tickfont=dict(size=14), fixedrange=True)
    legend_below(fig, bottom=70)
    return fig


def accuracy_bars(names: Sequence[str], raw: Sequence[float], calibrated: Sequence[float] | None,
                  chance: float, title: str = "") -> go.Figure:
    """Accuracy (%) per prompt, raw and (optionally) calibrated, against the majority-label baseline."""
    fig = go.Figure()
    series = [("as scored", raw, RAW)] + ([("calibrated (content-free input subtracted)", calibrated, CALIBRATED)]
                                         if calibrated is not None else [])
    for name, values, colour in series:
        fig.add_trace(go.Bar(x=[plain(n) for n in names], y=[100 * v for v in values], name=name,
                             marker_color=colour, text=[f"{100 * v:.0f}%" for v in values], textposition="outside",
                             cliponaxis=False, hovertemplate="%{x}: %{y:.1f}%<extra>" + name + "</extra>"))
    _chance_line(fig, chance)
    fig.update_layout(**base_layout(title=title, height=360, barmode="group", bargap=0.35))
    fig.update_yaxes(title="accuracy on the set (%)", range=[0, 112], fixedrange=True)
    fig.update_xaxes(fixedrange=True, tickfont=dict(size=13))
    legend_below(fig, bottom=70)
    return fig


def label_shares(names: Sequence[str], labels: Sequence[str], shares: np.ndarray, true_shares: Sequence[float],
                 title: str = "") -> go.Figure:
    """Stacked bars: how often each prompt predicts each label, next to how often each label is right."""
    rows = [plain(n) for n in names] + ["the true labels"]
    table = np.vstack([np.asarray(shares, dtype=float), np.asarray(true_shares, dtype=float)[None]])
    fig = go.Figure()
    for j, label in enumerate(labels):
        fig.add_trace(go.Bar(y=rows, x=100 * table[:, j], name=plain(label), orientation="h",
                             marker_color=LABEL_COLOURS[j % len(LABEL_COLOURS)],
                             text=[f"{100 * v:.0f}%" if v >= 0.06 else "" for v in table[:, j]],
                             textposition="inside", insidetextanchor="middle",
                             hovertemplate="%{y}: " + plain(label) + " %{x:.0f}%<extra></extra>"))
    fig.update_layout(**base_layout(title=title, height=130 + 40 * len(rows), barmode="stack"))
    fig.update_xaxes(title="share of the items (%)", range=[0, 100], fixedrange=True)
    fig.update_yaxes(autorange="reversed", fixedrange=True)
    legend_below(fig, bottom=70)
    fig.update_layout(legend_traceorder="normal")   # stacked bars otherwise list their legend backwards
    return fig


def sweep_points(shots: Sequence[int], seeds: Sequence[int], raw: Sequence[float],
                 calibrated: Sequence[float] | None, chance: float, current: tuple[int, int] | None = None,
                 title: str = "") -> go.Figure:
    """Accuracy against the number of shots, one dot per example order; lines join the mean at each k."""
    fig = go.Figure()
    shots = np.asarray(shots)
    series = [("as scored", np.asarray(raw), RAW, "circle")]
    if calibrated is not None:
        series.append(("calibrated", np.asarray(calibrated), CALIBRATED, "diamond"))
    offsets = {"as scored": -0.08, "calibrated": 0.08}
    for name, values, colour, symbol in series:
        ks = sorted(set(shots.tolist()))
        means = [float(values[shots == k].mean()) for k in ks]
        fig.add_trace(go.Scatter(x=ks, y=[100 * m for m in means], mode="lines", name=f"{name}: mean over orders",
                                 line=dict(color=colour, width=2), hovertemplate="k = %{x}: mean %{y:.1f}%"
                                 "<extra>" + name + "</extra>"))
        fig.add_trace(go.Scatter(x=shots + offsets[name], y=100 * values, mode="markers", name=f"{name}: one order",
                                 marker=dict(color=colour, size=10, symbol=symbol, line=dict(color="white", width=1)),
                                 customdata=np.stack([shots, np.asarray(seeds)], axis=1),
                                 hovertemplate="k = %{customdata[0]}, order seed %{customdata[1]}: %{y:.1f}%"
                                 "<extra>" + name + "</extra>"))
    if current is not None:
        match = (shots == current[0]) & (np.asarray(seeds) == current[1])
        if match.any():
            fig.add_trace(go.Scatter(x=[current[0] - 0.08], y=[100 * float(np.asarray(raw)[match][0])],
                                     mode="markers", name="your k and order",
                                     marker=dict(size=20, symbol="circle-open", color=OKABE_ITO[1],
                                                 line=dict(width=3)), hoverinfo="skip"))
    _chance_line(fig, chance)
    fig.update_layout(**base_layout(title=title, height=420))
    fig.update_xaxes(title="shots k (solved examples in the prompt)", tickvals=sorted(set(shots.tolist())),
                     fixedrange=True)
    fig.update_yaxes(title="accuracy on the set (%)", range=[0, 105], fixedrange=True)
    legend_below(fig, bottom=90)
    return fig
