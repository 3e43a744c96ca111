"""Charts of the residual stream: its growth, the logit lens grid, one token through the layers, direct logit
attribution, and early exit. Data in, plotly figure out; layers are 1-based (0 = the embedding alone)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import ACCENT, DIVERGING, OKABE_ITO, PRIMARY, SEQUENTIAL, base_layout, legend_below

ATTENTION, FFN, STREAM, EMBEDDING = OKABE_ITO[0], OKABE_ITO[1], OKABE_ITO[2], OKABE_ITO[3]


def stream_growth(embedding_rms: float, stream_rms: np.ndarray, attention_rms: np.ndarray, ffn_rms: np.ndarray,
                  title: str = "") -> go.Figure:
    """The stream's RMS after each block (line) and the RMS of what each block's attention and FFN added (bars)."""
    layers = np.arange(1, len(stream_rms) + 1)
    fig = go.Figure([
        go.Bar(x=layers, y=attention_rms, name="attention's write", marker_color=ATTENTION,
               hovertemplate="block %{x}: attention added RMS %{y:.3g}<extra></extra>"),
        go.Bar(x=layers, y=ffn_rms, name="FFN's write", marker_color=FFN,
               hovertemplate="block %{x}: FFN added RMS %{y:.3g}<extra></extra>"),
        go.Scatter(x=np.concatenate([[0], layers]), y=np.concatenate([[embedding_rms], stream_rms]),
                   name="the stream after the block", mode="lines+markers", line=dict(color=STREAM, width=3),
                   hovertemplate="after block %{x}: RMS %{y:.3g}<extra>stream</extra>")])
    fig.update_xaxes(title="block (0 = the token's embedding)", dtick=5, tick0=0)
    fig.update_yaxes(title="RMS of the vector", rangemode="tozero")
    fig.update_layout(**base_layout(title=title, height=380, barmode="group", hovermode="x unified"))
    legend_below(fig)
    return fig


def lens_grid(top_tokens: Sequence[Sequence[str]], top_probs: np.ndarray, labels: Sequence[str],
              final_match: np.ndarray, show_text: bool, title: str = "") -> go.Figure:
    """Blocks (rows, 1 at the top) x positions (columns): the lens's top guess for the next token after each
    block, coloured by its probability. A dot marks guesses that equal the model's final prediction there."""
    layers, length = top_probs.shape
    hover = [[f"after block {l + 1}, at token {p + 1} {plain(labels[p])}<br>top guess: {plain(top_tokens[l][p])} "
              f"({100 * top_probs[l, p]:.1f}%)" + ("<br>= the model's final prediction" if final_match[l, p] else "")
              for p in range(length)] for l in range(layers)]
    heat = go.Heatmap(z=np.round(top_probs, 4), x=list(range(1, length + 1)), y=list(range(1, layers + 1)),
                      colorscale=SEQUENTIAL, zmin=0, zmax=1, customdata=hover, hovertemplate="%{customdata}<extra></extra>",
                      colorbar=dict(title="top guess's<br>probability", thickness=12))
    if show_text:
        heat.update(text=[[plain(t)[:8] for t in row] for row in top_tokens], texttemplate="%{text}",
                    textfont=dict(size=9, family="monospace"))
    fig = go.Figure(heat)
    rows, cols = np.nonzero(final_match)
    fig.add_trace(go.Scatter(x=cols + 1.38, y=rows + 1, mode="markers", hoverinfo="skip", showlegend=False,
                             marker=dict(symbol="circle", size=5, color=ACCENT, line=dict(width=0.5, color="black"))))
    font = dict(family="monospace", size=12 if length <= 16 else 10)
    fig.update_xaxes(title="position: the lens predicts the token after this one", tickvals=list(range(1, length + 1)),
                     ticktext=[plain(t) for t in labels], tickangle=-60, tickfont=font, showgrid=False)
    fig.update_yaxes(title="after block", range=[layers + 0.5, 0.5], showgrid=False, dtick=1 if layers <= 12 else 3,
                     tick0=1)
    fig.update_layout(**base_layout(title=title, height=max(560, 22 * layers + 200)))
    return fig


def token_trajectory(probability: np.ndarray, rank: np.ndarray, token: str, title: str = "") -> go.Figure:
    """One token's probability (left axis) and rank (right axis, log, 1 at the top) after every block."""
    layers = np.arange(1, len(probability) + 1)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=layers, y=100 * probability, name=f"probability of {plain(token)}", mode="lines+markers",
                             line=dict(color=PRIMARY, width=3), hovertemplate="after block %{x}: %{y:.2f}%<extra></extra>"),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=layers, y=rank, name="its rank among 49,152 tokens", mode="lines+markers",
                             line=dict(color=ACCENT, width=2, dash="dot"),
                             hovertemplate="after block %{x}: rank %{y:,}<extra></extra>"), secondary_y=True)
    fig.update_xaxes(title="after block", dtick=5, tick0=0)
    fig.update_yaxes(title="probability (%)", range=[0, 100], secondary_y=False)
    fig.update_yaxes(title="rank (log, 1 = top)", type="log", dtick=1, autorange="reversed", secondary_y=True,
                     showgrid=False)
    fig.update_layout(**base_layout(title=title, height=380, hovermode="x unified"))
    legend_below(fig)
    return fig


def attribution_bars(attention: np.ndarray, ffn: np.ndarray, embedding: float, title: str = "") -> go.Figure:
    """Each block's attention and FFN contribution to one logit (or logit difference); block 0 is the embedding."""
    layers = np.arange(1, len(attention) + 1)
    fig = go.Figure([
        go.Bar(x=[0], y=[embedding], name="embedding", marker_color=EMBEDDING,
               hovertemplate="embedding: %{y:+.3f}<extra></extra>"),
        go.Bar(x=layers, y=attention, name="attention", marker_color=ATTENTION,
               hovertemplate="block %{x} attention: %{y:+.3f}<extra></extra>"),
        go.Bar(x=layers, y=ffn, name="FFN", marker_color=FFN, hovertemplate="block %{x} FFN: %{y:+.3f}<extra></extra>")])
    fig.add_hline(y=0, line=dict(color="rgba(128,128,128,0.7)", width=1))
    fig.update_xaxes(title="block (0 = embedding)", dtick=5, tick0=0)
    fig.update_yaxes(title="contribution to the logit")
    fig.update_layout(**base_layout(title=title, height=380, barmode="group", hovermode="x unified"))
    legend_below(fig)
    return fig


def head_attribution(heads: np.ndarray, group: int, title: str = "") -> go.Figure:
    """[layers, heads] each attention head's contribution: blocks left to right, heads top to bottom.
    `group` query heads share one key/value head (grouped-query attention); the hover names it."""
    layers, count = heads.shape
    top = float(np.abs(heads).max()) or 1.0
    fig = go.Figure(go.Heatmap(
        z=np.round(heads.T, 4), x=list(range(1, layers + 1)), y=list(range(1, count + 1)), colorscale=DIVERGING,
        zmin=-top, zmax=top, colorbar=dict(title="contribution", thickness=12),
        customdata=[[h // group + 1 for _ in range(layers)] for h in range(count)],
        hovertemplate="block %{x}, head %{y} (reads KV head %{customdata}): %{z:+.3f}<extra></extra>"))
    fig.update_xaxes(title="block", dtick=5, tick0=0, showgrid=False)
    fig.update_yaxes(title="query head", dtick=1, autorange="reversed", showgrid=False)
    fig.update_layout(**base_layout(title=title, height=320))
    return fig


def exit_curve(exit_layers: Sequence[int], perplexities: Sequence[float], chosen: int | None, title: str = "") -> go.Figure:
    """Perplexity of the text when the model stops after L blocks (log scale), the chosen L marked."""
    fig = go.Figure(go.Scatter(x=list(exit_layers), y=list(perplexities), mode="lines+markers",
                               line=dict(color=PRIMARY, width=2.5), name="perplexity",
                               hovertemplate="exit after %{x} blocks: perplexity %{y:.4g}<extra></extra>"))
    if chosen is not None and chosen in exit_layers:
        y = perplexities[list(exit_layers).index(chosen)]
        fig.add_trace(go.Scatter(x=[chosen], y=[y], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker=dict(color=ACCENT, size=14, symbol="diamond", line=dict(width=1))))
    fig.update_xaxes(title="blocks run before the final norm and LM head (0 = the embedding alone)", dtick=5, tick0=0)
    top = max(perplexities, default=1.0)
    fig.update_yaxes(title="perplexity (log scale)", type="log", exponentformat="power",
                     dtick=1 if top < 1e6 else 3 if top < 1e30 else 6)
    fig.update_layout(**base_layout(title=title, height=380, showlegend=False))
    return fig
