"""QLoRA charts: normalised weights against the NF4 and INT4 grids, errors, the whole-model comparison, a map
of NF4 against INT4 over every matrix, and fine-tuning memory by model size."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, DIVERGING, OKABE_ITO, PRIMARY, base_layout, legend_below

GRID = "rgba(128,128,128,0.2)"
NF4_COLOUR, INT4_COLOUR, INT8_COLOUR, FLOAT_COLOUR = ACCENT, PRIMARY, OKABE_ITO[2], "rgba(150,150,150,0.8)"


def _vertical_lines(xs: Sequence[float], top: float) -> tuple[list, list]:
    x, y = [], []
    for v in xs:
        x += [v, v, None]
        y += [0, top, None]
    return x, y


def levels_histogram(edges: np.ndarray, counts: np.ndarray, nf4: Sequence[float], int4: Sequence[float],
                     title: str = "") -> go.Figure:
    """The block-normalised weights (w / its block's absmax) with the values each 4-bit code can take."""
    centres = (edges[:-1] + edges[1:]) / 2
    top = float(counts.max()) * 1.05
    fig = go.Figure()
    fig.add_trace(go.Bar(x=centres, y=counts, width=float(edges[1] - edges[0]), name="weights / block absmax",
                         marker=dict(color=FLOAT_COLOUR, line=dict(width=0)),
                         hovertemplate="%{x:.3f}: %{y:,} weights<extra></extra>"))
    x, y = _vertical_lines(nf4, top)
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"NF4: {len(nf4)} levels",
                             line=dict(color=NF4_COLOUR, width=2), hoverinfo="skip"))
    x, y = _vertical_lines(int4, top * 0.8)
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"INT4 absmax: {len(int4)} levels",
                             line=dict(color=INT4_COLOUR, width=2, dash="dot"), hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=list(nf4), y=[top] * len(nf4), mode="markers", showlegend=False,
                             marker=dict(color=NF4_COLOUR, size=7, symbol="triangle-down"),
                             hovertemplate="NF4 level %{x:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=list(int4), y=[top * 0.8] * len(int4), mode="markers", showlegend=False,
                             marker=dict(color=INT4_COLOUR, size=6, symbol="circle"),
                             hovertemplate="INT4 level %{x:.4f}<extra></extra>"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=380,
                                    bargap=0))
    legend_below(fig, bottom=70)
    fig.update_xaxes(title="weight / absmax of its block", range=[-1.05, 1.05], gridcolor=GRID)
    fig.update_yaxes(title="weights", gridcolor=GRID, rangemode="tozero")
    return fig


def perplexity_bars(variants: Sequence[str], perplexities: Sequence[float], base: float, title: str = "") -> go.Figure:
    colours = [NF4_COLOUR if v.startswith("NF4") else INT8_COLOUR if v.startswith("INT8") else INT4_COLOUR
               for v in variants]
    fig = go.Figure(go.Bar(x=list(variants), y=list(perplexities), marker_color=colours,
                           text=[f"{p:,.2f}" for p in perplexities], textposition="outside",
                           hovertemplate="%{x}: perplexity %{y:,.2f}<extra></extra>"))
    fig.add_hline(y=base, line=dict(color=OKABE_ITO[3], dash="dash", width=2))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"float32 (unquantized): {base:,.2f}",
                             line=dict(color=OKABE_ITO[3], dash="dash", width=2)))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=360))
    legend_below(fig, bottom=60)
    fig.data[0].showlegend = False
    fig.update_yaxes(title="perplexity on your text", rangemode="tozero", gridcolor=GRID,
                     range=[0, max(max(perplexities), base) * 1.18])
    return fig


def scan_heatmap(ratios: np.ndarray, projections: Sequence[str], title: str = "") -> go.Figure:
    """NF4's squared error as a share of INT4's, [projection, layer]: blue below 1 (NF4 better), red above."""
    fig = go.Figure(go.Heatmap(z=ratios, x=list(range(1, ratios.shape[1] + 1)), y=list(projections),
                               colorscale=DIVERGING, zmid=1.0, zmin=min(0.4, float(np.nanmin(ratios))),
                               zmax=max(1.6, float(np.nanmax(ratios))),
                               colorbar=dict(title=dict(text="ratio"), thickness=12),
                               hovertemplate="layer %{x}, %{y}<br>NF4 MSE = %{z:.2f} × INT4's<extra></extra>"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=300,
                                    margin=dict(l=10, r=10, t=50, b=10)))
    fig.update_xaxes(title="layer", dtick=2)
    fig.update_yaxes(autorange="reversed")      # q_proj on top, in the order a block runs them
    return fig


def memory_bars(names: Sequence[str], full: Sequence[float], lora: Sequence[float], qlora: Sequence[float],
                gpus: Sequence[tuple[str, float]] = (), title: str = "") -> go.Figure:
    """Bytes to fine-tune each model by method (log axis), with GPU memory sizes as lines."""
    fig = go.Figure()
    for label, values, colour in (("full fine-tuning", full, FLOAT_COLOUR), ("LoRA (bf16 base)", lora, INT4_COLOUR),
                                  ("QLoRA (NF4 base)", qlora, NF4_COLOUR)):
        fig.add_trace(go.Bar(x=list(names), y=[v / 1e9 for v in values], name=label, marker_color=colour,
                             hovertemplate="%{x}<br>" + label + ": %{y:,.2f} GB<extra></extra>"))
    # GPU sizes as line traces, not shapes: plotly's shapes and their autorange disagree on a log axis
    for (label, gb), dash in zip(gpus, ("dot", "dash", "longdash")):
        fig.add_trace(go.Scatter(x=list(names), y=[gb] * len(names), mode="lines", name=f"GPU {label}",
                                 line=dict(color=OKABE_ITO[5], dash=dash, width=1.5),
                                 hovertemplate=f"{label}<extra></extra>"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=400,
                                    barmode="group"))
    legend_below(fig, bottom=70)
    fig.update_yaxes(title="GB (log scale), activations left out", type="log", gridcolor=GRID)
    return fig
