"""State-space charts: the step sizes the scan picks per token, what its state keeps, and measured costs per token."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.attention import attention_heatmap
from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout

ATTENTION, SCAN = OKABE_ITO[5], OKABE_ITO[2]


def _positions(labels: Sequence[str]) -> tuple[list[int], list[str]]:
    """1-based positions, and the token labels made inert for plotly (it reads a few HTML tags in text)."""
    return list(range(1, len(labels) + 1)), [plain(t) for t in labels]


def delta_bars(labels: Sequence[str], deltas: Sequence[float], surprise: Sequence[float], title: str = "") -> go.Figure:
    """Bars: the step size delta of each token. Line: how surprising SmolLM2 found the token (nats)."""
    x, text = _positions(labels)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=x, y=list(deltas), name="step size Δ (how hard the token is written)",
                         marker_color=PRIMARY, customdata=text,
                         hovertemplate="%{customdata}: Δ = %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=list(surprise), name="surprise (nats, from SmolLM2)", mode="lines+markers",
                             line=dict(color=ACCENT, width=2), marker=dict(size=5), customdata=text,
                             hovertemplate="%{customdata}: %{y:.2f} nats<extra></extra>"), secondary_y=True)
    fig.update_xaxes(tickvals=x, ticktext=text, tickangle=-60, tickfont=dict(family="monospace",
                                                                               size=11 if len(x) <= 40 else 9))
    fig.update_yaxes(title="Δ", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title="surprise (nats)", rangemode="tozero", showgrid=False, tickformat=".0f", secondary_y=True)
    fig.update_layout(**base_layout(title=title, height=380, legend=dict(orientation="h", y=1.02, yanchor="bottom",
                                                                         x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=110, b=10))   # room for the legend to wrap under the title
    return fig


def kept_bars(labels: Sequence[str], share: Sequence[float], title: str = "") -> go.Figure:
    """What the final state is made of: each token's share of it."""
    x, text = _positions(labels)
    fig = go.Figure(go.Bar(x=x, y=[100 * s for s in share], marker_color=SCAN, customdata=text,
                           hovertemplate="%{customdata}: %{y:.1f}% of the final state<extra></extra>"))
    fig.update_xaxes(tickvals=x, ticktext=text, tickangle=-60, tickfont=dict(family="monospace",
                                                                               size=11 if len(x) <= 40 else 9))
    fig.update_yaxes(title="share of the final state (%)", rangemode="tozero")
    fig.update_layout(**base_layout(title=title, height=340, showlegend=False))
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=10))
    return fig


def step_costs(contexts: Sequence[int], attention_ms: Sequence[float], scan_ms: Sequence[float],
               kv_mb: Sequence[float], state_mb: Sequence[float], title: str = "") -> go.Figure:
    """One layer, one decode step: time and memory of attention over a growing cache against a fixed-size scan."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("time of one decode step (ms)", "what the layer keeps (MB)"))
    x = list(contexts)
    fig.add_trace(go.Scatter(x=x, y=list(attention_ms), name="attention layer: reads the whole KV cache",
                             mode="lines+markers", line=dict(color=ATTENTION, width=3), legendgroup="a",
                             hovertemplate="%{x:,} tokens: %{y:.3f} ms<extra></extra>"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=list(scan_ms), name="scan layer: updates its fixed state",
                             mode="lines+markers", line=dict(color=SCAN, width=3), legendgroup="s",
                             hovertemplate="%{x:,} tokens: %{y:.3f} ms<extra></extra>"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=list(kv_mb), name="KV cache", mode="lines+markers", showlegend=False,
                             line=dict(color=ATTENTION, width=3), legendgroup="a",
                             hovertemplate="%{x:,} tokens: %{y:.3f} MB<extra></extra>"), 1, 2)
    fig.add_trace(go.Scatter(x=x, y=list(state_mb), name="scan state", mode="lines+markers", showlegend=False,
                             line=dict(color=SCAN, width=3), legendgroup="s",
                             hovertemplate="%{x:,} tokens: %{y:.3f} MB<extra></extra>"), 1, 2)
    for col in (1, 2):
        fig.update_xaxes(type="log", title="tokens already in the context", tickvals=x,
                         ticktext=[f"{n:,}" for n in x], row=1, col=col)
        fig.update_yaxes(type="log", exponentformat="power", row=1, col=col)
    fig.update_layout(**base_layout(title=title, height=420, legend=dict(orientation="h", y=-0.25, x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    return fig


def model_decode(contexts: Sequence[int], decode_ms: Sequence[float], kv_mb: Sequence[float],
                 state_mb: float, title: str = "") -> go.Figure:
    """The real SmolLM2: time per generated token and KV cache against context; a scan stack's state for scale."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("time per generated token (ms)", "memory kept per sequence (MB)"))
    x = list(contexts)
    fig.add_trace(go.Scatter(x=x, y=list(decode_ms), name="SmolLM2 decode step, measured", mode="lines+markers",
                             line=dict(color=ATTENTION, width=3),
                             hovertemplate="%{x:,} tokens cached: %{y:.0f} ms<extra></extra>"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=list(kv_mb), name="SmolLM2 KV cache, measured", mode="lines+markers",
                             line=dict(color=ATTENTION, width=3, dash="dot"),
                             hovertemplate="%{x:,} tokens: %{y:.1f} MB<extra></extra>"), 1, 2)
    fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[state_mb, state_mb],
                             name="30 scan layers' state, same width", mode="lines",
                             line=dict(color=SCAN, width=3),
                             hovertemplate="%{y:.2f} MB at any length<extra></extra>"), 1, 2)
    fig.update_xaxes(title="tokens already in the context", row=1, col=1)
    fig.update_xaxes(title="tokens already in the context", row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_layout(**base_layout(title=title, height=400, legend=dict(orientation="h", y=-0.25, x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    return fig


def retention_map(shares, labels: Sequence[str], title: str = "") -> go.Figure:
    """Row t: where the state's content comes from after reading token t (rows sum to 1), drawn as the attention
    pages draw their maps, so the two can be compared."""
    fig = attention_heatmap(shares, [plain(t) for t in labels], title=title, height=600)
    # The colour scale ends at the 98th percentile: with 0 to 1, a few large cells would leave the rest black.
    lower = np.asarray(shares)[np.tril_indices(len(labels))]
    top = float(min(1.0, max(0.05, np.percentile(lower, 98)))) if lower.size else 1.0
    fig.data[1].update(zmax=top, colorbar=dict(title="share", thickness=12, len=0.7),
                       hovertemplate="after token %{y}: share of token %{x}<br>%{text}<br>%{z:.4f}<extra></extra>")
    fig.data[0].update(hovertemplate="token %{x} comes after token %{y}: not read yet<extra></extra>")
    fig.update_xaxes(title="earlier token s (position)")
    fig.update_yaxes(title="after reading token t")
    return fig
