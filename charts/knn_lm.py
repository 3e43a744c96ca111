"""kNN-LM charts: the query's perplexity against lambda, the per-token change the memory makes, and the context
budget of a chat kept in full against one with summarised memory."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout, legend_below

HELPED = OKABE_ITO[2]   # bluish green
HURT = OKABE_ITO[5]     # vermillion
MUTED = "#9A9A9A"


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, xanchor="left", font=dict(size=14))


def _nice_ticks(low: float, high: float) -> list[float]:
    """1, 2, 5 times powers of ten inside [low, high]: a log axis labelled without its minor digits."""
    ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
             for m in (1, 2, 5)]
    return [t for t in ticks if low <= t <= high]


def perplexity_vs_lambda(lambdas: Sequence[float], perplexities: Sequence[float], current: float,
                         current_ppl: float, title: str = "") -> go.Figure:
    """Measured perplexity at each lambda (log axis); infinite points (lambda = 1 with a token the memory
    never saw) are left out of the line; the slider's lambda is marked."""
    ys = [float(p) if np.isfinite(p) else None for p in perplexities]
    fig = go.Figure(go.Scatter(x=list(map(float, lambdas)), y=ys, mode="lines+markers", name="kNN-LM",
                               line=dict(color=PRIMARY, width=2), marker=dict(size=6),
                               hovertemplate="lambda %{x:.2f}<br>perplexity %{y:.2f}<extra></extra>"))
    base = ys[0]
    if base is not None:
        fig.add_trace(go.Scatter(x=[0, 1], y=[base, base], mode="lines", name=f"model alone: {base:.2f}",
                                 line=dict(color=MUTED, dash="dot"), hoverinfo="skip"))
    if np.isfinite(current_ppl):
        fig.add_trace(go.Scatter(x=[float(current)], y=[float(current_ppl)], mode="markers", name="your lambda",
                                 marker=dict(color=ACCENT, size=14, symbol="diamond", line=dict(width=1)),
                                 hovertemplate="your lambda %{x:.2f}<br>perplexity %{y:.2f}<extra></extra>"))
    fig.update_layout(**base_layout(title=_title(title), height=340))
    legend_below(fig)
    fig.update_xaxes(title="lambda: weight of the memory's distribution", range=[-0.02, 1.02])
    finite = [y for y in ys if y is not None and y > 0]
    if finite and base is not None:
        # a lambda near 1 can send the perplexity to astronomical values; the axis stops at 4x the model alone
        low, top = min(finite) / 1.3, min(max(finite), 4 * base) * 1.3
        fig.update_yaxes(range=[np.log10(low), np.log10(top)], tickvals=_nice_ticks(low, top))
    fig.update_yaxes(title="perplexity of the query (log scale)", type="log")
    return fig


def token_gains(labels: Sequence[str], gains_bits: Sequence[float], selected: int | None,
                title: str = "") -> go.Figure:
    """Per query token: how many bits the memory saved (above 0, helped) or cost (below 0, hurt)."""
    xs = [f"{i + 1}: {plain(t)}" for i, t in enumerate(labels)]
    g = [float(v) for v in gains_bits]
    colours = [HELPED if v > 0 else HURT for v in g]
    widths = [3 if i == selected else 0 for i in range(len(g))]
    fig = go.Figure(go.Bar(x=xs, y=g, marker=dict(color=colours, line=dict(color=ACCENT, width=widths)),
                           showlegend=False,
                           hovertemplate="%{x}<br>%{y:+.2f} bits<extra></extra>"))
    fig.add_hline(y=0, line=dict(color=MUTED, width=1))
    fig.update_layout(**base_layout(title=_title(title), height=340, bargap=0.15))
    fig.update_xaxes(type="category", tickangle=-60, tickfont=dict(size=10), title="query token (the one predicted)")
    fig.update_yaxes(title="bits saved by the memory")
    return fig


def budget_bars(rows: Sequence[str], segments: Sequence[Sequence[tuple[str, int]]], window: int,
                title: str = "") -> go.Figure:
    """Horizontal stacked token counts per chat layout against the window (the free space drawn faint)."""
    labels: list[str] = []     # every row's own order kept: a part new to a row goes right after its predecessor
    for row in segments:
        previous = None
        for label, _ in row:
            if label not in labels:
                labels.insert(labels.index(previous) + 1 if previous else 0, label)
            previous = label
    colours = {label: OKABE_ITO[i % len(OKABE_ITO)] for i, label in enumerate(labels)}
    fig = go.Figure()
    for label in labels:
        xs = [next((n for l, n in row if l == label), 0) for row in segments]
        fig.add_trace(go.Bar(y=list(rows), x=xs, name=label, orientation="h", marker_color=colours[label],
                             hovertemplate=f"{plain(label)}: %{{x:,}} tokens<extra></extra>"))
    used = [sum(n for _, n in row) for row in segments]
    fig.add_trace(go.Bar(y=list(rows), x=[max(0, window - u) for u in used], name="Free in the window",
                         orientation="h", marker=dict(color="rgba(154,154,154,0.18)"),
                         hovertemplate="free: %{x:,} tokens<extra></extra>"))
    fig.add_vline(x=window, line=dict(color=ACCENT, dash="dash"),
                  annotation_text=f"window: {window:,} tokens", annotation_position="top left")
    for row, total in zip(rows, used):
        fig.add_annotation(x=total, y=row, text=f"{total:,} tokens", showarrow=False, xanchor="left", xshift=6,
                           font=dict(size=12))
    fig.update_layout(**base_layout(title=_title(title), height=320, barmode="stack"))
    legend_below(fig, bottom=110)
    fig.update_layout(legend=dict(y=-0.38, traceorder="normal"))
    fig.update_xaxes(title="tokens in the context window", range=[0, window * 1.08])
    fig.update_yaxes(autorange="reversed")
    return fig
