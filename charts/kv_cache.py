"""KV-cache charts: step times with and without the cache, cache bytes vs tokens, memory vs context, MHA vs GQA."""
from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.style import OKABE_ITO, base_layout

WITH_CACHE, WITHOUT_CACHE = OKABE_ITO[0], OKABE_ITO[5]
SPEEDUP = OKABE_ITO[2]


def step_times(step_ms_with: Sequence[float], step_ms_without: Sequence[float], sequence_lengths: Sequence[int],
               cumulative_speedup: Sequence[float], title: str = "") -> go.Figure:
    """Top: time of each generation step with and without the cache. Bottom: the running speed-up."""
    steps = list(range(1, len(step_ms_with) + 1))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.64, 0.36])
    hover = ("token %{x}<br>sequence so far: %{customdata} tokens<br>%{y:.1f} ms<extra>%{fullData.name}</extra>")
    fig.add_trace(go.Scatter(x=steps, y=list(step_ms_without), name="without cache: re-reads the whole sequence",
                             mode="lines+markers", marker=dict(size=4), line=dict(color=WITHOUT_CACHE, width=2),
                             customdata=list(sequence_lengths), hovertemplate=hover), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=list(step_ms_with), name="with cache: reads only the newest token",
                             mode="lines+markers", marker=dict(size=4), line=dict(color=WITH_CACHE, width=2),
                             customdata=list(sequence_lengths), hovertemplate=hover), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=list(cumulative_speedup), name="speed-up so far (total time without ÷ with)",
                             mode="lines", line=dict(color=SPEEDUP, width=2.5), fill="tozeroy",
                             fillcolor="rgba(0,158,115,0.12)",
                             hovertemplate="after %{x} tokens: %{y:.2f}× faster<extra></extra>"), row=2, col=1)
    fig.add_hline(y=1, line=dict(color="gray", dash="dot", width=1), row=2, col=1)
    fig.update_layout(**base_layout(title=title, height=520, hovermode="x unified",
                                    legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=90, b=10))
    fig.update_yaxes(title="step time (ms)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title="speed-up (×)", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title="generated token", row=2, col=1)
    return fig


def cache_growth(tokens: Sequence[int], measured_mb: Sequence[float], formula_mb: Sequence[float],
                 title: str = "") -> go.Figure:
    """Bytes read from the cache tensors (markers) on top of the formula (line)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(tokens), y=list(formula_mb), name="formula: 2 × layers × kv_heads × head_dim × "
                             "bytes × tokens", mode="lines", line=dict(color=OKABE_ITO[1], width=3),
                             hovertemplate="%{x} tokens<br>formula %{y:.4f} MB<extra></extra>"))
    fig.add_trace(go.Scatter(x=list(tokens), y=list(measured_mb), name="measured: sum of the real K and V tensors",
                             mode="markers", marker=dict(color=OKABE_ITO[0], size=11, symbol="circle-open",
                                                         line=dict(width=2.5)),
                             hovertemplate="%{x} tokens<br>measured %{y:.4f} MB<extra></extra>"))
    fig.update_layout(**base_layout(title=title, height=380, legend=dict(orientation="h", y=1.02, yanchor="bottom",
                                                                         x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    fig.update_xaxes(title="tokens in the cache", rangemode="tozero")
    fig.update_yaxes(title="cache size (MB, 10⁶ bytes)", rangemode="tozero")
    return fig


def memory_vs_context(series: Sequence[dict], selected_context: int, log_memory: bool = False,
                      title: str = "") -> go.Figure:
    """One line per model: KV-cache GB against context length (log x).

    Each series: name, contexts, gb, and optional trained_context (the line is dotted beyond it).
    """
    fig = go.Figure()
    for i, s in enumerate(series):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        limit = s.get("trained_context")
        xs, ys = list(s["contexts"]), list(s["gb"])
        inside = [(x, y) for x, y in zip(xs, ys) if limit is None or x <= limit]
        beyond = [(x, y) for x, y in zip(xs, ys) if limit is not None and x >= limit]
        hover = f"<b>{s['name']}</b><br>%{{x:,}} tokens<br>%{{y:.3f}} GB<extra></extra>"
        if inside:
            fig.add_trace(go.Scatter(x=[p[0] for p in inside], y=[p[1] for p in inside], name=s["name"],
                                     legendgroup=s["name"], mode="lines+markers", marker=dict(size=6),
                                     line=dict(color=colour, width=2.5), hovertemplate=hover))
        if len(beyond) > 1:
            fig.add_trace(go.Scatter(x=[p[0] for p in beyond], y=[p[1] for p in beyond],
                                     name=f"{s['name']} (beyond its context)", legendgroup=s["name"],
                                     showlegend=not inside, mode="lines",
                                     line=dict(color=colour, width=1.5, dash="dot"),
                                     hovertemplate=hover.replace("</b>", "</b> (beyond its context length)")))
    ticks = sorted({x for s in series for x in s["contexts"]} | {selected_context})
    fig.add_vline(x=selected_context, line=dict(color="gray", dash="dash", width=1.5))
    # On a log axis an annotation's x is given in log10 units (shapes take data units).
    fig.add_annotation(x=math.log10(selected_context), y=1, yref="paper", text=f"{selected_context:,} tokens",
                       showarrow=False, yanchor="top", font=dict(color="gray"),
                       **(dict(xanchor="left", xshift=4) if selected_context < max(ticks) / 4
                          else dict(xanchor="right", xshift=-4)))
    fig.update_layout(**base_layout(title=title, height=460, hovermode="closest",
                                    legend=dict(orientation="h", y=-0.18, yanchor="top", x=0)))
    fig.update_xaxes(type="log", title="context length (tokens, log scale)", tickvals=ticks,
                     ticktext=[f"{t / 1024:g}k" if t >= 1024 else str(t) for t in ticks])
    fig.update_yaxes(type="log" if log_memory else "linear", dtick=1 if log_memory else None,
                     title="KV cache (GB, 10⁹ bytes)" + (", log scale" if log_memory else ""),
                     rangemode="tozero")
    return fig


def attention_kinds(models: Sequence[str], mha_gb: Sequence[float], actual_gb: Sequence[float],
                    mqa_gb: Sequence[float], actual_labels: Sequence[str], title: str = "") -> go.Figure:
    """Grouped bars per model, as a share of the MHA cache: MHA (100%), as configured, and MQA. Text gives GB."""
    fig = go.Figure()
    for name, values, colour, labels in (
            ("MHA: one K/V head per query head", mha_gb, OKABE_ITO[5], None),
            ("as configured", actual_gb, OKABE_ITO[0], actual_labels),
            ("MQA: one K/V head for all", mqa_gb, OKABE_ITO[2], None)):
        share = [100.0 * v / m if m > 0 else 0.0 for v, m in zip(values, mha_gb)]
        fig.add_trace(go.Bar(x=list(models), y=share, name=name, marker_color=colour,
                             text=[_gb(v) for v in values], textposition="outside", cliponaxis=False,
                             constraintext="none",
                             customdata=list(zip(values, labels or [name] * len(values))),
                             hovertemplate="%{x}<br>%{customdata[1]}<br>%{customdata[0]:.4f} GB = %{y:.1f}% of "
                                           "MHA<extra></extra>"))
    fig.update_layout(**base_layout(title=title, height=420, barmode="group", bargap=0.22, bargroupgap=0.06,
                                    legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                                    margin=dict(l=10, r=10, t=80, b=10)))
    fig.update_traces(textfont_size=12)
    fig.update_yaxes(title="KV cache (% of MHA)", range=[0, 118], ticksuffix="%")
    return fig


def _gb(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f} GB"
    if value >= 0.1:
        return f"{value:.2f} GB"
    return f"{1000 * value:.1f} MB" if value >= 0.0001 else f"{value * 1e9:,.0f} B"
