"""Charts of a constrained tool call: each tool's probability, and the token mask at every decoding step."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout


def tool_bars(names: Sequence[str], probabilities: Sequence[float], title: str = "") -> go.Figure:
    """P(tool) among the registered tools, once the call has begun."""
    p = 100 * np.asarray(probabilities, dtype=float)
    best = int(np.argmax(p))
    fig = go.Figure(go.Bar(x=p, y=[plain(n) for n in names], orientation="h",
                           marker_color=[OKABE_ITO[5] if i == best else OKABE_ITO[0] for i in range(len(p))],
                           text=[f"{v:.1f}%" for v in p], textposition="auto",
                           hovertemplate="%{y}: %{x:.2f}%<extra></extra>"))
    fig.update_layout(**base_layout(title=title, height=60 + 55 * len(names), bargap=0.3))
    fig.update_xaxes(title="probability among the tools (%)", range=[0, 100], fixedrange=True)
    fig.update_yaxes(autorange="reversed", fixedrange=True, tickfont=dict(size=14))
    return fig


def mask_steps(pieces: Sequence[str], allowed: Sequence[int], vocab_size: int, masked_prob: Sequence[float],
               free_pieces: Sequence[str], free_prob: Sequence[float], title: str = "") -> go.Figure:
    """Allowed tokens at each step (log scale, out of the whole vocabulary); the token chosen under each bar."""
    steps = np.arange(1, len(pieces) + 1)
    labels = [f"{i}: {plain(repr(p)[1:-1])}" for i, p in zip(steps, pieces)]
    fig = go.Figure(go.Bar(
        x=labels, y=list(allowed), marker_color=OKABE_ITO[0], text=[f"{a:,}" for a in allowed],
        textposition="outside", cliponaxis=False,
        customdata=np.array([[f"{100 * m:.1f}", plain(repr(f)[1:-1]), f"{100 * q:.1f}"]
                             for m, f, q in zip(masked_prob, free_pieces, free_prob)], dtype=object),
        hovertemplate="step %{x}<br>%{y:,} of " + f"{vocab_size:,}" + " tokens allowed<br>chosen with "
                      "%{customdata[0]}% of the allowed mass<br>unmasked favourite: '%{customdata[1]}' "
                      "(%{customdata[2]}%)<extra></extra>"))
    fig.add_hline(y=vocab_size, line=dict(color="#888888", dash="dash"))
    fig.update_layout(**base_layout(title=title, height=400, bargap=0.2))
    fig.update_yaxes(type="log", title=f"tokens allowed (of {vocab_size:,}), log scale", fixedrange=True,
                     range=[-0.2, np.log10(vocab_size) + 0.6])
    fig.update_xaxes(title="step: the token chosen", tickangle=-45, fixedrange=True, tickfont=dict(size=12))
    return fig
