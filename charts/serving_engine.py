"""Build-your-own-engine charts: the work a configuration plans to do, and when each request got its answer."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.style import OKABE_ITO, base_layout

BASELINE, YOURS = OKABE_ITO[5], OKABE_ITO[0]
PADDING = "rgba(128,128,128,0.55)"
GRID = "rgba(128,128,128,0.25)"


def planned_work(labels: Sequence[str], passes: Sequence[int], useful: Sequence[int], padding: Sequence[int],
                 title: str = "") -> go.Figure:
    """Side by side, per configuration: forward passes, and token positions through the model (real tokens and
    padding stacked)."""
    colours = [BASELINE, YOURS][:len(labels)]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=("forward passes", "token positions through the model"))
    fig.add_trace(go.Bar(x=list(labels), y=list(passes), marker_color=colours, text=[f"{p:,}" for p in passes],
                         textposition="outside", cliponaxis=False, showlegend=False,
                         hovertemplate="%{x}: %{y:,} forward passes<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=list(labels), y=list(useful), marker_color=colours, name="prompt and answer tokens",
                         showlegend=False,
                         hovertemplate="%{x}: %{y:,} real token positions<extra></extra>"), row=1, col=2)
    totals = [u + p for u, p in zip(useful, padding)]
    fig.add_trace(go.Bar(x=list(labels), y=list(padding), marker_color=PADDING, name="padding (computed, thrown away)",
                         text=[f"{t:,}" for t in totals], textposition="outside", cliponaxis=False,
                         hovertemplate="%{x}: %{y:,} padded positions<extra></extra>"), row=1, col=2)
    fig.update_layout(**base_layout(title=title, height=380, barmode="stack",
                                    legend=dict(orientation="h", yanchor="top", y=-0.12, x=0.57, xanchor="left")))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    fig.update_yaxes(rangemode="tozero", gridcolor=GRID)
    fig.update_yaxes(range=[0, max(list(passes) + [1]) * 1.2], row=1, col=1)
    fig.update_yaxes(range=[0, max(totals + [1]) * 1.2], row=1, col=2)
    return fig


def request_times(requests: Sequence[str], baseline_first: Sequence[float], baseline_done: Sequence[float],
                  yours_first: Sequence[float], yours_done: Sequence[float], yours_label: str,
                  title: str = "") -> go.Figure:
    """Two panels sharing a time axis: each request's bar runs from 0 (every request arrived at once) to its last
    token, and a tick marks its first token. Served one by one, the bars form a staircase: each request waits."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.16,
                        subplot_titles=("plain baseline (nothing switched on)", yours_label))
    panels = ((1, BASELINE, baseline_first, baseline_done), (2, YOURS, yours_first, yours_done))
    for row, colour, first, done in panels:
        fig.add_trace(go.Bar(y=list(requests), x=list(done), orientation="h", marker_color=colour, opacity=0.85,
                             text=[f"{d:.2f} s" for d in done], textposition="outside", cliponaxis=False,
                             showlegend=False, name="answered (last token)",
                             hovertemplate="%{y}: last token at %{x:.2f} s<extra></extra>"), row=row, col=1)
        fig.add_trace(go.Scatter(y=list(requests), x=list(first), mode="markers", showlegend=row == 1,
                                 name="first token (the bar ends at the last)",
                                 marker=dict(symbol="line-ns-open", size=18, color="gray", line=dict(width=3)),
                                 hovertemplate="%{y}: first token at %{x:.2f} s<extra></extra>"), row=row, col=1)
    longest = max(list(baseline_done) + list(yours_done) + [0.1])
    fig.update_layout(**base_layout(title=title, height=220 + 70 * len(requests),
                                    legend=dict(orientation="h", yanchor="bottom", y=1.08, x=0)))
    fig.update_layout(margin=dict(l=10, r=40, t=100, b=10))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(range=[0, longest * 1.18], gridcolor=GRID)
    fig.update_xaxes(title="seconds of engine time since the requests arrived", row=2, col=1)
    return fig
