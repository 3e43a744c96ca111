"""Charts of training hyperparameters: learning-rate schedules side by side, the runs they train overlaid, and
the learning-rate range test with its minimum and divergence cliff. Pure figure builders: numbers in, figures out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout, legend_below

GRID = "rgba(128,128,128,0.25)"
# one colour and dash per schedule shape, the same on every chart of the page
COLOURS = {"constant": OKABE_ITO[5], "cosine": OKABE_ITO[0], "wsd": OKABE_ITO[2], "exponential": OKABE_ITO[3]}
DASHES = {"constant": "dot", "cosine": "solid", "wsd": "dash", "exponential": "solid"}


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, font=dict(size=14))


def schedule_curves(names: Sequence[str], kinds: Sequence[str], curves: Sequence[Sequence[float]],
                    chosen: str, title: str = "", height: int = 360) -> go.Figure:
    """Learning rate against step for each shape; the reader's shape drawn thick, the others thin."""
    fig = go.Figure()
    for name, kind, curve in zip(names, kinds, curves):
        mine = kind == chosen
        fig.add_trace(go.Scatter(x=list(range(len(curve))), y=list(curve), mode="lines", name=plain(name),
                                 line=dict(color=COLOURS[kind], dash=DASHES[kind], width=3.4 if mine else 1.6),
                                 opacity=1.0 if mine else 0.75,
                                 hovertemplate=f"{plain(name)}<br>step %{{x}}<br>learning rate %{{y:.3g}}<extra></extra>"))
    fig.update_xaxes(title="optimizer step (0-based)", gridcolor=GRID)
    fig.update_yaxes(title="learning rate", rangemode="tozero", gridcolor=GRID, exponentformat="power")
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=70)
    return fig


def schedule_runs(names: Sequence[str], kinds: Sequence[str], steps: Sequence[Sequence[int]],
                  lrs: Sequence[Sequence[float]], minibatch: Sequence[Sequence[float]],
                  eval_steps: Sequence[Sequence[int]], val_loss: Sequence[Sequence[float]], uniform: float,
                  title: str = "", height: int = 560) -> go.Figure:
    """Top: each run's validation loss (thick, markers) over its minibatch loss (faint). Bottom: the learning
    rate each run used at each step, so a bend in a loss curve can be matched to the schedule."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.68, 0.32])
    for name, kind, s, lr, mb, es, vl in zip(names, kinds, steps, lrs, minibatch, eval_steps, val_loss):
        label = plain(name)
        fig.add_trace(go.Scatter(x=list(s), y=list(mb), mode="lines", name=f"{label}: minibatch", legendgroup=kind,
                                 showlegend=False, opacity=0.3, line=dict(color=COLOURS[kind], width=1),
                                 hovertemplate=f"{label}<br>step %{{x}}<br>minibatch loss %{{y:.3f}}<extra></extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=list(es), y=list(vl), mode="lines+markers", name=label, legendgroup=kind,
                                 line=dict(color=COLOURS[kind], width=2.6, dash=DASHES[kind]), marker=dict(size=6),
                                 hovertemplate=f"{label}<br>step %{{x}}<br>validation loss %{{y:.3f}}<extra></extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=list(s), y=list(lr), mode="lines", name=f"{label}: learning rate",
                                 legendgroup=kind, showlegend=False,
                                 line=dict(color=COLOURS[kind], width=1.8, dash=DASHES[kind]),
                                 hovertemplate=f"{label}<br>step %{{x}}<br>learning rate %{{y:.3g}}<extra></extra>"),
                      row=2, col=1)
    fig.add_hline(y=uniform, line=dict(color="rgba(128,128,128,0.9)", dash="dash", width=1.2), row=1, col=1,
                  annotation=dict(text=f"uniform guess ln V = {uniform:.2f}", font=dict(size=12), xanchor="right",
                                  x=1, yanchor="bottom"))
    fig.update_yaxes(title="loss (nats per character)", rangemode="tozero", gridcolor=GRID, row=1, col=1)
    fig.update_yaxes(title="learning rate", rangemode="tozero", gridcolor=GRID, exponentformat="power", row=2, col=1)
    fig.update_xaxes(gridcolor=GRID)
    fig.update_xaxes(title="optimizer step", row=2, col=1)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=80)
    fig.update_layout(legend=dict(y=-0.12))
    return fig


def range_test(lrs: Sequence[float], losses: Sequence[float], smooth: Sequence[float], start_loss: float,
               best_lr: float, best_loss: float, cliff_lr: float | None, cliff_loss: float | None,
               title: str = "", height: int = 420) -> go.Figure:
    """Minibatch loss (faint) and its smoothed curve against a learning rate growing exponentially (log x);
    the minimum and the divergence cliff marked."""
    lrs, losses, smooth = (np.asarray(a, dtype=float) for a in (lrs, losses, smooth))
    finite = np.isfinite(losses)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=lrs[finite], y=losses[finite], mode="lines", name="minibatch loss (each step)",
                             line=dict(color="rgba(86,180,233,0.6)", width=1.2),
                             hovertemplate="learning rate %{x:.3g}<br>minibatch loss %{y:.3f}<extra></extra>"))
    ok = np.isfinite(smooth)
    fig.add_trace(go.Scatter(x=lrs[ok], y=smooth[ok], mode="lines", name="smoothed loss",
                             line=dict(color=OKABE_ITO[0], width=2.8),
                             hovertemplate="learning rate %{x:.3g}<br>smoothed loss %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[best_lr], y=[best_loss], mode="markers", name=f"minimum at {best_lr:.3g}",
                             marker=dict(color=OKABE_ITO[2], size=14, symbol="star", line=dict(color="white", width=1)),
                             hovertemplate="lowest smoothed loss<br>learning rate %{x:.3g}<br>loss %{y:.3f}"
                                           "<extra></extra>"))
    if cliff_lr is not None and cliff_loss is not None and np.isfinite(cliff_loss):
        fig.add_trace(go.Scatter(x=[cliff_lr], y=[cliff_loss], mode="markers", name=f"cliff at {cliff_lr:.3g}",
                                 marker=dict(color=OKABE_ITO[5], size=14, symbol="x", line=dict(width=1)),
                                 hovertemplate="back above the first loss<br>learning rate %{x:.3g}<br>"
                                               "loss %{y:.3f}<extra></extra>"))
    fig.add_hline(y=start_loss, line=dict(color="rgba(128,128,128,0.9)", dash="dash", width=1.2),
                  annotation=dict(text=f"first loss {start_loss:.2f}", font=dict(size=12), xanchor="left", x=0,
                                  yanchor="bottom"))
    shown = losses[finite]
    top = float(min(shown.max(), 2.5 * start_loss)) if shown.size else start_loss * 2
    fig.update_xaxes(type="log", title="learning rate (log scale; it grows by the same factor every step)",
                     gridcolor=GRID, exponentformat="power")
    fig.update_yaxes(title="loss (nats per character)", range=[0, top * 1.05], gridcolor=GRID)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=80)
    return fig
