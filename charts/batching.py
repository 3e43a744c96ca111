"""Continuous-batching charts: measured decode step times by batch size, and the scheduler's timeline (a Gantt
chart per policy: waiting, prefill, decoding, and static batching's padding)."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.style import OKABE_ITO, base_layout, legend_below

KIND_STYLE = {   # segment kind -> (legend name, colour)
    "waiting": ("waiting in the queue", "rgba(153,153,153,0.45)"),
    "prefill": ("prefill (first token)", OKABE_ITO[1]),
    "decoding": ("decoding", OKABE_ITO[0]),
    "padding": ("answer done, held until its batch ends (padding)", OKABE_ITO[5]),
}


def step_times(batch_sizes: Sequence[int], step_ms: Sequence[float], title: str = "") -> go.Figure:
    """One decode step's time and the time per token (step ÷ batch) for each measured batch size."""
    per_token = [s / b for s, b in zip(step_ms, batch_sizes)]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(batch_sizes), y=list(step_ms), name="one decode step (all rows)",
                             mode="lines+markers+text", text=[f"{v:.0f}" for v in step_ms], textposition="top center",
                             line=dict(color=OKABE_ITO[0], width=3), marker=dict(size=9),
                             hovertemplate="batch %{x}: %{y:.1f} ms per step<extra></extra>"))
    fig.add_trace(go.Scatter(x=list(batch_sizes), y=per_token, name="per token (step ÷ batch)", mode="lines+markers",
                             line=dict(color=OKABE_ITO[1], width=3, dash="dash"), marker=dict(size=8),
                             hovertemplate="batch %{x}: %{y:.1f} ms per token<extra></extra>"))
    fig.update_layout(**base_layout(title=title, height=340))
    legend_below(fig, bottom=70)
    fig.update_xaxes(title="batch size (sequences decoded together)", type="log", tickvals=list(batch_sizes),
                     ticktext=[str(b) for b in batch_sizes])
    fig.update_yaxes(title="milliseconds", rangemode="tozero")
    return fig


def gantt(panels: Sequence[tuple[str, Sequence[dict]]], requests: int, title: str = "") -> go.Figure:
    """One row per request and one panel per policy; each panel's segments are dicts with request (0-based), kind,
    start_s and end_s."""
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[name for name, _ in panels])
    shown = set()
    for row, (_, segments) in enumerate(panels, start=1):
        for kind, (name, colour) in KIND_STYLE.items():
            part = [s for s in segments if s["kind"] == kind]
            if not part:
                continue
            fig.add_trace(go.Bar(
                y=[f"R{s['request'] + 1}" for s in part], x=[s["end_s"] - s["start_s"] for s in part],
                base=[s["start_s"] for s in part], orientation="h", name=name, legendgroup=kind,
                showlegend=kind not in shown, marker=dict(color=colour, line=dict(width=0)),
                customdata=[[s["start_s"], s["end_s"]] for s in part],
                hovertemplate="%{y}: " + name + " from %{customdata[0]:.2f} s to %{customdata[1]:.2f} s"
                              "<extra></extra>"),
                row, 1)
            shown.add(kind)
        fig.update_yaxes(autorange="reversed", row=row, col=1, tickfont=dict(size=9),
                         categoryorder="array", categoryarray=[f"R{i + 1}" for i in range(requests)])
    height = 150 + len(panels) * (60 + 13 * requests)
    fig.update_layout(**base_layout(title=title, height=height, barmode="overlay", bargap=0.2))
    # A legend a fixed distance under the plot, whatever its height (paper coordinates scale with it).
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-55 / (height - 150), x=0, xanchor="left"),
                      margin=dict(l=10, r=10, t=60, b=110))
    fig.update_xaxes(title="seconds (simulated with the measured step times)", row=len(panels), col=1,
                     rangemode="tozero")
    return fig


def latency_bars(names: Sequence[str], static_values: Sequence[float], continuous_values: Sequence[float],
                 title: str = "") -> go.Figure:
    """Grouped bars: each latency statistic for both policies."""
    fig = go.Figure()
    for values, name, colour in ((static_values, "static", OKABE_ITO[5]), (continuous_values, "continuous",
                                                                          OKABE_ITO[2])):
        fig.add_trace(go.Bar(x=list(names), y=list(values), name=name, marker_color=colour,
                             text=[f"{v:.1f} s" for v in values], textposition="outside", cliponaxis=False,
                             hovertemplate="%{x}: %{y:.2f} s<extra>" + name + "</extra>"))
    fig.update_layout(**base_layout(title=title, height=340, barmode="group"))
    legend_below(fig, bottom=70)
    fig.update_yaxes(title="seconds", rangemode="tozero")
    return fig
