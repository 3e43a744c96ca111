"""Charts of supervised fine-tuning: the loss at every token of a chat, trained positions against masked ones."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout

GRID = "rgba(128,128,128,0.25)"
MASKED = "rgba(136,136,136,0.45)"   # grey that reads on light and dark backgrounds


def token_losses(labels: Sequence[str], losses: Sequence[float], trained: Sequence[bool],
                 after: Sequence[float] | None = None, title: str = "", height: int = 360) -> go.Figure:
    """One bar per predicted token: coloured where its label counts in the loss, grey where it is -100; with
    `after`, markers for the loss after the SFT steps."""
    x = list(range(1, len(labels) + 1))
    names = [plain(t) for t in labels]
    colours = [OKABE_ITO[0] if t else MASKED for t in trained]
    fig = go.Figure(go.Bar(x=x, y=list(losses), marker_color=colours, customdata=names,
                           name="loss before (blue: in the loss, grey: label -100)",
                           hovertemplate="token %{x}: %{customdata}<br>loss %{y:.3f} nats<extra></extra>"))
    if after is not None:
        fig.add_trace(go.Scatter(x=x, y=list(after), mode="markers", name="loss after the SFT steps",
                                 marker=dict(color=OKABE_ITO[1], size=8, symbol="diamond"), customdata=names,
                                 hovertemplate="token %{x}: %{customdata}<br>after %{y:.3f} nats<extra></extra>"))
    step = max(1, round(len(x) / 30))   # about 30 labels at most: more overlap on a narrow screen
    fig.update_xaxes(tickvals=x[::step], ticktext=names[::step], tickangle=-60, automargin=True)
    fig.update_yaxes(title="-ln p(token | before) (nats)", rangemode="tozero", gridcolor=GRID)
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=height,
                                    bargap=0.15, showlegend=True))
    # the legend sits above the plot: below it, it would collide with the long rotated token labels
    fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=1.0, yanchor="bottom"),
                      margin=dict(l=10, r=10, t=95, b=10))
    return fig
