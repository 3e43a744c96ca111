"""Roofline charts: this machine's two ceilings with the model's passes placed under them, and prefill vs decode
speed by prompt length."""
from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from charts.style import OKABE_ITO, base_layout

MEMORY_ROOF, COMPUTE_ROOF = OKABE_ITO[0], OKABE_ITO[5]
PREFILL, DECODE = OKABE_ITO[2], OKABE_ITO[3]
GRID = "rgba(128,128,128,0.25)"
LEGEND = {"prefill": "prefill (labels: prompt tokens)", "decode": "decode (labels: sequences per step)"}
LOG_TICKS = dict(type="log", dtick=1, tickformat="~g", gridcolor=GRID)   # one labelled tick per power of ten


def _log_range(low: float, high: float) -> list[float]:
    return [math.log10(low), math.log10(high)]


def roofline(peak_gflops: float, bandwidth_gbs: float, points: Sequence[dict], title: str = "") -> go.Figure:
    """Log-log roofline. The memory roof is bandwidth x intensity (GB/s x FLOP/byte = GFLOP/s), the compute roof
    the flat peak; they meet at the ridge. Each point is a dict: label, group ("prefill" or "decode"),
    intensity, bound (the roofline's GFLOP/s at that intensity) and measured (GFLOP/s, or None before the
    measurement), and short (the marker's label). Bounds are hollow markers on the roof; measurements are
    filled markers under them, joined to their bound by a dotted drop.
    """
    ridge = peak_gflops / bandwidth_gbs
    xs = [p["intensity"] for p in points] or [ridge]
    x_low, x_high = min(0.1, min(xs) / 2), max(ridge * 20, max(xs) * 3)
    ys = [v for p in points for v in (p["bound"], p.get("measured")) if v]
    y_low, y_high = min([bandwidth_gbs * x_low] + ys) / 2, peak_gflops * 2.5

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[x_low, ridge], y=[bandwidth_gbs * x_low, peak_gflops], mode="lines",
                             name=f"memory roof: {bandwidth_gbs:.1f} GB/s × intensity",
                             line=dict(color=MEMORY_ROOF, width=3),
                             hovertemplate="memory roof<br>%{x:.2f} FLOP/byte → %{y:.2f} GFLOP/s<extra></extra>"))
    fig.add_trace(go.Scatter(x=[ridge, x_high], y=[peak_gflops, peak_gflops], mode="lines",
                             name=f"compute roof: {peak_gflops:.1f} GFLOP/s", line=dict(color=COMPUTE_ROOF, width=3),
                             hovertemplate="compute roof: %{y:.2f} GFLOP/s<extra></extra>"))
    for group, colour, symbol in (("prefill", PREFILL, "circle"), ("decode", DECODE, "diamond")):
        mine = [p for p in points if p["group"] == group]
        if not mine:
            continue
        fig.add_trace(go.Scatter(
            x=[p["intensity"] for p in mine], y=[p["bound"] for p in mine], mode="markers+text",
            name=f"{LEGEND[group]}: the roofline's limit", text=[p["short"] for p in mine],
            textposition="top left" if group == "prefill" else "bottom right", textfont=dict(size=11, color=colour),
            marker=dict(color=colour, size=11, symbol=f"{symbol}-open", line=dict(width=2)),
            customdata=[p["label"] for p in mine],
            hovertemplate="%{customdata}<br>%{x:.2f} FLOP/byte<br>at best %{y:.2f} GFLOP/s<extra></extra>"))
        measured = [p for p in mine if p.get("measured")]
        if measured:
            gap_x, gap_y = [], []
            for p in measured:   # a dotted drop from the roof to the measurement: how far under the roof it ran
                gap_x += [p["intensity"], p["intensity"], None]
                gap_y += [p["bound"], p["measured"], None]
            fig.add_trace(go.Scatter(x=gap_x, y=gap_y, mode="lines", showlegend=False, hoverinfo="skip",
                                     line=dict(color=colour, width=1.2, dash="dot")))
            fig.add_trace(go.Scatter(
                x=[p["intensity"] for p in measured], y=[p["measured"] for p in measured], mode="markers",
                name=f"{LEGEND[group]}: measured", marker=dict(color=colour, size=11, symbol=symbol),
                customdata=[[p["label"], p["measured"] / p["bound"]] for p in measured],
                hovertemplate="%{customdata[0]}<br>%{x:.2f} FLOP/byte<br>measured %{y:.2f} GFLOP/s "
                              "(%{customdata[1]:.0%} of the roof)<extra></extra>"))
    fig.add_vline(x=ridge, line=dict(color="gray", dash="dot", width=1))
    fig.add_annotation(x=math.log10(ridge), y=math.log10(y_low), yanchor="bottom", xanchor="left", showarrow=False,
                       text=f" ridge: {ridge:.1f} FLOP/byte", font=dict(size=11, color="gray"))
    fig.add_annotation(x=math.log10(x_low), y=math.log10(y_high), xanchor="left", yanchor="top", showarrow=False,
                       text="← memory-bound", font=dict(size=12, color=MEMORY_ROOF))
    fig.add_annotation(x=math.log10(x_high), y=math.log10(y_high), xanchor="right", yanchor="top", showarrow=False,
                       text="compute-bound →", font=dict(size=12, color=COMPUTE_ROOF))
    fig.update_layout(**base_layout(title=title, height=500, legend=dict(orientation="h", yanchor="top", y=-0.18,
                                                                         x=0, xanchor="left")))
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=10))
    fig.update_xaxes(range=_log_range(x_low, x_high), title="arithmetic intensity (FLOP per byte moved)", **LOG_TICKS)
    fig.update_yaxes(range=_log_range(y_low, y_high), title="GFLOP/s", **LOG_TICKS)
    return fig


def token_speeds(lengths: Sequence[int], bound_tps: Sequence[float], measured_tps: Sequence[float] | None,
                 decode_bound_tps: float, decode_tps: float | None, title: str = "") -> go.Figure:
    """Prefill tokens/s by prompt length (log-log) under its roofline limit, and decode's one token per pass as a
    level line: the gap between the two is what a server's scheduler has to manage."""
    lengths = list(lengths)
    span = [min(lengths), max(lengths)]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=lengths, y=list(bound_tps), mode="lines+markers", name="prefill: roofline limit",
                             line=dict(color=PREFILL, dash="dash", width=2), marker=dict(symbol="circle-open", size=9),
                             hovertemplate="%{x} prompt tokens<br>at best %{y:,.1f} tokens/s<extra></extra>"))
    if measured_tps is not None:
        fig.add_trace(go.Scatter(x=lengths[:len(measured_tps)], y=list(measured_tps), mode="lines+markers+text",
                                 name="prefill: measured", line=dict(color=PREFILL, width=3), marker=dict(size=10),
                                 text=[f"{v:,.0f}" for v in measured_tps], textposition="top left",
                                 hovertemplate="%{x} prompt tokens<br>%{y:,.1f} tokens/s<extra></extra>"))
    fig.add_trace(go.Scatter(x=span, y=[decode_bound_tps] * 2, mode="lines", name="decode: roofline limit",
                             line=dict(color=DECODE, dash="dash", width=2),
                             hovertemplate="decode at best %{y:,.1f} tokens/s<extra></extra>"))
    if decode_tps is not None:
        fig.add_trace(go.Scatter(x=span, y=[decode_tps] * 2, mode="lines+text", name="decode: measured (batch 1)",
                                 line=dict(color=DECODE, width=3), text=["", f"{decode_tps:,.1f} tokens/s"],
                                 textposition="bottom left",
                                 hovertemplate="decode %{y:,.1f} tokens/s<extra></extra>"))
    values = list(bound_tps) + list(measured_tps or []) + [decode_bound_tps] + ([decode_tps] if decode_tps else [])
    fig.update_layout(**base_layout(title=title, height=420, legend=dict(orientation="h", yanchor="top", y=-0.2,
                                                                         x=0, xanchor="left")))
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=10))
    fig.update_xaxes(title="prompt tokens in one pass", **LOG_TICKS)
    fig.update_yaxes(title="tokens per second", range=_log_range(min(v for v in values if v > 0) / 2, max(values) * 2),
                     **LOG_TICKS)
    return fig
