"""Charts of training: loss curves, per-token loss before and after a step, gradient norms per layer, loss-surface
slices and the tokens-per-parameter map. Pure figure builders: numbers in, plotly figures out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout, legend_below

GRID = "rgba(128,128,128,0.25)"
MINIBATCH = "rgba(86,180,233,0.55)"   # Okabe-Ito sky blue, translucent: the noisy per-step line sits behind
TRAIN, VAL = OKABE_ITO[0], OKABE_ITO[5]


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, font=dict(size=14))


def training_curves(steps: Sequence[int], minibatch: Sequence[float], eval_steps: Sequence[int],
                    eval_train: Sequence[float], eval_val: Sequence[float], uniform: float, title: str = "",
                    grad_norms: Sequence[float] | None = None, clip: float = 0.0, height: int = 380) -> go.Figure:
    """Minibatch loss at every step (thin), train and validation loss on fixed windows (markers), the uniform
    guess ln V as a dashed line; with `grad_norms`, a second panel with the gradient norm at every step."""
    rows = 2 if grad_norms is not None else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        row_heights=[0.62, 0.38] if rows == 2 else [1.0])
    fig.add_trace(go.Scatter(x=list(steps), y=list(minibatch), mode="lines", name="minibatch loss (each step)",
                             line=dict(color=MINIBATCH, width=1.2),
                             hovertemplate="step %{x}<br>minibatch loss %{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=list(eval_steps), y=list(eval_train), mode="lines+markers", name="train loss",
                             line=dict(color=TRAIN, width=2.2), marker=dict(size=6),
                             hovertemplate="step %{x}<br>train loss %{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=list(eval_steps), y=list(eval_val), mode="lines+markers", name="validation loss",
                             line=dict(color=VAL, width=2.2, dash="dot"), marker=dict(size=6, symbol="diamond"),
                             hovertemplate="step %{x}<br>validation loss %{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_hline(y=uniform, line=dict(color=OKABE_ITO[2], dash="dash", width=1.4), row=1, col=1,
                  annotation=dict(text=f"uniform guess ln V = {uniform:.2f}", font=dict(size=12), xanchor="right",
                                  x=1, yanchor="bottom"))
    fig.update_yaxes(title="loss (nats per character)", rangemode="tozero", gridcolor=GRID, row=1, col=1)
    if rows == 2:
        fig.add_trace(go.Scatter(x=list(steps), y=list(grad_norms), mode="lines", name="gradient norm",
                                 line=dict(color=OKABE_ITO[3], width=1.4),
                                 hovertemplate="step %{x}<br>gradient norm %{y:.3f}<extra></extra>"), row=2, col=1)
        if clip > 0:
            fig.add_hline(y=clip, line=dict(color=OKABE_ITO[3], dash="dash", width=1), row=2, col=1,
                          annotation=dict(text=f"clipped above {clip:g}", font=dict(size=11), xanchor="right", x=1,
                                          yanchor="bottom"))
        fig.update_yaxes(title="‖gradient‖", rangemode="tozero", gridcolor=GRID, row=2, col=1)
    fig.update_xaxes(gridcolor=GRID)
    fig.update_xaxes(title="optimizer step", row=rows, col=1)
    fig.update_layout(**base_layout(title=_title(title), height=height + (220 if rows == 2 else 0)))
    legend_below(fig, bottom=80)
    return fig


def token_loss_change(labels: Sequence[str], before: Sequence[float], after: Sequence[float],
                      title: str = "") -> go.Figure:
    """Each predicted token's loss before and after the step(s), side by side."""
    x = list(range(len(labels)))
    hover = [[plain(l)] for l in labels]
    fig = go.Figure([
        go.Bar(x=x, y=list(before), name="before", marker_color=OKABE_ITO[4], customdata=hover,
               hovertemplate="%{customdata[0]}<br>before: %{y:.3f} nats<extra></extra>"),
        go.Bar(x=x, y=list(after), name="after", marker_color=OKABE_ITO[5], customdata=hover,
               hovertemplate="%{customdata[0]}<br>after: %{y:.3f} nats<extra></extra>")])
    ticks = x if len(x) <= 40 else x[::max(1, len(x) // 40)]
    fig.update_layout(**base_layout(title=_title(title), height=380, barmode="group", bargap=0.2,
                                    bargroupgap=0.05))
    legend_below(fig, bottom=110)
    fig.update_layout(legend=dict(y=-0.42))
    fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=[plain(labels[i]) for i in ticks], tickangle=-60,
                     tickfont=dict(family="ui-monospace, Menlo, Consolas, monospace", size=11))
    fig.update_yaxes(title="loss of the actual next token (nats)", rangemode="tozero", gridcolor=GRID)
    return fig


def layer_gradients(attention: Sequence[float], ffn: Sequence[float], title: str = "") -> go.Figure:
    """Gradient norm of each block's attention and FFN weights, block 1 (nearest the input) to the last."""
    blocks = list(range(1, len(attention) + 1))
    fig = go.Figure([
        go.Bar(x=blocks, y=list(attention), name="attention (q, k, v, o)", marker_color=PRIMARY,
               hovertemplate="block %{x}<br>attention ‖grad‖ %{y:.3f}<extra></extra>"),
        go.Bar(x=blocks, y=list(ffn), name="FFN (gate, up, down)", marker_color=ACCENT,
               hovertemplate="block %{x}<br>FFN ‖grad‖ %{y:.3f}<extra></extra>")])
    fig.update_layout(**base_layout(title=_title(title), height=360, barmode="group", bargap=0.15))
    legend_below(fig, bottom=70)
    fig.update_xaxes(title="block (1 reads the embeddings)", dtick=1 if len(blocks) <= 32 else None, gridcolor=GRID)
    fig.update_yaxes(title="gradient norm", rangemode="tozero", gridcolor=GRID)
    return fig


def loss_line(alphas: Sequence[float], losses: Sequence[float], start: float, grad_norm: float,
              step_lr: float | None, step_loss: float | None, title: str = "") -> go.Figure:
    """The loss along the gradient line theta - alpha * g, the straight line the gradient predicts, and the
    step taken."""
    a = np.asarray(alphas, dtype=float)
    fig = go.Figure(go.Scatter(x=a, y=list(losses), mode="lines", name="measured loss",
                               line=dict(color=PRIMARY, width=2.4),
                               hovertemplate="α = %{x:.3g}<br>loss %{y:.3f}<extra></extra>"))
    tangent = start - a * grad_norm ** 2
    keep = tangent >= 0
    fig.add_trace(go.Scatter(x=a[keep], y=tangent[keep], mode="lines", name="first-order prediction L − α‖g‖²",
                             line=dict(color=OKABE_ITO[2], dash="dash", width=1.6), hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[0], y=[start], mode="markers", name="the real weights (α = 0)",
                             marker=dict(color=OKABE_ITO[3], size=12, symbol="circle-open", line=dict(width=2.5)),
                             hovertemplate="the real weights<br>loss %{y:.3f}<extra></extra>"))
    if step_lr is not None and step_loss is not None:
        fig.add_trace(go.Scatter(x=[step_lr], y=[step_loss], mode="markers", name=f"your step (lr = {step_lr:g})",
                                 marker=dict(color=ACCENT, size=13, symbol="star", line=dict(color="white", width=1)),
                                 hovertemplate="after your step<br>loss %{y:.3f}<extra></extra>"))
    finite = np.asarray(losses, dtype=float)
    finite = finite[np.isfinite(finite)]
    top = float(min(finite.max(), 3 * start + 1)) if finite.size else start * 2
    fig.update_layout(**base_layout(title=_title(title), height=380))
    legend_below(fig, bottom=90)
    fig.update_xaxes(title="α: distance moved along −gradient, in learning-rate units", zeroline=True,
                     zerolinecolor="rgba(128,128,128,0.6)", gridcolor=GRID)
    fig.update_yaxes(title="loss on the sentence (nats)", range=[0, top * 1.05], gridcolor=GRID)
    return fig


def loss_surface(alphas: Sequence[float], betas: Sequence[float], grid: np.ndarray, step_lr: float | None,
                 title: str = "") -> go.Figure:
    """Loss over a plane of weights: along −gradient (x) and a random direction of the same length (y)."""
    z = np.asarray(grid, dtype=float)
    cap = float(np.nanpercentile(z, 90)) if np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Contour(x=list(alphas), y=list(betas), z=np.minimum(z, cap), colorscale="Viridis",
                               contours=dict(coloring="heatmap", showlabels=True,
                                             labelfont=dict(size=10, color="white")),
                               colorbar=dict(title=dict(text="loss", side="right"), thickness=12),
                               customdata=z, hovertemplate="α = %{x:.3g}, β = %{y:.3g}<br>loss %{customdata:.3f}"
                                                           "<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", name="the real weights",
                             marker=dict(color="white", size=11, line=dict(color="black", width=2)),
                             hoverinfo="skip"))
    if step_lr is not None and min(alphas) <= step_lr <= max(alphas):
        fig.add_trace(go.Scatter(x=[step_lr], y=[0], mode="markers", name="your step",
                                 marker=dict(color=ACCENT, size=13, symbol="star", line=dict(color="black", width=1)),
                                 hoverinfo="skip"))
    fig.update_layout(**base_layout(title=_title(title), height=420))
    legend_below(fig, bottom=80)
    fig.update_xaxes(title="α along −gradient (learning-rate units)")
    fig.update_yaxes(title="β along a random direction")
    return fig


def tokens_per_parameter(names: Sequence[str], parameters: Sequence[float], tokens: Sequence[float],
                         highlight: Sequence[bool], title: str = "") -> go.Figure:
    """Models placed by size and training tokens on log axes; diagonals are constant tokens per parameter."""
    p, t = np.asarray(parameters, float), np.asarray(tokens, float)
    lo, hi = p.min() / 10, p.max() * 10          # the x range; diagonals are drawn across it
    y_lo, y_hi = t.min() / 10, t.max() * 10
    fig = go.Figure()
    for ratio, label, dash in ((1, "1 token per parameter", "dot"), (20, "20 per parameter (Chinchilla)", "dash"),
                               (1000, "1,000 per parameter", "dot")):
        xs = np.array([lo, hi])
        fig.add_trace(go.Scatter(x=xs, y=xs * ratio, mode="lines", name=label, hoverinfo="skip",
                                 line=dict(color=OKABE_ITO[2] if ratio == 20 else "rgba(128,128,128,0.7)",
                                           dash=dash, width=1.4)))
    colours = [ACCENT if h else PRIMARY for h in highlight]
    fig.add_trace(go.Scatter(x=p, y=t, mode="markers+text", text=[plain(n) for n in names],
                             textposition=["bottom center" if i % 2 == 0 else "top center" for i in range(len(p))],
                             cliponaxis=False, showlegend=False,
                             marker=dict(color=colours, size=13, line=dict(color="white", width=1)),
                             customdata=np.stack([t / p], axis=-1),
                             hovertemplate="%{text}<br>%{x:.3s} parameters<br>%{y:.3s} tokens<br>"
                                           "%{customdata[0]:,.1f} tokens per parameter<extra></extra>"))
    fig.update_layout(**base_layout(title=_title(title), height=440))
    legend_below(fig, bottom=80)
    fig.update_xaxes(type="log", title="parameters (log scale)", range=[np.log10(lo), np.log10(hi)], gridcolor=GRID)
    fig.update_yaxes(type="log", title="training tokens (log scale)", range=[np.log10(y_lo), np.log10(y_hi)],
                     gridcolor=GRID)
    return fig
