"""FlashAttention charts: the tiles over one head's attention map, one row's running state, the cost sweep.

Positions and tiles are shown 1-based; callers pass 0-based indices.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.attention import attention_heatmap
from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, base_layout

DONE_FILL = "rgba(230,159,0,0.16)"     # ACCENT, translucent: tiles already folded into the running state
GRID = "rgba(128,128,128,0.55)"
NAIVE, TILED, FUSED, SCORES = OKABE_ITO[5], OKABE_ITO[0], OKABE_ITO[2], "gray"


def tile_map(weights: np.ndarray, labels: Sequence[str], block: int, query: int, done: int,
             title: str = "") -> go.Figure:
    """The head's attention map with the tile grid; the query's block row shows the tiles done so far.

    `done` key tiles of the query's block have been processed; the last of them is outlined as current.
    """
    length = len(labels)
    fig = attention_heatmap(weights, [plain(t) for t in labels], title=title, query=query, height=620)
    edge = length + 0.5
    grid = dict(type="line", line=dict(color=GRID, width=1, dash="dot"))
    shapes = [*fig.layout.shapes]   # the outlined query row
    for boundary in range(block, length, block):
        shapes.append(dict(grid, x0=boundary + 0.5, x1=boundary + 0.5, y0=0.5, y1=edge))
        shapes.append(dict(grid, x0=0.5, x1=edge, y0=boundary + 0.5, y1=boundary + 0.5))
    q_start = (query // block) * block
    q_stop = min(q_start + block, length)
    for kb in range(done):
        k_start, k_stop = kb * block, min((kb + 1) * block, length)
        shapes.append(dict(type="rect", x0=k_start + 0.5, x1=k_stop + 0.5, y0=q_start + 0.5, y1=q_stop + 0.5,
                           fillcolor=DONE_FILL, line=dict(color=ACCENT, width=3.5 if kb == done - 1 else 1)))
    fig.update_layout(shapes=shapes, margin=dict(l=10, r=10, t=50, b=10))   # one update: add_shape validates each
    return fig


def running_state(tile_max: Sequence[float], running_max: Sequence[float], running_sum: Sequence[float],
                  distance: Sequence[float], current: int, title: str = "") -> go.Figure:
    """One query row across its key tiles: the tile's max and the running max m, the running sum l, and how
    far the output so far is from ordinary (naive) attention's output for the row. `current` is the 0-based
    step shown as the current one."""
    steps = list(range(1, len(running_max) + 1))
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=("running max m (and this tile's max)", "running sum ℓ",
                                        "max |output so far − ordinary attention|"))
    finite_tile = [t if np.isfinite(t) else None for t in tile_max]
    fig.add_trace(go.Scatter(x=steps, y=finite_tile, mode="markers", name="this tile's max score",
                             marker=dict(color=OKABE_ITO[4], size=9, symbol="diamond"),
                             hovertemplate="tile %{x}: max score %{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=list(running_max), mode="lines+markers", name="running max m",
                             line=dict(color=ACCENT, width=2.5, shape="hv"),
                             hovertemplate="after tile %{x}: m = %{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=list(running_sum), mode="lines+markers", name="running sum ℓ",
                             line=dict(color=OKABE_ITO[0], width=2.5),
                             hovertemplate="after tile %{x}: ℓ = %{y:.4f}<extra></extra>"), row=2, col=1)
    fig.add_trace(go.Scatter(x=steps, y=[max(float(d), 1e-12) for d in distance], mode="lines+markers",
                             name="distance to ordinary attention", line=dict(color=OKABE_ITO[5], width=2.5),
                             hovertemplate="after tile %{x}: %{y:.2e}<extra></extra>"), row=3, col=1)
    marker = dict(type="line", x0=current + 1, x1=current + 1, y0=0, y1=1,
                  line=dict(color="gray", dash="dot", width=1.5))
    fig.update_layout(shapes=[dict(marker, xref=f"x{r if r > 1 else ''}", yref=f"y{r if r > 1 else ''} domain")
                              for r in (1, 2, 3)])
    fig.update_yaxes(type="log", row=3, col=1, exponentformat="power")
    fig.update_xaxes(title="key tile (1 = the first keys)", tickvals=steps, row=3, col=1)
    fig.update_layout(**base_layout(title=title, height=560, showlegend=False))
    fig.update_layout(margin=dict(l=10, r=10, t=70, b=10))
    return fig


def cost_curves(lengths: Sequence[int], naive_ms: Sequence[float], tiled_ms: Sequence[float],
                fused_ms: Sequence[float], naive_mb: Sequence[float], tiled_mb: Sequence[float],
                score_mb: Sequence[float], block: int, title: str = "") -> go.Figure:
    """Left: time of one causal head, three ways. Right: peak memory allocated by the two numpy versions."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("time for one head (ms, best of 3)", "peak memory allocated (MB)"))
    x = list(lengths)
    hover = "%{x:,} tokens: %{y:.3g} ms<extra>%{fullData.name}</extra>"
    fig.add_trace(go.Scatter(x=x, y=list(naive_ms), name="naive (numpy): full T×T scores", mode="lines+markers",
                             line=dict(color=NAIVE, width=2.5), legendgroup="naive", hovertemplate=hover), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=list(tiled_ms), name=f"tiled (numpy, {block}×{block} tiles)",
                             mode="lines+markers", line=dict(color=TILED, width=2.5), legendgroup="tiled",
                             hovertemplate=hover), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=list(fused_ms), name="fused kernel (torch SDPA, C++)", mode="lines+markers",
                             line=dict(color=FUSED, width=2.5, dash="dash"), hovertemplate=hover), 1, 1)
    mb = "%{x:,} tokens: %{y:.3g} MB<extra>%{fullData.name}</extra>"
    fig.add_trace(go.Scatter(x=x, y=list(naive_mb), name="naive peak", mode="lines+markers", showlegend=False,
                             line=dict(color=NAIVE, width=2.5), legendgroup="naive", hovertemplate=mb), 1, 2)
    fig.add_trace(go.Scatter(x=x, y=list(tiled_mb), name="tiled peak", mode="lines+markers", showlegend=False,
                             line=dict(color=TILED, width=2.5), legendgroup="tiled", hovertemplate=mb), 1, 2)
    fig.add_trace(go.Scatter(x=x, y=list(score_mb), name="one T×T float32 matrix (formula)", mode="lines",
                             line=dict(color=SCORES, width=1.5, dash="dot"), hovertemplate=mb), 1, 2)
    for col in (1, 2):
        fig.update_xaxes(type="log", title="sequence length (tokens)", tickvals=x, ticktext=[f"{n:,}" for n in x],
                         row=1, col=col)
        fig.update_yaxes(type="log", exponentformat="power", row=1, col=col)
    fig.update_layout(**base_layout(title=title, height=430, legend=dict(orientation="h", y=-0.25, x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    return fig
