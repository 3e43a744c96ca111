"""Charts of RMSNorm at work: the stream's size before and after each norm, the learned gains, the massive
activations, and one vector normalized two ways. Data in, plotly figure out; layers and channels 1-based."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout, legend_below

BEFORE, AFTER, FINAL = PRIMARY, OKABE_ITO[2], OKABE_ITO[5]
NEUTRAL = "#9AA5B1"   # grey-blue: reads on light and dark backgrounds


def rms_through_layers(before_attn: np.ndarray, after_attn: np.ndarray, before_ffn: np.ndarray,
                       after_ffn: np.ndarray, final_before: float, final_after: float, title: str = "") -> go.Figure:
    """RMS of one token's vector entering and leaving each norm, block by block (log scale: the stream grows
    by orders of magnitude while the norms' outputs stay within a narrow band)."""
    layers = np.arange(1, len(before_attn) + 1)
    final_x = len(before_attn) + 1
    fig = go.Figure()
    for ys, name, colour, dash in ((before_attn, "stream entering the attention norm", BEFORE, "solid"),
                                   (before_ffn, "stream entering the FFN norm", BEFORE, "dot"),
                                   (after_attn, "attention norm's output", AFTER, "solid"),
                                   (after_ffn, "FFN norm's output", AFTER, "dot")):
        fig.add_trace(go.Scatter(x=layers, y=ys, name=name, mode="lines+markers", marker=dict(size=5),
                                 line=dict(color=colour, dash=dash, width=2),
                                 hovertemplate="block %{x}: RMS %{y:.3g}<extra>" + name + "</extra>"))
    fig.add_trace(go.Scatter(x=[final_x, final_x], y=[final_before, final_after], name="final norm: in → out",
                             mode="markers+lines", marker=dict(size=10, symbol=["circle", "diamond"], color=FINAL),
                             line=dict(color=FINAL, dash="dash"),
                             hovertemplate="final norm: RMS %{y:.3g}<extra></extra>"))
    fig.update_xaxes(title="block", tickvals=[1, 5, 10, 15, 20, 25, len(layers), final_x],
                     ticktext=["1", "5", "10", "15", "20", "25", str(len(layers)), "final"])
    fig.update_yaxes(title="RMS of the vector (log scale)", type="log", dtick=1)
    fig.update_layout(**base_layout(title=title, height=420, hovermode="x unified"))
    legend_below(fig)
    return fig


def peak_ratio_map(ratio: np.ndarray, channel: np.ndarray, value: np.ndarray, labels: Sequence[str],
                   title: str = "") -> go.Figure:
    """Blocks x tokens: how far the largest channel of the stream entering each block towers over the median
    channel (log colour). Massive activations are the bright cells."""
    layers, length = ratio.shape
    hover = [[f"block {l + 1}, token {p + 1} {plain(labels[p])}<br>largest channel d{channel[l, p] + 1} = "
              f"{value[l, p]:.4g}<br>{ratio[l, p]:,.0f} × the median |value|" for p in range(length)]
             for l in range(layers)]
    fig = go.Figure(go.Heatmap(
        z=np.round(np.log10(np.maximum(ratio, 1.0)), 3), x=list(range(1, length + 1)),
        y=list(range(1, layers + 1)), text=hover, hovertemplate="%{text}<extra></extra>",
        colorscale="Viridis", zmin=0, colorbar=dict(title="max ÷ median", thickness=12, tickvals=[0, 1, 2, 3, 4],
                                                    ticktext=["1", "10", "100", "1,000", "10,000"])))
    font = dict(family="monospace", size=13 if length <= 16 else 11 if length <= 32 else 9)
    fig.update_xaxes(title="token", tickvals=list(range(1, length + 1)), ticktext=[plain(t) for t in labels],
                     tickangle=-60, tickfont=font, showgrid=False)
    fig.update_yaxes(title="block (stream entering it)", autorange="reversed", showgrid=False, dtick=5, tick0=1)
    fig.update_layout(**base_layout(title=title, height=520))
    return fig


def gain_profile(gain: np.ndarray, highlight: Sequence[int] = (), title: str = "") -> go.Figure:
    """One norm's learned gain per channel, with chosen channels (e.g. a massive activation's) marked."""
    channels = np.arange(1, len(gain) + 1)
    fig = go.Figure(go.Bar(x=channels, y=gain, marker_color=NEUTRAL, name="gain g",
                           hovertemplate="d%{x}: g = %{y:.4f}<extra></extra>"))
    if len(highlight):
        picked = np.asarray(highlight, dtype=int)
        fig.add_trace(go.Scatter(x=picked + 1, y=gain[picked], mode="markers", name="largest channel",
                                 marker=dict(color=ACCENT, size=11, symbol="diamond", line=dict(width=1)),
                                 hovertemplate="d%{x}: g = %{y:.4f}<extra>largest channel</extra>"))
    fig.add_hline(y=1.0, line=dict(color=FINAL, dash="dash", width=1.5),
                  annotation_text="g = 1 (the experiment below)", annotation_position="top left")
    fig.update_xaxes(title="channel")
    fig.update_yaxes(title="gain g", zeroline=True)
    fig.update_layout(**base_layout(title=title, height=330, bargap=0, showlegend=False))
    return fig


def normalized_vector(x: np.ndarray, model_out: np.ndarray, by_hand: np.ndarray, layer_norm: np.ndarray,
                      title: str = "") -> go.Figure:
    """Three panels over the channels: the vector entering the norm; the model's RMSNorm output with the
    by-hand values on it; and LayerNorm (same gain, no bias) minus RMSNorm, which would be 0 if x had mean 0."""
    channels = np.arange(1, len(x) + 1)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.09, row_heights=[0.36, 0.36, 0.28],
                        subplot_titles=("input x (the residual stream)", "RMSNorm output: the model's, and by hand",
                                        "LayerNorm minus RMSNorm on the same x"))
    fig.add_trace(go.Bar(x=channels, y=x, marker_color=BEFORE, marker_line_width=0, name="input x",
                         hovertemplate="d%{x}: x = %{y:.4g}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=channels, y=model_out, marker_color=AFTER, marker_line_width=0,
                         name="RMSNorm, the model's output", hovertemplate="d%{x}: %{y:.5g}<extra>model</extra>"),
                  row=2, col=1)
    fig.add_trace(go.Scatter(x=channels, y=by_hand, mode="markers", name="RMSNorm by hand",
                             marker=dict(color=ACCENT, size=4), hovertemplate="d%{x}: %{y:.5g}<extra>by hand</extra>"),
                  row=2, col=1)
    fig.add_trace(go.Bar(x=channels, y=layer_norm - by_hand, marker_color=FINAL, marker_line_width=0,
                         name="LayerNorm − RMSNorm", hovertemplate="d%{x}: %{y:+.4g}<extra>LayerNorm − RMSNorm</extra>"),
                  row=3, col=1)
    fig.update_xaxes(title="channel", row=3, col=1)
    fig.update_layout(**base_layout(title=title, height=640, bargap=0, hovermode="x unified"))
    legend_below(fig, 90)
    fig.update_layout(legend=dict(y=-0.1))
    fig.update_annotations(font_size=13)
    return fig
