"""Compression charts: quality against bits or sparsity, and a weight histogram before and after."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout


def damage_curve(settings: Sequence[float], perplexities: Sequence[float], agreements: Sequence[float],
                 base_perplexity: float, current: float, x_title: str, setting_format: str = "{:g}",
                 title: str = "") -> go.Figure:
    """Perplexity (log axis, left) and the share of unchanged top-1 tokens (right) against the setting."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    labels = [setting_format.format(s) for s in settings]
    fig.add_trace(go.Scatter(x=list(settings), y=list(perplexities), mode="lines+markers", name="perplexity",
                             line=dict(color=PRIMARY, width=2.5), customdata=[[l] for l in labels],
                             hovertemplate="%{customdata[0]}<br>perplexity %{y:,.2f}<extra></extra>"), secondary_y=False)
    fig.add_trace(go.Scatter(x=list(settings), y=[100 * a for a in agreements], mode="lines+markers",
                             name="top-1 token unchanged (%)", line=dict(color=ACCENT, width=2, dash="dash"),
                             customdata=[[l] for l in labels],
                             hovertemplate="%{customdata[0]}<br>%{y:.1f}% unchanged<extra></extra>"), secondary_y=True)
    fig.add_hline(y=base_perplexity, line=dict(color=OKABE_ITO[2], dash="dot", width=1.5),
                  annotation=dict(text=f"float32: {base_perplexity:,.2f}", font=dict(size=12), xanchor="left", x=0))
    if current in settings:
        i = list(settings).index(current)
        fig.add_trace(go.Scatter(x=[current], y=[perplexities[i]], mode="markers", name="your setting",
                                 marker=dict(size=14, color=ACCENT, line=dict(color="white", width=1.5)),
                                 hoverinfo="skip"), secondary_y=False)
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=380,
                                    legend=dict(orientation="h", y=-0.25, x=0), margin=dict(l=10, r=10, t=40, b=80)))
    fig.update_xaxes(title=x_title, tickvals=list(settings), ticktext=labels, gridcolor="rgba(128,128,128,0.2)")
    fig.update_yaxes(title="perplexity (log scale)", type="log", gridcolor="rgba(128,128,128,0.2)", secondary_y=False)
    fig.update_yaxes(title="top-1 unchanged (%)", range=[0, 105], showgrid=False, secondary_y=True)
    return fig


def weight_histograms(before: np.ndarray, after: np.ndarray, after_name: str, title: str = "") -> go.Figure:
    """The same sample of weights before and after, on shared bins: quantization shows as spikes on a grid,
    pruning as a spike at zero."""
    low, high = float(min(before.min(), after.min())), float(max(before.max(), after.max()))
    bins = dict(start=low, end=high, size=(high - low) / 160 or 1e-6)
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=before, xbins=bins, name="float32", marker_color="rgba(150,150,150,0.6)"))
    fig.add_trace(go.Histogram(x=after, xbins=bins, name=plain(after_name), marker_color=PRIMARY, opacity=0.75))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=340,
                                    barmode="overlay", legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                                    margin=dict(l=10, r=10, t=70, b=40)))
    fig.update_xaxes(title="weight value", gridcolor="rgba(128,128,128,0.2)")
    fig.update_yaxes(title="weights (log scale)", type="log", dtick=1, gridcolor="rgba(128,128,128,0.2)")
    return fig


SURVIVAL = ("pruned by both", "kept by magnitude only", "kept by Wanda only", "kept by both")
SURVIVAL_COLOURS = ("#E0E0E0", OKABE_ITO[1], OKABE_ITO[0], "#3A3A3A")


def survival_heatmap(codes: np.ndarray, title: str = "") -> go.Figure:
    """Each weight of a matrix corner coloured by which pruning method keeps it (codes 0-3, see SURVIVAL)."""
    scale = []   # four flat bands: a discrete colour per code
    for i, colour in enumerate(SURVIVAL_COLOURS):
        scale += [[i / 4, colour], [(i + 1) / 4, colour]]
    fig = go.Figure(go.Heatmap(z=codes, zmin=-0.5, zmax=3.5, colorscale=scale, showscale=False,
                               customdata=np.array(SURVIVAL, dtype=object)[codes],
                               hovertemplate="output %{y}, input %{x}: %{customdata}<extra></extra>"))
    for name, colour in zip(SURVIVAL, SURVIVAL_COLOURS):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                                 marker=dict(symbol="square", size=13, color=colour,
                                             line=dict(color="rgba(128,128,128,0.6)", width=1))))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=360,
                                    legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                                    margin=dict(l=10, r=10, t=70, b=40)))
    fig.update_xaxes(title="input feature", showgrid=False, zeroline=False)
    fig.update_yaxes(title="output row", autorange="reversed", showgrid=False, zeroline=False)
    return fig
