"""Grouped-query attention charts: which query heads share a KV head, the maps of one group, how alike heads
attend, and the per-token cost of pooling the KV heads. Heads are shown 1-based; callers pass 0-based data."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.attention import MASKED_FILL
from charts.style import ACCENT, OKABE_ITO, SEQUENTIAL, base_layout

GROUP_COLOURS = [OKABE_ITO[0], OKABE_ITO[1], OKABE_ITO[2], OKABE_ITO[3], OKABE_ITO[4], OKABE_ITO[5]]


def _group_colour(group: int) -> str:
    return GROUP_COLOURS[group % len(GROUP_COLOURS)]


def sharing_diagram(groups: Sequence[Sequence[int]], selected: int | None = None, title: str = "") -> go.Figure:
    """Query heads on top, KV heads below, a line from each query head to the KV head it reads."""
    heads = sum(len(g) for g in groups)
    kv_heads = len(groups)
    q_x = {h: h for g in groups for h in g}
    kv_x = {g: (heads - 1) * (g + 0.5) / kv_heads for g in range(kv_heads)}
    fig = go.Figure()
    for g, members in enumerate(groups):
        colour = _group_colour(g)
        width = 4 if selected == g else 2
        for h in members:
            fig.add_trace(go.Scatter(x=[q_x[h], kv_x[g]], y=[1, 0], mode="lines", showlegend=False,
                                     line=dict(color=colour, width=width), hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=[q_x[h] for g in groups for h in g], y=[1] * heads, mode="markers+text", showlegend=False,
        marker=dict(symbol="square", size=34, color=[_group_colour(g) for g, m in enumerate(groups) for _ in m],
                    line=dict(width=[3 if selected == g else 0 for g, m in enumerate(groups) for _ in m],
                              color=ACCENT)),
        text=[f"Q{h + 1}" for g in groups for h in g], textfont=dict(color="white", size=13),
        customdata=[g + 1 for g, m in enumerate(groups) for _ in m],
        hovertemplate="query head %{text}<br>reads KV head %{customdata}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=[kv_x[g] for g in range(kv_heads)], y=[0] * kv_heads, mode="markers+text", showlegend=False,
        marker=dict(symbol="square", size=46, color=[_group_colour(g) for g in range(kv_heads)],
                    line=dict(width=[3 if selected == g else 0 for g in range(kv_heads)], color=ACCENT)),
        text=[f"KV{g + 1}" for g in range(kv_heads)], textfont=dict(color="white", size=13),
        customdata=[", ".join(f"Q{h + 1}" for h in groups[g]) for g in range(kv_heads)],
        hovertemplate="KV head %{text}: one key and one value vector per token<br>read by %{customdata}"
                      "<extra></extra>"))
    fig.add_annotation(x=-0.9, y=1, text="query heads", showarrow=False, xanchor="right")
    fig.add_annotation(x=-0.9, y=0, text="key/value heads<br>(what the cache stores)", showarrow=False,
                       xanchor="right")
    fig.update_xaxes(visible=False, range=[-4.2, heads - 0.4], fixedrange=True)
    fig.update_yaxes(visible=False, range=[-0.35, 1.3], fixedrange=True)
    fig.update_layout(**base_layout(title=title, height=260, hovermode="closest", dragmode=False))
    return fig


def sibling_maps(maps: np.ndarray, labels: Sequence[str], heads: Sequence[int], kv_head: int,
                 title: str = "") -> go.Figure:
    """The attention maps of the query heads that read one KV head, side by side on one colour scale."""
    count, length = maps.shape[0], len(labels)
    fig = make_subplots(rows=1, cols=count, horizontal_spacing=0.03,
                        subplot_titles=[f"query head {h + 1}" for h in heads])
    names = [f"{j + 1} {label}" for j, label in enumerate(labels)]
    lower = np.tril(np.ones((length, length), dtype=bool))
    for i, h in enumerate(heads):
        z = np.where(lower, maps[i], np.nan).astype(np.float32)
        fig.add_trace(go.Heatmap(z=np.round(z, 4), x=names, y=names, coloraxis="coloraxis", hoverongaps=False,
                                 hovertemplate=f"query head {h + 1}<br>query %{{y}} → key %{{x}}<br>"
                                               "weight %{z:.4f}<extra></extra>"), row=1, col=i + 1)
    small = length <= 14
    fig.update_xaxes(showgrid=False, showticklabels=small, tickangle=-60, tickfont=dict(family="monospace", size=9))
    fig.update_yaxes(showgrid=False, showticklabels=False, autorange="reversed")
    fig.update_yaxes(showticklabels=small, tickfont=dict(family="monospace", size=9), col=1)
    fig.update_layout(**base_layout(title=title, height=430 if small else 380, plot_bgcolor=MASKED_FILL,
                                    margin=dict(l=10, r=10, t=70, b=10),
                                    coloraxis=dict(colorscale=SEQUENTIAL, cmin=0, cmax=1,
                                                   colorbar=dict(title="weight", thickness=12))))
    return fig


def head_distances(distances: np.ndarray, groups: Sequence[Sequence[int]], title: str = "") -> go.Figure:
    """[heads, heads] mean total-variation distance, the heads that share a KV head outlined together."""
    heads = distances.shape[0]
    ticks = [f"Q{h + 1}" for h in range(heads)]
    group_of = {h: g for g, members in enumerate(groups) for h in members}
    kinds = [["same head" if i == j else "share a KV head" if group_of[i] == group_of[j] else "different KV heads"
              for j in range(heads)] for i in range(heads)]
    fig = go.Figure(go.Heatmap(
        z=np.round(distances, 4), x=ticks, y=ticks, colorscale=SEQUENTIAL, zmin=0, zmax=1, text=kinds,
        colorbar=dict(title="distance", thickness=12),
        hovertemplate="%{y} vs %{x} (%{text})<br>mean distance %{z:.3f}<extra></extra>"))
    for g, members in enumerate(groups):
        lo, hi = min(members) - 0.5, max(members) + 0.5
        # White reads on every viridis colour; the group's own colour would vanish on cells of the same hue.
        fig.add_shape(type="rect", x0=lo, x1=hi, y0=lo, y1=hi, line=dict(color="white", width=3))
        fig.add_annotation(x=hi, y=lo, text=f"KV{g + 1}", showarrow=False, xanchor="left", yanchor="bottom",
                           font=dict(color=_group_colour(g), size=12))
    fig.update_xaxes(showgrid=False, side="bottom", title="query head", constrain="domain")
    fig.update_yaxes(showgrid=False, autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_layout(**base_layout(title=title, height=400, margin=dict(l=10, r=10, t=50, b=10)))
    return fig


def token_surprise(labels: Sequence[str], bits_before: Sequence[float], bits_after: Sequence[float],
                   before_name: str, after_name: str, title: str = "") -> go.Figure:
    """Per predicted token: the surprise (bits) as the model is and after the change, side by side."""
    positions = list(range(2, len(labels) + 2))
    custom = [[label, b, a, a - b] for label, b, a in zip(labels, bits_before, bits_after)]
    hover = ("token %{x}: %{customdata[0]}<br>" + before_name + " %{customdata[1]:.2f} bits<br>" + after_name
             + " %{customdata[2]:.2f} bits<br>change %{customdata[3]:+.2f} bits<extra></extra>")
    fig = go.Figure([
        go.Bar(x=positions, y=list(bits_before), name=before_name, marker_color=OKABE_ITO[0], customdata=custom,
               hovertemplate=hover),
        go.Bar(x=positions, y=list(bits_after), name=after_name, marker_color=OKABE_ITO[5], customdata=custom,
               hovertemplate=hover),
    ])
    few = len(labels) <= 40
    fig.update_xaxes(title="predicted token (position)", tickvals=positions if few else None,
                     ticktext=list(labels) if few else None, tickangle=-60,
                     tickfont=dict(family="monospace", size=10))
    fig.update_yaxes(title="surprise (bits, −log₂ p)", rangemode="tozero")
    fig.update_layout(**base_layout(title=title, height=380, barmode="group", bargap=0.15,
                                    legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                                    margin=dict(l=10, r=10, t=80, b=10)))
    return fig
