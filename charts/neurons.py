"""Charts of FFN neurons: one token's 1,536 neurons, one neuron along a text, what a neuron writes, what
silencing neurons changes, and where a block's parameters sit. Data in, plotly figure out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.sampling import _unique
from charts.style import OKABE_ITO, base_layout

NEURON = OKABE_ITO[0]        # blue: every neuron
CHOSEN = OKABE_ITO[5]        # vermillion: the neuron (or token) in focus
RANKED = OKABE_ITO[1]        # orange: the most active neurons
PROMOTES, SUPPRESSES = OKABE_ITO[2], OKABE_ITO[3]   # green up, purple down
INTACT, SILENCED, CONTROL = "#9AA5B1", OKABE_ITO[5], OKABE_ITO[4]
ATTENTION_PARTS, FFN_PARTS, NORM_PARTS = OKABE_ITO[4], OKABE_ITO[1], "#9AA5B1"


def neuron_values(values: np.ndarray, ranked: Sequence[int], chosen: int, measure: str, title: str = "") -> go.Figure:
    """Every neuron's value at one token (x = neuron number, 1-based); the ranked ones and the chosen one
    drawn in their own colours. Thin bars: 1,536 of them fill the width like a spectrum."""
    n = len(values)
    colours = np.full(n, NEURON, dtype=object)
    colours[list(ranked)] = RANKED
    colours[chosen] = CHOSEN
    fig = go.Figure(go.Bar(x=np.arange(1, n + 1), y=values, marker_color=colours.tolist(), marker_line_width=0,
                           hovertemplate=f"neuron %{{x}}<br>{measure} %{{y:.3f}}<extra></extra>"))
    near_right = chosen > 0.8 * n   # point the label inwards so it is never clipped at the chart's edge
    fig.add_annotation(x=chosen + 1, y=float(values[chosen]), text=f"neuron {chosen + 1}", showarrow=True,
                       arrowhead=2, arrowcolor=CHOSEN, font=dict(color=CHOSEN), ax=-40 if near_right else 40,
                       ay=-30 if values[chosen] >= 0 else 30)
    fig.update_layout(**base_layout(title=title, height=300, bargap=0))
    fig.update_xaxes(title="neuron (1 to %d)" % n, range=[0.5, n + 0.5])
    fig.update_yaxes(title=measure, zeroline=True, zerolinecolor="rgba(128,128,128,0.6)")
    return fig


def along_text(labels: Sequence[str], values: np.ndarray, position: int, neuron: int, title: str = "") -> go.Figure:
    """One neuron's product at every token of the text; the chosen token in its own colour."""
    colours = [CHOSEN if i == position else NEURON for i in range(len(labels))]
    fig = go.Figure(go.Bar(x=_unique(labels), y=values, marker_color=colours,
                           customdata=np.arange(1, len(labels) + 1),
                           hovertemplate="token %{customdata}: %{x}<br>product %{y:.3f}<extra></extra>"))
    fig.update_layout(**base_layout(title=title, height=300))
    fig.update_xaxes(tickangle=-60 if len(labels) > 12 else 0, tickfont=dict(family="monospace"))
    fig.update_yaxes(title=f"neuron {neuron + 1}: product", zeroline=True, zerolinecolor="rgba(128,128,128,0.6)")
    return fig


def logit_effect_bars(promoted: Sequence[str], promoted_scores: Sequence[float], suppressed: Sequence[str],
                      suppressed_scores: Sequence[float], title: str = "") -> go.Figure:
    """Two columns of horizontal bars: the tokens one unit of activation raises most, and lowers most."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.18,
                        subplot_titles=("raised (product > 0)", "lowered (product > 0)"))
    for col, (labels, scores, colour) in enumerate([(promoted, promoted_scores, PROMOTES),
                                                     (suppressed, suppressed_scores, SUPPRESSES)], start=1):
        fig.add_trace(go.Bar(x=list(scores), y=_unique(labels), orientation="h", marker_color=colour,
                             hovertemplate="%{y}<br>logit change per unit: %{x:+.3f}<extra></extra>",
                             showlegend=False), row=1, col=col)
        fig.update_yaxes(autorange="reversed", tickfont=dict(family="monospace"), row=1, col=col)
        fig.update_xaxes(title="logit change per unit", row=1, col=col)
    fig.update_layout(**base_layout(title=title, height=max(300, 26 * len(promoted) + 120)))
    fig.update_layout(margin=dict(l=10, r=10, t=70, b=10))
    return fig


def ablation_bars(labels: Sequence[str], intact: Sequence[float], silenced: Sequence[float],
                  control: Sequence[float] | None = None, silenced_name: str = "silenced",
                  control_name: str = "control", title: str = "") -> go.Figure:
    """The next-token probabilities (percent) of the intact model's top tokens, intact vs with neurons silenced."""
    rows = _unique(labels)
    fig = go.Figure()
    series = [("intact model", intact, INTACT), (silenced_name, silenced, SILENCED)]
    if control is not None:
        series.append((control_name, control, CONTROL))
    for name, probs, colour in series:
        fig.add_trace(go.Bar(x=[100 * p for p in probs], y=rows, orientation="h", name=name, marker_color=colour,
                             hovertemplate="%{y}<br>%{x:.2f}%<extra>" + plain(name) + "</extra>"))
    height = max(320, 40 * len(labels) + 150)
    fig.update_layout(**base_layout(title=title, barmode="group", height=height,
                                    legend=dict(orientation="h", yanchor="top", y=-70 / (height - 140), x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=90))
    fig.update_yaxes(autorange="reversed", tickfont=dict(family="monospace", size=14))
    fig.update_xaxes(title="next-token probability (%)", rangemode="tozero")
    return fig


def parameter_bars(parts: Sequence[tuple[str, int]], title: str = "") -> go.Figure:
    """One block's parameters, part by part, as one stacked bar (attention blue-ish, FFN orange, norms grey)."""
    fig = go.Figure()
    total = sum(n for _, n in parts)
    for name, count in parts:
        colour = FFN_PARTS if name.startswith("mlp.") else NORM_PARTS if "norm" in name else ATTENTION_PARTS
        short = name.split(".")[-1]
        fig.add_trace(go.Bar(x=[count], y=["one block"], orientation="h", name=short, marker_color=colour,
                             marker_line=dict(width=1, color="rgba(255,255,255,0.8)"),
                             text=short if count / total > 0.05 else None, textposition="inside",
                             insidetextanchor="middle",
                             hovertemplate=f"{plain(name)}<br>%{{x:,}} parameters ({100 * count / total:.2f}%)"
                                           "<extra></extra>"))
    fig.update_layout(**base_layout(title=title, barmode="stack", height=190, showlegend=False))
    fig.update_xaxes(title="parameters", range=[0, total])
    fig.update_yaxes(showticklabels=False)
    return fig
