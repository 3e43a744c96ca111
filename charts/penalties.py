"""Repetition-penalty chart: already-seen tokens' logits before and after each penalty."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout

MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"


def penalty_bars(labels: Sequence[str], counts: Sequence[int], before: Sequence[float],
                 after: Mapping[str, Sequence[float]], title: str = "") -> go.Figure:
    """Grouped bars per seen token: its logit with no penalty and under each penalty."""
    ticks = [f"{plain(l)}<br>×{c}" for l, c in zip(labels, counts)]
    fig = go.Figure(go.Bar(x=ticks, y=list(before), name="no penalty", marker_color="#999999",
                           hovertemplate="%{x}<br>logit %{y:.2f}<extra>no penalty</extra>"))
    for i, (name, values) in enumerate(after.items()):
        fig.add_trace(go.Bar(x=ticks, y=list(values), name=plain(name), marker_color=OKABE_ITO[i],
                             hovertemplate="%{x}<br>logit %{y:.2f}<extra>" + plain(name) + "</extra>"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=400,
                                    barmode="group", bargap=0.2,
                                    legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                                    margin=dict(l=10, r=10, t=75, b=10)))
    fig.update_xaxes(tickfont=dict(family=MONO, size=11), title="already-seen token (× times seen)")
    fig.update_yaxes(title="logit", zeroline=True, zerolinecolor="rgba(128,128,128,0.6)",
                     gridcolor="rgba(128,128,128,0.25)")
    return fig
