"""Charts for the causal mask and the encoder/decoder comparison: the mask itself, attention maps side by side,
how far earlier tokens' vectors moved after an edit, the per-token loss with and without the mask, and the
attention sink by layer. Data in, plotly figure out; positions, layers and heads are shown 1-based.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import OKABE_ITO, PRIMARY, SEQUENTIAL, base_layout

MASKED_GREY = "rgba(140,140,140,0.30)"
BOUNDARY = OKABE_ITO[5]          # vermillion: the edge of the mask, readable on Viridis and on both themes
WITH_MASK = OKABE_ITO[0]         # blue
WITHOUT_MASK = OKABE_ITO[5]      # vermillion
ENCODER = OKABE_ITO[2]           # bluish green
NEUTRAL = "#8C8C8C"


def _font(length: int) -> dict:
    return dict(family="monospace", size=13 if length <= 16 else 11 if length <= 32 else 9)


def _positions(length: int) -> list[int]:
    return list(range(1, length + 1))


def mask_matrix(length: int, labels: Sequence[str], title: str = "") -> go.Figure:
    """The additive mask M: 0 where the query may read the key, -inf above the diagonal (later tokens)."""
    later = np.triu(np.ones((length, length), dtype=bool), 1)
    show_text = length <= 12   # beyond that the cells are too small for their labels
    names = [plain(t) for t in labels]
    pairs = [[[names[i], names[j]] for j in range(length)] for i in range(length)]
    traces = []
    for cells, colour, text, font_colour, what in [
        (~later, PRIMARY, "0", "white", "0: may read"),
        (later, MASKED_GREY, "−∞", NEUTRAL, "−∞: a later token, masked"),
    ]:
        z = np.where(cells, 1.0, np.nan)
        traces.append(go.Heatmap(
            z=z, x=_positions(length), y=_positions(length), showscale=False, hoverongaps=False,
            colorscale=[[0, colour], [1, colour]], xgap=1, ygap=1,
            text=[[text] * length for _ in range(length)], texttemplate=text if show_text else None,
            textfont=dict(color=font_colour, size=12), customdata=pairs,
            hovertemplate=f"query %{{y}} %{{customdata[0]}} · key %{{x}} %{{customdata[1]}}<br>{what}<extra></extra>"))
    fig = go.Figure(traces)
    step = 1 if length <= 12 else 5
    ticks = [p for p in _positions(length) if p == 1 or p % step == 0]
    # Positions, not tokens, on the axes: the mask depends on nothing but the positions (hover names the tokens).
    fig.update_xaxes(title="key position", tickvals=ticks, showgrid=False, constrain="domain")
    fig.update_yaxes(title="query position", tickvals=ticks, autorange="reversed", showgrid=False, scaleanchor="x",
                     constrain="domain")
    fig.update_layout(**base_layout(title=title, height=min(460, max(280, 9 * length + 200))))
    return fig


def _staircase(length: int) -> tuple[list[float], list[float]]:
    """The edge between each query's last readable key and the first masked one."""
    xs, ys = [], []
    for i in range(1, length + 1):
        xs += [i + 0.5, i + 0.5]
        ys += [i - 0.5, i + 0.5]
    return xs, ys


def attention_map(weights: np.ndarray, labels: Sequence[str], title: str, edge: str | None = None) -> go.Figure:
    """One head's [T, T] attention weights on a fixed 0..1 colour scale, every weight drawn as it is (an exactly
    0 weight is the darkest colour, not a blank). `edge` draws the causal mask's edge: "solid" where the model has
    the mask, "dash" where it only marks where a mask would cut.

    Built to sit in half a page, even a narrow one: tokens label the rows only (keys are numbered, and the hover
    names both), and the colour bar lies flat under the map instead of taking width beside it."""
    length = len(labels)
    names = [plain(t) for t in labels]
    fig = go.Figure(go.Heatmap(
        z=np.round(weights.astype(np.float64), 6), x=_positions(length), y=_positions(length), colorscale=SEQUENTIAL,
        zmin=0, zmax=1, colorbar=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0.5,
                                      xanchor="center", lenmode="pixels", len=150, thickness=10,
                                      title=dict(text="weight", side="right")),
        customdata=[[[names[i], names[j]] for j in range(length)] for i in range(length)],
        hovertemplate="query %{y} %{customdata[0]} → key %{x} %{customdata[1]}<br>weight %{z:.4f}<extra></extra>"))
    if edge:
        xs, ys = _staircase(length)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=BOUNDARY, width=2, dash=edge),
                                 hoverinfo="skip", showlegend=False))
    step = 1 if length <= 10 else 5
    fig.update_xaxes(tickvals=[p for p in _positions(length) if p == 1 or p % step == 0], showgrid=False,
                     title="key position", constrain="domain", range=[0.5, length + 0.5])
    fig.update_yaxes(tickvals=_positions(length), ticktext=names, tickfont=_font(length), showgrid=False,
                     title=None, scaleanchor="x", constrain="domain", range=[length + 0.5, 0.5])
    fig.update_layout(**base_layout(title=title, height=min(660, max(360, 9 * length + 270)),
                                    margin=dict(l=10, r=10, t=40, b=75)))
    return fig


def shift_bars(panels: Sequence[tuple[str, Sequence[str], np.ndarray]], title: str = "") -> go.Figure:
    """One row per model: each earlier token's relative change |h - h'| / |h| at the model's last layer. Each row has
    its own scale (one runaway token must not flatten the others) and every bar its label; an exactly unchanged
    vector is labelled 0."""
    colours = [WITH_MASK, WITHOUT_MASK, ENCODER]
    fig = make_subplots(rows=len(panels), cols=1, subplot_titles=[name for name, _, _ in panels],
                        vertical_spacing=0.16)
    for row, (name, labels, values) in enumerate(panels, 1):
        values = np.asarray(values, dtype=np.float64)
        text = ["0" if v == 0 else f"{100 * v:.0f}%" if v >= 0.01 else f"{100 * v:.1g}%" for v in values]
        fig.add_trace(go.Bar(
            x=_positions(len(labels)), y=values, marker_color=colours[(row - 1) % len(colours)], text=text,
            textposition="outside", cliponaxis=False, showlegend=False, name=name,
            customdata=[[plain(t), s] for t, s in zip(labels, text)],
            hovertemplate="%{customdata[0]}<br>moved %{customdata[1]} of its length<extra></extra>"), row=row, col=1)
        fig.update_xaxes(tickvals=_positions(len(labels)), ticktext=[plain(t) for t in labels], tickangle=-60,
                         tickfont=_font(len(labels)), row=row, col=1)
        top = float(values.max()) if values.size and values.max() > 0 else 0.01
        fig.update_yaxes(range=[0, top * 1.25], tickformat=".0%" if top >= 0.05 else ".1%", title="change",
                         row=row, col=1)
    fig.update_layout(**base_layout(title=dict(text=title, y=1, yref="container", yanchor="top", pad=dict(t=8)),
                                    height=250 * len(panels) + 60, margin=dict(l=10, r=10, t=70, b=10),
                                    uniformtext=dict(minsize=7, mode="hide")))
    return fig


def shift_heatmap(relative: np.ndarray, depths: Sequence[str], labels: Sequence[str], zmax: float,
                  title: str = "") -> go.Figure:
    """[depths, tokens] relative change, the embedding at the bottom and the last layer on top."""
    length = len(labels)
    names = [plain(t) for t in labels]
    fig = go.Figure(go.Heatmap(
        z=np.round(relative, 6), x=_positions(length), y=list(range(len(depths))), colorscale=SEQUENTIAL, zmin=0,
        zmax=max(zmax, 1e-6), colorbar=dict(title="change", thickness=12, tickformat=".0%"),
        customdata=[[[d, n] for n in names] for d in depths],
        hovertemplate="%{customdata[1]} after %{customdata[0]}<br>moved %{z:.2%} of its length<extra></extra>"))
    step = 1 if len(depths) <= 10 else 5
    ticks = [i for i in range(len(depths)) if i % step == 0 or i == len(depths) - 1]
    fig.update_yaxes(tickvals=ticks, ticktext=[depths[i] for i in ticks], showgrid=False)
    fig.update_xaxes(tickvals=_positions(length), ticktext=names, tickangle=-60, tickfont=_font(length),
                     showgrid=False)
    fig.update_layout(**base_layout(title=title, height=max(300, min(620, 14 * len(depths) + 200))))
    return fig


def next_token_probability(labels: Sequence[str], with_mask: np.ndarray, without_mask: np.ndarray,
                           title: str = "") -> go.Figure:
    """For each token of the text (from the second on), the probability the model gave it, reading only what
    came before (mask on) and reading everything (mask removed)."""
    length = len(labels)
    names = [plain(t) for t in labels]
    fig = go.Figure()
    for name, values, colour in [("mask on (as trained)", with_mask, WITH_MASK),
                                 ("mask removed", without_mask, WITHOUT_MASK)]:
        fig.add_trace(go.Bar(x=_positions(length), y=values, name=name, marker_color=colour,
                             customdata=names, hovertemplate=name + "<br>%{customdata}: %{y:.1%}<extra></extra>"))
    fig.update_xaxes(tickvals=_positions(length), ticktext=names, tickangle=-60, tickfont=_font(length),
                     title="the token to be predicted")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title="probability given to it")
    fig.update_layout(**base_layout(title=dict(text=title, y=1, yref="container", yanchor="top", pad=dict(t=8)),
                                    height=400, barmode="group", bargap=0.25, margin=dict(l=10, r=10, t=75, b=10),
                                    legend=dict(orientation="h", y=1.02, x=0, xanchor="left", yanchor="bottom")))
    return fig


def sink_by_layer(masked: np.ndarray, unmasked: np.ndarray, even_masked: float, even_unmasked: float,
                  title: str = "") -> go.Figure:
    """Mean weight on the first token in each layer, with the mask and without, against even spreading."""
    layers = list(range(1, len(masked) + 1))
    fig = go.Figure([
        go.Scatter(x=layers, y=masked, name="mask on (as trained)", mode="lines+markers", line=dict(color=WITH_MASK),
                   hovertemplate="layer %{x}: %{y:.1%} on the first token<extra>mask on</extra>"),
        go.Scatter(x=layers, y=unmasked, name="mask removed", mode="lines+markers", line=dict(color=WITHOUT_MASK),
                   hovertemplate="layer %{x}: %{y:.1%} on the first token<extra>mask removed</extra>"),
        go.Scatter(x=layers, y=[even_masked] * len(layers), name="even spread, mask on", mode="lines",
                   line=dict(color=WITH_MASK, dash="dot"), hoverinfo="skip"),
        go.Scatter(x=layers, y=[even_unmasked] * len(layers), name="even spread, mask removed", mode="lines",
                   line=dict(color=WITHOUT_MASK, dash="dot"), hoverinfo="skip"),
    ])
    fig.update_xaxes(title="layer", dtick=5, tick0=0, range=[0.5, len(layers) + 0.5])
    fig.update_yaxes(title="weight on the first token", tickformat=".0%", range=[0, 1.02])
    fig.update_layout(**base_layout(title=title, height=380, legend=dict(orientation="h", y=-0.22, x=0)))
    return fig


def vector_strips(vectors: np.ndarray, names: Sequence[str], title: str = "") -> go.Figure:
    """Whole vectors as rows of coloured cells (one per dimension): blue negative, white 0, red positive."""
    limit = float(np.abs(vectors).max()) or 1.0
    fig = go.Figure(go.Heatmap(
        z=np.round(vectors, 5), x=list(range(1, vectors.shape[1] + 1)), y=[plain(n) for n in names],
        colorscale="RdBu_r", zmid=0, zmin=-limit, zmax=limit, colorbar=dict(title="value", thickness=10),
        hovertemplate="%{y}<br>dimension %{x}: %{z:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(title=f"dimension (1-{vectors.shape[1]})", showgrid=False)
    fig.update_layout(**base_layout(title=title, height=110 + 55 * len(names)))
    return fig
