"""Charts of optimizers: paths over 2-D loss surfaces side by side, loss curves of a race, weight paths on their
two main directions. Pure figure builders: numbers in, plotly figures out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout, legend_below

GRID = "rgba(128,128,128,0.25)"
# one colour and dash per optimizer, the same on every chart of the page
COLOURS = {"sgd": OKABE_ITO[5], "momentum": OKABE_ITO[1], "adam": OKABE_ITO[2], "adamw": OKABE_ITO[0]}
DASHES = {"sgd": "solid", "momentum": "solid", "adam": "solid", "adamw": "dot"}


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, font=dict(size=14))


def surface_paths(panels: Sequence[dict], names: dict[str, str], title: str = "", height: int = 420) -> go.Figure:
    """One panel per surface: its loss as log-spaced contours, and each optimizer's path from the start (white
    circle) towards the minimum (star). A panel is a dict with title, xs, ys, zz, start, minimum and
    paths = {optimizer: (steps + 1, 2) array}; a path that leaves the panel is clipped at its edge."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[plain(p["title"]) for p in panels],
                        horizontal_spacing=0.05)
    for col, panel in enumerate(panels, start=1):
        z = np.log10(np.asarray(panel["zz"]) + 1e-3)
        fig.add_trace(go.Contour(x=panel["xs"], y=panel["ys"], z=z, colorscale="Greys", reversescale=True,
                                 showscale=False, ncontours=22, opacity=0.45, line=dict(width=0.6),
                                 contours=dict(coloring="fill"), hoverinfo="skip"), row=1, col=col)
        (x0, x1), (y0, y1) = (min(panel["xs"]), max(panel["xs"])), (min(panel["ys"]), max(panel["ys"]))
        for name, points in panel["paths"].items():
            pts = np.asarray(points, dtype=float)   # the fixed axis ranges clip a path that leaves the panel
            fig.add_trace(go.Scatter(x=pts[:, 0], y=pts[:, 1], mode="lines+markers", name=names[name],
                                     legendgroup=name, showlegend=col == 1,
                                     line=dict(color=COLOURS[name], width=2.4, dash=DASHES[name]),
                                     marker=dict(size=3, color=COLOURS[name]),
                                     hovertemplate=f"{names[name]}<br>step %{{customdata}}<br>x %{{x:.3f}}, "
                                                   "y %{y:.3f}<extra></extra>",
                                     customdata=np.arange(len(pts))), row=1, col=col)
        fig.add_trace(go.Scatter(x=[panel["start"][0]], y=[panel["start"][1]], mode="markers", name="start",
                                 showlegend=col == 1, legendgroup="start",
                                 marker=dict(size=11, color="white", line=dict(color="black", width=1.5)),
                                 hovertemplate="start<extra></extra>"), row=1, col=col)
        fig.add_trace(go.Scatter(x=[panel["minimum"][0]], y=[panel["minimum"][1]], mode="markers", name="minimum",
                                 showlegend=col == 1, legendgroup="minimum",
                                 marker=dict(size=15, symbol="star", color=OKABE_ITO[6],
                                             line=dict(color="black", width=1)),
                                 hovertemplate="minimum<extra></extra>"), row=1, col=col)
        fig.update_xaxes(range=[x0, x1], showgrid=False, zeroline=False, row=1, col=col)
        fig.update_yaxes(range=[y0, y1], showgrid=False, zeroline=False, row=1, col=col)
    fig.update_annotations(font_size=12)   # the panel titles
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=70)
    fig.update_layout(margin=dict(t=75))   # room for the title above the panel titles
    return fig


def race_curves(names: Sequence[str], keys: Sequence[str], steps: Sequence[Sequence[int]],
                minibatch: Sequence[Sequence[float]], eval_steps: Sequence[Sequence[int]],
                val_loss: Sequence[Sequence[float]], uniform: float, title: str = "", height: int = 420) -> go.Figure:
    """Each optimizer's validation loss (thick, markers) over its minibatch loss (thin, faint), one colour each."""
    fig = go.Figure()
    for name, key, s, mb, es, vl in zip(names, keys, steps, minibatch, eval_steps, val_loss):
        fig.add_trace(go.Scatter(x=list(s), y=list(mb), mode="lines", name=f"{name}: minibatch", legendgroup=key,
                                 showlegend=False, opacity=0.3, line=dict(color=COLOURS[key], width=1),
                                 hovertemplate=f"{name}<br>step %{{x}}<br>minibatch loss %{{y:.3f}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=list(es), y=list(vl), mode="lines+markers", name=name, legendgroup=key,
                                 line=dict(color=COLOURS[key], width=2.6, dash=DASHES[key]), marker=dict(size=6),
                                 hovertemplate=f"{name}<br>step %{{x}}<br>validation loss %{{y:.3f}}<extra></extra>"))
    fig.add_hline(y=uniform, line=dict(color="rgba(128,128,128,0.9)", dash="dash", width=1.2),
                  annotation=dict(text=f"uniform guess ln V = {uniform:.2f}", font=dict(size=12), xanchor="right",
                                  x=1, yanchor="bottom"))
    fig.update_xaxes(title="optimizer step", gridcolor=GRID)
    fig.update_yaxes(title="loss (nats per character)", rangemode="tozero", gridcolor=GRID)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=80)
    return fig


def weight_paths(names: Sequence[str], keys: Sequence[str], steps: Sequence[Sequence[int]],
                 coords: Sequence[np.ndarray], explained: Sequence[float], title: str = "",
                 height: int = 440) -> go.Figure:
    """Every run's weights, snapshot by snapshot, on the two directions along which all of them spread most;
    the shared start is the origin."""
    fig = go.Figure()
    for name, key, s, xy in zip(names, keys, steps, coords):
        xy = np.asarray(xy, dtype=float)
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines+markers", name=name,
                                 line=dict(color=COLOURS[key], width=2.4, dash=DASHES[key]), marker=dict(size=5),
                                 customdata=list(s),
                                 hovertemplate=f"{name}<br>step %{{customdata}}<br>PC1 %{{x:.3f}}, "
                                               "PC2 %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", name="shared start",
                             marker=dict(size=12, color="white", line=dict(color="black", width=1.5)),
                             hovertemplate="the shared initial weights<extra></extra>"))
    fig.update_xaxes(title=f"main direction 1 ({explained[0]:.0%} of the spread)", gridcolor=GRID, zeroline=False)
    fig.update_yaxes(title=f"main direction 2 ({explained[1]:.0%})", gridcolor=GRID, zeroline=False)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=80)
    return fig
