"""Token-cost charts: money per tokenizer (input and output stacked), tokens per sample text, chunk sizes."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, PRIMARY, SEQUENTIAL, base_layout


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, xanchor="left", font=dict(size=14))


def cost_bars(names: Sequence[str], input_usd: Sequence[float], output_usd: Sequence[float],
              labels: Sequence[str], title: str = "") -> go.Figure:
    """Dollars per tokenizer for the same work, input and output stacked; `labels` are the totals as text."""
    names = [plain(n) for n in names]
    fig = go.Figure([
        go.Bar(x=list(input_usd), y=names, orientation="h", name="input tokens", marker_color=PRIMARY,
               hovertemplate="%{y}<br>input: $%{x:,.6f}<extra></extra>"),
        go.Bar(x=list(output_usd), y=names, orientation="h", name="output tokens", marker_color=ACCENT,
               text=[plain(t) for t in labels], textposition="outside", cliponaxis=False,
               hovertemplate="%{y}<br>output: $%{x:,.6f}<extra></extra>"),
    ])
    totals = [a + b for a, b in zip(input_usd, output_usd)]
    fig.update_layout(**base_layout(title=_title(title), barmode="stack", height=max(260, 46 * len(names) + 110),
                                    margin=dict(l=10, r=20, t=80, b=40),
                                    legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, xanchor="left",
                                                traceorder="normal")))
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=13))
    fig.update_xaxes(title="US dollars", rangemode="tozero", range=[0, max(totals, default=0) * 1.3 or 1])
    return fig


def density_heatmap(values: np.ndarray, samples: Sequence[str], tokenizers: Sequence[str], value_format: str,
                    colour_title: str, title: str = "") -> go.Figure:
    """Samples (rows) by tokenizers (columns), each cell a token measure printed in it."""
    values = np.asarray(values, dtype=float)
    fig = go.Figure(go.Heatmap(
        z=values, x=[plain(t) for t in tokenizers], y=[plain(s) for s in samples], colorscale=SEQUENTIAL,
        texttemplate="%{z:" + value_format + "}", textfont=dict(size=13),
        colorbar=dict(title=dict(text=plain(colour_title), side="right"), thickness=12),
        hovertemplate="%{y}<br>%{x}<br>" + plain(colour_title) + ": %{z:" + value_format + "}<extra></extra>"))
    fig.update_layout(**base_layout(title=_title(title) | dict(y=0.98, yanchor="top"),
                                    height=max(300, 44 * len(samples) + 150), margin=dict(l=10, r=10, t=100, b=10)))
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=13))
    fig.update_xaxes(side="top", tickfont=dict(size=12))
    return fig


def chunk_bars(sizes: Sequence[int], size: int, overlap: int, title: str = "") -> go.Figure:
    """Tokens in each chunk; the chunk size drawn as a line (the last chunk is usually shorter)."""
    numbers = list(range(1, len(sizes) + 1))
    fig = go.Figure(go.Bar(x=numbers, y=list(sizes), marker_color=PRIMARY, name="tokens in the chunk",
                           hovertemplate="chunk %{x}: %{y} tokens<extra></extra>"))
    fig.add_hline(y=size, line=dict(color=ACCENT, dash="dash"),
                  annotation_text=f"chunk size {size}" + (f", overlap {overlap}" if overlap else ""),
                  annotation_position="top left")
    fig.update_layout(**base_layout(title=_title(title), height=300, showlegend=False,
                                    margin=dict(l=10, r=10, t=50, b=40), bargap=0.15))
    fig.update_xaxes(title="chunk", dtick=1 if len(sizes) <= 30 else None)
    fig.update_yaxes(title="tokens", rangemode="tozero", range=[0, size * 1.25])
    return fig
