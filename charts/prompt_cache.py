"""Prompt-caching charts: time to first token per reader, from the cached prefix and from scratch."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from charts.style import OKABE_ITO, base_layout

WARM, COLD = OKABE_ITO[0], OKABE_ITO[5]


def first_token_times(readers: Sequence[str], warm_ms: Sequence[float], cold_ms: Sequence[float],
                      prefill_tokens_warm: Sequence[int], prefill_tokens_cold: Sequence[int],
                      title: str = "") -> go.Figure:
    """Grouped horizontal bars: each reader's time to first token, warm (cached prefix) and cold (from scratch)."""
    fig = go.Figure()
    hover = "%{y}<br>%{x:.0f} ms to the first token<br>%{customdata} tokens prefilled<extra>%{fullData.name}</extra>"
    fig.add_trace(go.Bar(y=list(readers), x=list(cold_ms), name="from scratch: prefix + question",
                         orientation="h", marker_color=COLD, customdata=list(prefill_tokens_cold),
                         text=[f"{v:.0f} ms" for v in cold_ms], textposition="auto", hovertemplate=hover))
    fig.add_trace(go.Bar(y=list(readers), x=list(warm_ms), name="cached prefix: copy + question only",
                         orientation="h", marker_color=WARM, customdata=list(prefill_tokens_warm),
                         text=[f"{v:.0f} ms" for v in warm_ms], textposition="auto", hovertemplate=hover))
    fig.update_layout(**base_layout(title=title, height=140 + 70 * len(readers), barmode="group",
                                    legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=90, b=10))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="time to first token (ms)", rangemode="tozero")
    return fig


def prompt_token_split(readers: Sequence[str], prefix_tokens: int, question_tokens: Sequence[int],
                       title: str = "") -> go.Figure:
    """Stacked horizontal bars: each request's prompt tokens, the cached prefix and the question still to run."""
    total = [prefix_tokens + q for q in question_tokens]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=list(readers), x=[prefix_tokens] * len(readers), orientation="h", marker_color=WARM,
                         name="shared prefix: read from the cache",
                         text=[f"{prefix_tokens} tokens, {prefix_tokens / t:.0%} saved" for t in total],
                         textposition="inside", insidetextanchor="start",
                         hovertemplate="%{y}: %{x} prefix tokens reused<extra></extra>"))
    fig.add_trace(go.Bar(y=list(readers), x=list(question_tokens), orientation="h", marker_color=COLD,
                         name="question: prefilled by every request", text=[str(q) for q in question_tokens],
                         textposition="outside", cliponaxis=False,
                         hovertemplate="%{y}: %{x} question tokens to run<extra></extra>"))
    fig.update_layout(**base_layout(title=title, height=130 + 45 * len(readers), barmode="stack",
                                    legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0)))
    fig.update_layout(margin=dict(l=10, r=30, t=90, b=10))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="prompt tokens", rangemode="tozero")
    return fig
