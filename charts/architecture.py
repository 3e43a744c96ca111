"""Charts of the transformer as a pipeline: a clickable block diagram, a glimpse of one stage's real values,
and where the parameters sit. Data in, plotly figure out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, DIVERGING, OKABE_ITO, base_layout

# Opaque pastel tints of the Okabe-Ito colours with near-black text: the boxes read the same on a light and on
# a dark page (theme-coloured text on a translucent fill came out faint on the light one).
KIND_FILL = {"io": "#F2D4E6", "norm": "#CDEBDF", "attention": "#CCE0F0", "ffn": "#FBE5C0", "add": "#E3E3E3"}
SELECTED_FILL = "#F6B98F"
BOX_TEXT = "#1A1A1A"
BOX_HEIGHT = 0.8
BOX_LEFT, BOX_RIGHT = 1.0, 8.2   # the block's frame spans 0.2-9.8; its "× 30" label sits in the gap on the right
CENTRE = (BOX_LEFT + BOX_RIGHT) / 2


def block_diagram(titles: Sequence[str], notes: Sequence[str], kinds: Sequence[str], in_block: Sequence[bool],
                  selected: int, layers: int, height: int = 700) -> go.Figure:
    """The stages top to bottom as boxes ("title · note"), the repeated block framed and marked "× layers".
    A transparent marker on each box carries its index as customdata, so a click selects the stage."""
    count = len(titles)
    fig = go.Figure()
    first = next(i for i, b in enumerate(in_block) if b)
    last = max(i for i, b in enumerate(in_block) if b)
    fig.add_shape(type="rect", x0=0.2, x1=9.8, y0=first - 0.55, y1=last + 0.55, line=dict(color="rgba(128,128,128,0.8)",
                  width=1.5, dash="dash"), fillcolor="rgba(0,0,0,0)", layer="below")
    fig.add_annotation(x=9.0, y=(first + last) / 2, text=f"× {layers} blocks", showarrow=False, textangle=-90,
                       font=dict(size=13))
    for i, (title, note, kind) in enumerate(zip(titles, notes, kinds)):
        chosen = i == selected
        fig.add_shape(type="rect", x0=BOX_LEFT, x1=BOX_RIGHT, y0=i - BOX_HEIGHT / 2, y1=i + BOX_HEIGHT / 2,
                      fillcolor=SELECTED_FILL if chosen else KIND_FILL[kind],
                      line=dict(color=ACCENT if chosen else "rgba(128,128,128,0.6)", width=3 if chosen else 1))
        fig.add_annotation(x=CENTRE, y=i, text=f"<b>{plain(title)}</b><br><span style='font-size:11px'>{plain(note)}</span>",
                           showarrow=False, font=dict(size=12, color=BOX_TEXT))
        if i < count - 1:
            fig.add_annotation(x=CENTRE, y=i + 1 - BOX_HEIGHT / 2, ax=CENTRE, ay=i + BOX_HEIGHT / 2, xref="x", yref="y",
                               axref="x", ayref="y", showarrow=True, arrowhead=2, arrowsize=1, arrowwidth=1.2,
                               arrowcolor="rgba(128,128,128,0.9)", text="")
    fig.add_trace(go.Scatter(x=[CENTRE] * count, y=list(range(count)), mode="markers", showlegend=False,
                             marker=dict(symbol="square", size=34, color="rgba(0,0,0,0)"),
                             customdata=[[i] for i in range(count)], text=[plain(t) for t in titles],
                             hovertemplate="%{text}: click to inspect<extra></extra>"))
    fig.update_xaxes(range=[0, 10], visible=False, fixedrange=True)
    fig.update_yaxes(range=[count - 0.4, -0.7], visible=False, fixedrange=True)
    fig.update_layout(**base_layout(height=height, dragmode=False, hovermode="closest",
                                    margin=dict(l=0, r=0, t=10, b=0)))
    return fig


def glimpse(matrix: np.ndarray, rows: Sequence[str], columns: Sequence[str], highlight_row: int | None = None,
            colour_title: str = "value", title: str = "", sequential: bool = False) -> go.Figure:
    """A small matrix of real values: signed values on a diverging scale centred on 0 (probabilities on a
    sequential one), an optional row outlined."""
    values = np.asarray(matrix, dtype=np.float64)
    top = float(np.abs(values).max()) or 1.0
    scale = dict(colorscale="Viridis", zmin=0, zmax=max(top, 1e-9)) if sequential else \
        dict(colorscale=DIVERGING, zmin=-top, zmax=top)
    fig = go.Figure(go.Heatmap(z=np.round(values, 5), x=[plain(c) for c in columns], y=[plain(r) for r in rows],
                               colorbar=dict(title=colour_title, thickness=12),
                               hovertemplate="%{y} · %{x}: %{z:.4g}<extra></extra>", **scale))
    if highlight_row is not None:
        fig.add_shape(type="rect", xref="paper", x0=0, x1=1, yref="y", y0=highlight_row - 0.5, y1=highlight_row + 0.5,
                      line=dict(color=ACCENT, width=2.5))
    many = len(rows) > 24
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(family="monospace", size=10 if many else 12),
                     showgrid=False)
    fig.update_xaxes(type="category", tickangle=-60, tickfont=dict(family="monospace", size=10), showgrid=False)
    fig.update_layout(**base_layout(title=title, height=max(260, min(640, 18 * len(rows) + 170))))
    return fig


def parameter_bars(names: Sequence[str], counts: Sequence[int], title: str = "") -> go.Figure:
    """Where the model's parameters sit, one horizontal bar per group, with millions and shares."""
    total = float(sum(counts)) or 1.0
    colours = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(names))]
    fig = go.Figure(go.Bar(
        y=[plain(n) for n in names], x=[c / 1e6 for c in counts], orientation="h", marker_color=colours,
        text=[f"{c / 1e6:,.2f}M · {100 * c / total:.1f}%" for c in counts], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.3f} million<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="parameters (millions)", range=[0, max(counts) / 1e6 * 1.35])
    fig.update_layout(**base_layout(title=title, height=60 + 42 * len(names) + 60))
    return fig
