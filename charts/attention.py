"""Attention charts: heatmaps, BertViz-style lines, the steps of one query row, head grids and head statistics.

Positions, layers and heads are shown 1-based; callers pass 0-based indices and readable token labels.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from charts.style import ACCENT, DIVERGING, PRIMARY, SEQUENTIAL, base_layout

MASKED_FILL = "rgba(140,140,140,0.22)"
MASKED_BAR = "rgba(140,140,140,0.45)"


def _tick_font(length: int) -> int:
    return 13 if length <= 16 else 11 if length <= 32 else 9


def _masked_trace(length: int) -> go.Heatmap:
    """Grey cells above the diagonal: keys after the query, which the causal mask removes."""
    upper = np.where(np.triu(np.ones((length, length), dtype=bool), 1), 1.0, np.nan).astype(np.float32)
    return go.Heatmap(z=upper, x=list(range(1, length + 1)), y=list(range(1, length + 1)), showscale=False,
                      colorscale=[[0, MASKED_FILL], [1, MASKED_FILL]], hoverongaps=False,
                      hovertemplate="query %{y} · key %{x}: masked (a later token)<extra></extra>")


def _weights_trace(weights: np.ndarray, labels: Sequence[str]) -> go.Heatmap:
    """The lower triangle of a [T, T] map; each cell's hover names both tokens."""
    length = len(labels)
    z = np.where(np.tril(np.ones((length, length), dtype=bool)), weights, np.nan)
    return go.Heatmap(
        z=np.round(z, 5), x=list(range(1, length + 1)), y=list(range(1, length + 1)), zmin=0, zmax=1,
        hoverongaps=False, colorscale=SEQUENTIAL, colorbar=dict(title="weight", thickness=12, len=0.7),
        text=[[f"{labels[i]} → {labels[j]}" for j in range(length)] for i in range(length)],
        hovertemplate="query %{y} → key %{x}<br>%{text}<br>weight %{z:.4f}<extra></extra>")


def attention_heatmap(weights: np.ndarray, labels: Sequence[str], title: str = "",
                      query: int | None = None, height: int | None = None) -> go.Figure:
    """One head's [T, T] weights: query rows (top to bottom), key columns, the masked triangle in grey."""
    length = len(labels)
    fig = go.Figure([_masked_trace(length), _weights_trace(weights, labels)])
    positions = list(range(1, length + 1))
    font = dict(family="monospace", size=_tick_font(length))
    fig.update_xaxes(title="key: the token attended to (position)", tickvals=positions, ticktext=list(labels),
                     tickangle=-60, tickfont=font, showgrid=False, constrain="domain")
    fig.update_yaxes(title="query: the token attending", tickvals=positions, ticktext=list(labels),
                     autorange="reversed", tickfont=font, showgrid=False, scaleanchor="x", constrain="domain")
    if query is not None:
        fig.add_shape(type="rect", x0=0.5, x1=length + 0.5, y0=query + 0.5, y1=query + 1.5,
                      line=dict(color=ACCENT, width=2.5))
    fig.update_layout(**base_layout(title=title, height=height or min(900, max(480, 13 * length + 230))))
    return fig


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha:.2f})"


def attention_lines(weights: np.ndarray, labels: Sequence[str], query: int | None = None,
                    min_weight: float = 0.02, title: str = "") -> go.Figure:
    """BertViz-style view: queries on the left, keys on the right, one line per weight, darker and wider
    when larger. With `query`, only that token's lines; otherwise every query's (weights under
    `min_weight` are left out to keep the picture readable)."""
    length = len(labels)
    queries = [query] if query is not None else range(length)
    pairs = [(i, j, float(weights[i, j])) for i in queries for j in range(i + 1)
             if weights[i, j] >= (0.0 if query is not None else min_weight)]
    edges = np.linspace(0, 1, 9)
    traces = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        chosen = [(i, j, w) for i, j, w in pairs if lo <= w < hi or (hi == 1 and w == 1)]
        if not chosen:
            continue
        mid = (lo + hi) / 2
        xs, ys = [], []
        for i, j, _ in chosen:
            xs += [0, 1, None]
            ys += [i + 1, j + 1, None]
        traces.append(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                 line=dict(color=_rgba(PRIMARY, 0.12 + 0.88 * mid), width=0.6 + 5 * mid)))
    # Invisible points in the middle of each line carry its hover text.
    traces.append(go.Scatter(
        x=[0.5] * len(pairs), y=[(i + j) / 2 + 1 for i, j, _ in pairs], mode="markers", showlegend=False,
        marker=dict(size=6, color="rgba(0,0,0,0)"),
        customdata=[[i + 1, labels[i], j + 1, labels[j], w] for i, j, w in pairs],
        hovertemplate="query %{customdata[0]} %{customdata[1]} → key %{customdata[2]} %{customdata[3]}"
                      "<br>weight %{customdata[4]:.4f}<extra></extra>"))
    colours = [ACCENT if i == query else None for i in range(length)]
    font = dict(family="monospace", size=_tick_font(length) + 1)
    traces.append(go.Scatter(
        x=[0] * length, y=list(range(1, length + 1)), mode="markers+text", text=list(labels),
        textposition="middle left", showlegend=False, textfont=font,
        marker=dict(size=7, color=[c or PRIMARY for c in colours]),
        hovertemplate="query %{y}: %{text}<extra></extra>"))
    received = weights[query] if query is not None else weights.sum(0) / np.arange(length, 0, -1)
    traces.append(go.Scatter(
        x=[1] * length, y=list(range(1, length + 1)), mode="markers+text", text=list(labels),
        textposition="middle right", showlegend=False, textfont=font,
        marker=dict(size=7, color=PRIMARY), customdata=np.round(received, 5),
        hovertemplate=("key %{y}: %{text}<br>" + ("weight from the query %{customdata:.4f}" if query is not None
                                                  else "mean weight it receives %{customdata:.4f}")
                       + "<extra></extra>")))
    fig = go.Figure(traces)
    fig.update_xaxes(range=[-0.75, 1.75], visible=False, fixedrange=True)
    fig.update_yaxes(range=[length + 0.7, 0.3], visible=False)
    fig.add_annotation(x=0, y=0.35, yanchor="bottom", text="<b>query</b>", showarrow=False, xanchor="right")
    fig.add_annotation(x=1, y=0.35, yanchor="bottom", text="<b>key</b>", showarrow=False, xanchor="left")
    fig.update_layout(**base_layout(title=title, height=max(320, 17 * length + 110), hovermode="closest"))
    return fig


def vector_rows(rows: np.ndarray, row_labels: Sequence[str], title: str = "", height: int | None = None,
                colour_title: str = "value") -> go.Figure:
    """Vectors as rows of coloured cells (one column per dimension), zero white, sign by colour."""
    limit = float(np.abs(rows).max()) or 1.0
    fig = go.Figure(go.Heatmap(
        z=np.round(rows, 4), x=list(range(1, rows.shape[1] + 1)), y=list(range(len(row_labels))),
        colorscale=DIVERGING, zmid=0, zmin=-limit, zmax=limit, text=[[lab] * rows.shape[1] for lab in row_labels],
        colorbar=dict(title=colour_title, thickness=10),
        hovertemplate="%{text}<br>dimension %{x}: %{z:.4f}<extra></extra>"))
    fig.update_yaxes(tickvals=list(range(len(row_labels))), ticktext=list(row_labels), autorange="reversed",
                     tickfont=dict(family="monospace", size=11), showgrid=False)
    fig.update_xaxes(title="dimension of the head (1-64)", showgrid=False)
    fig.update_layout(**base_layout(title=title, height=height or max(150, 18 * len(row_labels) + 110)))
    return fig


def score_bars(values: np.ndarray, labels: Sequence[str], query: int, y_title: str, title: str = "",
               masked: bool = False) -> go.Figure:
    """One bar per key position. Keys after the query are grey (computed, but about to be masked), or, when
    `masked`, carry no bar and a −∞ label."""
    length = len(labels)
    positions = list(range(1, length + 1))
    visible_keys = np.arange(length) <= query
    shown = np.where(visible_keys | (not masked), values, 0.0)
    colours = [PRIMARY if v else MASKED_BAR for v in visible_keys]
    text = [f"{v:.2f}" if ok else ("−∞" if masked else f"{v:.2f}") for v, ok in zip(values, visible_keys)]
    fig = go.Figure(go.Bar(
        x=positions, y=np.round(shown, 5), marker_color=colours, text=text, textposition="outside",
        cliponaxis=False, customdata=[[lab, t] for lab, t in zip(labels, text)],
        hovertemplate="key %{x} %{customdata[0]}<br>value %{customdata[1]}<extra></extra>"))
    fig.update_xaxes(title="key position", tickvals=positions, ticktext=list(labels), tickangle=-60,
                     tickfont=dict(family="monospace", size=_tick_font(length)))
    fig.update_yaxes(title=y_title, zeroline=True)
    span = float(np.abs(shown).max()) or 1.0
    fig.update_yaxes(range=[min(0.0, float(shown.min())) - 0.15 * span, max(0.0, float(shown.max())) + 0.2 * span])
    fig.update_layout(**base_layout(title=title, height=300, showlegend=False,
                                    uniformtext=dict(minsize=7, mode="hide")))
    return fig


def weight_bars(hand: np.ndarray, model: np.ndarray, labels: Sequence[str], query: int, title: str = "") -> go.Figure:
    """Softmax weights computed by hand (bars) with the model's own attention row on top (diamonds)."""
    keys = list(range(query + 1))
    positions = [j + 1 for j in keys]
    custom = [[labels[j], hand[j], model[j], abs(hand[j] - model[j])] for j in keys]
    fig = go.Figure([
        go.Bar(x=positions, y=hand[:query + 1], name="computed by hand", marker_color=PRIMARY, customdata=custom,
               text=[f"{100 * w:.1f}%" for w in hand[:query + 1]], textposition="outside", cliponaxis=False,
               hovertemplate="key %{x} %{customdata[0]}<br>by hand %{customdata[1]:.7f}<br>model "
                             "%{customdata[2]:.7f}<br>|difference| %{customdata[3]:.1e}<extra></extra>"),
        go.Scatter(x=positions, y=model[:query + 1], name="the model's own row", mode="markers",
                   marker=dict(symbol="diamond", size=9, color=ACCENT, line=dict(width=1, color="black")),
                   hoverinfo="skip"),
    ])
    fig.update_xaxes(title="key position", tickvals=positions, ticktext=[labels[j] for j in keys], tickangle=-60,
                     tickfont=dict(family="monospace", size=_tick_font(query + 1)))
    fig.update_yaxes(title="attention weight", range=[0, min(1.15, float(hand.max()) * 1.25 + 0.02)])
    fig.update_layout(**base_layout(title=title, height=300, legend=dict(orientation="h", y=1.02, x=1,
                                                                         xanchor="right", yanchor="bottom"),
                                    uniformtext=dict(minsize=7, mode="hide")))
    return fig


def weighted_sum(values: np.ndarray, weights: np.ndarray, output: np.ndarray, labels: Sequence[str],
                 title: str = "") -> go.Figure:
    """The value rows a query may read, each labelled with its weight, and the weighted sum they give."""
    count = len(weights)
    limit = float(max(np.abs(values).max(), np.abs(output).max())) or 1.0
    fig = make_subplots(rows=2, cols=1, row_heights=[count, 1.2], vertical_spacing=min(0.12, 2.4 / (count + 12)))
    row_labels = [f"{100 * w:5.1f}% × {lab}" for w, lab in zip(weights, labels)]
    dims = list(range(1, values.shape[1] + 1))
    common = dict(colorscale=DIVERGING, zmid=0, zmin=-limit, zmax=limit)
    fig.add_trace(go.Heatmap(z=np.round(values, 4), x=dims, y=list(range(count)), **common,
                             colorbar=dict(title="value", thickness=10),
                             text=[[lab] * len(dims) for lab in row_labels],
                             hovertemplate="%{text}<br>dimension %{x}: %{z:.4f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=np.round(output[None], 4), x=dims, y=[0], showscale=False, **common,
                             hovertemplate="output, dimension %{x}: %{z:.4f}<extra></extra>"), row=2, col=1)
    fig.update_yaxes(tickvals=list(range(count)), ticktext=row_labels, autorange="reversed", showgrid=False,
                     tickfont=dict(family="monospace", size=11), row=1, col=1)
    fig.update_yaxes(tickvals=[0], ticktext=["= output o_i"], showgrid=False, tickfont=dict(family="monospace"),
                     row=2, col=1)
    fig.update_xaxes(showgrid=False)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_xaxes(title="dimension of the head (1-64)", row=2, col=1)
    fig.update_layout(**base_layout(title=title, height=max(260, 18 * count + 200)))
    return fig


def head_grid(layer_weights: np.ndarray, labels: Sequence[str], selected: int | None = None,
              kv_group: int = 3, height: int = 900) -> go.Figure:
    """All heads of one layer side by side (3 per row), one shared colour scale from 0 to 1.

    Kept light for 9 x T x T cells: the axes are categories named "position token", so the hover needs no
    per-cell text, and the masked triangle is the grey plot background showing through empty cells.
    """
    heads, length = layer_weights.shape[0], len(labels)
    cols = 3
    rows = -(-heads // cols)
    titles = [f"head {h + 1} · KV head {h // kv_group + 1}" for h in range(heads)]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.06)
    names = [f"{j + 1} {label}" for j, label in enumerate(labels)]
    lower = np.tril(np.ones((length, length), dtype=bool))
    for h in range(heads):
        z = np.where(lower, layer_weights[h], np.nan).astype(np.float32)
        fig.add_trace(go.Heatmap(z=np.round(z, 4), x=names, y=names, coloraxis="coloraxis", hoverongaps=False,
                                 hovertemplate=f"head {h + 1}<br>query %{{y}} → key %{{x}}<br>weight %{{z:.4f}}"
                                               "<extra></extra>"),
                      row=h // cols + 1, col=h % cols + 1)
    small = length <= 12
    fig.update_xaxes(showgrid=False, showticklabels=small, tickangle=-60, tickfont=dict(family="monospace", size=9))
    fig.update_yaxes(showgrid=False, showticklabels=small, tickfont=dict(family="monospace", size=9),
                     autorange="reversed")
    if selected is not None and 0 <= selected < heads:
        fig.layout.annotations[selected].font = dict(color=ACCENT, size=15)
        fig.layout.annotations[selected].text = f"<b>{titles[selected]} (selected)</b>"
    fig.update_layout(**base_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), plot_bgcolor=MASKED_FILL,
                                    coloraxis=dict(colorscale=SEQUENTIAL, cmin=0, cmax=1,
                                                   colorbar=dict(title="weight", thickness=12))))
    return fig


_EMPTY, _LEVELS = 0, 250   # byte 0: an empty cell; bytes 1..251: weight 0..1


def _quantised_scale() -> list:
    """Transparent at 0, Viridis over 1..(_LEVELS + 1)."""
    top = _LEVELS + 1
    stops = [[(1 + _LEVELS * i / 10) / top, colour] for i, colour in enumerate(sample_colorscale(SEQUENTIAL, 11))]
    return [[0, "rgba(0,0,0,0)"], [0.5 / top, "rgba(0,0,0,0)"], *stops]


def overview(thumbnails: np.ndarray, hover: Sequence[Sequence[str]], selected: tuple[int, int] | None = None
             ) -> go.Figure:
    """Every head of every layer as a small map: layers left to right, heads top to bottom.

    `thumbnails` is [layers, heads, s, s] (already pooled). One stitched image keeps the figure light;
    a transparent marker over each thumbnail carries its hover text and makes it clickable.
    `hover[layer][head]` is that head's hover text.
    """
    layers, heads, size, _ = thumbnails.shape
    step = size + max(1, size // 6)
    # Weights quantised to one byte per cell (a fraction of the JSON of floats); byte 0 marks empty cells
    # (gaps and the masked triangle), drawn transparent by the bottom end of the colour scale.
    canvas = np.full((heads * step, layers * step), _EMPTY, dtype=np.uint8)
    lower = np.tril(np.ones((size, size), dtype=bool))
    for l in range(layers):
        for h in range(heads):
            block = np.where(lower, 1 + np.round(np.clip(thumbnails[l, h], 0, 1) * _LEVELS), _EMPTY)
            canvas[h * step:h * step + size, l * step:l * step + size] = block
    centre = (size - 1) / 2
    ticks = [0, 0.25, 0.5, 0.75, 1]
    fig = go.Figure(go.Heatmap(z=canvas, colorscale=_quantised_scale(), zmin=0, zmax=_LEVELS + 1, hoverinfo="skip",
                               colorbar=dict(title="weight", thickness=10, tickvals=[1 + t * _LEVELS for t in ticks],
                                             ticktext=[f"{t:g}" for t in ticks])))
    xs = [l * step + centre for l in range(layers) for _ in range(heads)]
    ys = [h * step + centre for _ in range(layers) for h in range(heads)]
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", showlegend=False,
        marker=dict(symbol="square", size=28, color="rgba(0,0,0,0)"),
        customdata=[[l, h] for l in range(layers) for h in range(heads)],
        text=[hover[l][h] for l in range(layers) for h in range(heads)],
        hovertemplate="%{text}<extra></extra>"))
    if selected is not None:
        l, h = selected
        fig.add_shape(type="rect", x0=l * step - 0.9, x1=l * step + size - 0.1, y0=h * step - 0.9,
                      y1=h * step + size - 0.1, line=dict(color=ACCENT, width=3))
    fig.update_xaxes(tickvals=[l * step + centre for l in range(layers)], ticktext=[str(l + 1) for l in range(layers)],
                     title="layer", showgrid=False, zeroline=False, side="top",
                     constrain="domain")
    fig.update_yaxes(tickvals=[h * step + centre for h in range(heads)], ticktext=[str(h + 1) for h in range(heads)],
                     title="head", autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x",
                     constrain="domain")
    fig.update_layout(**base_layout(height=360, hovermode="closest", dragmode=False,
                                    margin=dict(l=10, r=10, t=50, b=10)))
    return fig


def head_map(values: np.ndarray, title: str, colour_title: str, value_format: str = ".2f",
             zmax: float | None = None, selected: tuple[int, int] | None = None) -> go.Figure:
    """A [layers, heads] statistic as a grid: layers left to right, heads top to bottom."""
    layers, heads = values.shape
    fig = go.Figure(go.Heatmap(
        z=np.round(values.T, 4), x=list(range(1, layers + 1)), y=list(range(1, heads + 1)),
        colorscale=SEQUENTIAL, zmin=0, zmax=zmax, colorbar=dict(title=colour_title, thickness=10),
        hovertemplate=f"layer %{{x}} head %{{y}}<br>{colour_title} %{{z:{value_format}}}<extra></extra>"))
    if selected is not None:
        l, h = selected
        fig.add_shape(type="rect", x0=l + 0.5, x1=l + 1.5, y0=h + 0.5, y1=h + 1.5, line=dict(color=ACCENT, width=2.5))
    fig.update_xaxes(title="layer", dtick=1 if layers <= 12 else 5, tick0=1, showgrid=False)
    fig.update_yaxes(title="head", dtick=1, autorange="reversed", showgrid=False)
    fig.update_layout(**base_layout(title=title, height=300))
    return fig


def head_scatter(entropy: np.ndarray, distance: np.ndarray, colour: np.ndarray, colour_title: str,
                 selected: tuple[int, int] | None = None, title: str = "") -> go.Figure:
    """One point per head: how far it reads (x) against how spread out its weights are (y)."""
    layers, heads = entropy.shape
    cells = [(l, h) for l in range(layers) for h in range(heads)]
    fig = go.Figure(go.Scatter(
        x=[distance[c] for c in cells], y=[entropy[c] for c in cells], mode="markers",
        marker=dict(size=8, color=[colour[c] for c in cells], colorscale=SEQUENTIAL, cmin=0, cmax=1,
                    colorbar=dict(title=colour_title, thickness=10), line=dict(width=0.5, color="white")),
        customdata=[[l + 1, h + 1, colour[l, h]] for l, h in cells],
        hovertemplate="layer %{customdata[0]} head %{customdata[1]}<br>mean distance %{x:.2f} tokens"
                      f"<br>entropy %{{y:.2f}} bits<br>{colour_title} %{{customdata[2]:.2f}}<extra></extra>",
        showlegend=False))
    if selected is not None:
        fig.add_trace(go.Scatter(x=[distance[selected]], y=[entropy[selected]], mode="markers", showlegend=False,
                                 marker=dict(size=16, color="rgba(0,0,0,0)", line=dict(width=2.5, color=ACCENT)),
                                 hoverinfo="skip"))
    fig.update_xaxes(title="mean attended distance (tokens back)", rangemode="tozero")
    fig.update_yaxes(title="mean entropy of a row (bits)", rangemode="tozero")
    fig.update_layout(**base_layout(title=title, height=420, hovermode="closest"))
    return fig
