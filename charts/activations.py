"""Charts of activation functions and of the gate values a real model feeds them. Data in, plotly figure out."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import DIVERGING, OKABE_ITO, base_layout

# One colour per function, the same on every chart of the page.
COLOURS = {"ReLU": OKABE_ITO[5], "GELU": OKABE_ITO[2], "SiLU": OKABE_ITO[0], "Sigmoid": OKABE_ITO[3],
           "Tanh": OKABE_ITO[1]}
BARS = "#9AA5B1"          # neutral grey-blue: reads on light and dark
TAILS = OKABE_ITO[1]
ZERO = "rgba(128,128,128,0.6)"


def _nice_step(rough: float) -> float:
    """The 1, 2 or 5 times a power of ten nearest above `rough`: contour levels people can read."""
    power = 10 ** np.floor(np.log10(rough))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= rough))


def _legend_below(height: int, top: int = 50, bottom: int = 100) -> dict:
    """A base layout whose horizontal legend sits under the x-axis title: a long legend wraps there without
    running into the chart's title on a narrow window."""
    plot = max(100, height - top - bottom)
    return base_layout(height=height, margin=dict(l=10, r=10, t=top, b=bottom),
                       legend=dict(orientation="h", yanchor="top", y=-58 / plot, x=0))


def curves(xs: np.ndarray, values: Mapping[str, np.ndarray], slopes: Mapping[str, np.ndarray] | None = None,
           title: str = "") -> go.Figure:
    """Each function's curve; with `slopes`, a second panel below with its derivative."""
    rows = 2 if slopes else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("f(x)", "slope f′(x)") if slopes else None)
    for name, ys in values.items():
        fig.add_trace(go.Scatter(x=xs, y=ys, name=name, legendgroup=name, mode="lines",
                                 line=dict(color=COLOURS.get(name), width=3),
                                 hovertemplate=f"{name}(%{{x:.2f}}) = %{{y:.4f}}<extra></extra>"), row=1, col=1)
    for name, ys in (slopes or {}).items():
        fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{name}′", legendgroup=name, showlegend=False, mode="lines",
                                 line=dict(color=COLOURS.get(name), width=2.5, dash="dot"),
                                 hovertemplate=f"{name}′(%{{x:.2f}}) = %{{y:.4f}}<extra></extra>"), row=2, col=1)
    fig.update_layout(**base_layout(title=title, height=520 if slopes else 380, hovermode="x unified",
                                    legend=dict(orientation="h", yanchor="bottom", y=1.04, x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    for r in range(1, rows + 1):
        fig.update_yaxes(zeroline=True, zerolinecolor=ZERO, row=r, col=1)
        fig.update_xaxes(zeroline=True, zerolinecolor=ZERO, row=r, col=1)
    fig.update_xaxes(title="x (the input the function receives)", row=rows, col=1)
    return fig


def swiglu_surface(gate: np.ndarray, up: np.ndarray, values: np.ndarray, title: str = "") -> go.Figure:
    """SiLU(gate) x up over a grid: a function of two inputs, signed (blue negative, red positive)."""
    limit = float(np.abs(values).max()) or 1.0
    fig = go.Figure(go.Heatmap(x=gate, y=up, z=values, colorscale=DIVERGING, zmin=-limit, zmax=limit,
                               colorbar=dict(title="output", thickness=12),
                               hovertemplate="gate %{x:.2f}, up %{y:.2f}<br>SiLU(gate) × up = %{z:.3f}"
                                             "<extra></extra>"))
    step = _nice_step(limit / 4)
    fig.add_trace(go.Contour(x=gate, y=up, z=values, showscale=False, contours=dict(coloring="none",
                             showlabels=True, start=-4 * step, end=4 * step, size=step),
                             line=dict(color="rgba(60,60,60,0.55)", width=1), hoverinfo="skip"))
    fig.update_layout(**base_layout(title=title, height=380))
    fig.update_xaxes(title="gate (goes through SiLU)")
    fig.update_yaxes(title="up (linear)", scaleanchor=None)
    return fig


def gate_histogram(edges: np.ndarray, counts: np.ndarray, below: int, above: int, minimum: float,
                   maximum: float, overlay: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                   title: str = "") -> go.Figure:
    """Bars of gate values per bin, the two tails as labelled end bars; above them, on the same x, the functions
    (a panel of their own, so neither pair of axes has to pretend to share a zero)."""
    width = float(edges[1] - edges[0])
    centres = (edges[:-1] + edges[1:]) / 2
    rows = 2 if overlay else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[0.38, 0.62] if overlay else None)
    bars = rows
    fig.add_trace(go.Bar(x=centres, y=counts, width=width, name="gate values", marker_color=BARS,
                         marker_line_width=0, customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                         hovertemplate="%{customdata[0]:.1f} to %{customdata[1]:.1f}: %{y:,} values<extra></extra>"),
                  row=bars, col=1)
    tails_x = [edges[0] - 2 * width, edges[-1] + 2 * width]
    fig.add_trace(go.Bar(x=tails_x, y=[below, above], width=2 * width, name="tails (gathered)", marker_color=TAILS,
                         customdata=[f"below {edges[0]:.1f} (lowest {minimum:.2f})",
                                     f"above {edges[-1]:.1f} (highest {maximum:.2f})"],
                         hovertemplate="%{customdata}: %{y:,} values<extra></extra>"), row=bars, col=1)
    for name, (xs, ys) in (overlay or {}).items():
        fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{plain(name)}(x)", mode="lines",
                                 line=dict(color=COLOURS.get(name), width=2.5),
                                 hovertemplate=f"{plain(name)}(%{{x:.2f}}) = %{{y:.3f}}<extra></extra>"), row=1, col=1)
    for r in range(1, rows + 1):
        fig.add_vline(x=0, line=dict(color=ZERO, dash="dot"), row=r, col=1)
    height = 560 if overlay else 400
    fig.update_layout(**_legend_below(height), title=title, bargap=0)
    fig.update_xaxes(title="gate pre-activation (the x that SiLU receives)", row=bars, col=1)
    fig.update_yaxes(title="number of values", rangemode="tozero", row=bars, col=1)
    if overlay:
        fig.update_yaxes(title="f(x)", zeroline=True, zerolinecolor=ZERO, row=1, col=1)
    return fig


def layer_shares(layers: Sequence[int], negative: Sequence[float], near_zero: Sequence[float], chosen: int,
                 near_zero_name: str, title: str = "") -> go.Figure:
    """Per layer (1-based): the share of gate values below zero, and the share SiLU maps close to zero."""
    fig = go.Figure()
    for name, ys, colour in (("below zero (ReLU would output exactly 0)", negative, COLOURS["ReLU"]),
                             (near_zero_name, near_zero, COLOURS["SiLU"])):
        fig.add_trace(go.Scatter(x=list(layers), y=[100 * v for v in ys], name=name, mode="lines+markers",
                                 line=dict(color=colour, width=2.5), marker=dict(size=6),
                                 hovertemplate="layer %{x}: %{y:.1f}%<extra></extra>"))
    fig.add_vline(x=chosen, line=dict(color="gray", dash="dot"), annotation_text=f"layer {chosen}",
                  annotation_position="bottom right")
    fig.update_layout(**_legend_below(380), title=title)
    fig.update_xaxes(title="layer", dtick=2)
    fig.update_yaxes(title="share of the layer's gate values (%)", range=[0, 100])
    return fig


def token_losses(labels: Sequence[str], losses: Mapping[str, np.ndarray], title: str = "") -> go.Figure:
    """Per predicted token, the loss (nats) with each activation: where the swap hurts."""
    from charts.sampling import _unique

    rows = _unique(labels)
    fig = go.Figure()
    for name, ys in losses.items():
        fig.add_trace(go.Scatter(x=rows, y=ys, name=name, mode="lines+markers", line=dict(color=COLOURS.get(name),
                                 width=2.5 if name == "SiLU" else 1.8), marker=dict(size=5),
                                 hovertemplate="predicting %{x}<br>%{y:.2f} nats<extra>" + plain(name) + "</extra>"))
    fig.update_layout(**base_layout(title=title, height=360, hovermode="x unified",
                                    legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    fig.update_xaxes(tickangle=-60, tickfont=dict(family="monospace"), title="token being predicted")
    fig.update_yaxes(title="loss −log p (nats)", rangemode="tozero")
    return fig
