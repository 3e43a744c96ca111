"""Charts of per-token loss: colour bins for token chips, loss bars with the uniform-guess line, window sweeps."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout

# Light tints (black text reads on each), light to dark as the surprise grows: a sequential scale.
LOSS_BINS = ((1.0, "#FFF7D6", "under 1 bit"), (3.0, "#FEE391", "1-3 bits"), (6.0, "#FEC44F", "3-6 bits"),
             (10.0, "#FB9A29", "6-10 bits"), (float("inf"), "#E8743B", "10 bits or more"))
FIRST_TOKEN_FILL = "#D0D0D0"
# GLTR's convention, as light tints: green top 10, yellow top 100, red top 1,000, purple beyond.
BUCKET_FILLS = {"top 10": "#9FDFB5", "top 100": "#FFE680", "top 1,000": "#F7A8A8", "beyond 1,000": "#CDB4F0"}


def loss_fill(bits: float) -> str:
    return next(colour for limit, colour, _ in LOSS_BINS if bits < limit)


def loss_legend() -> list[tuple[str, str]]:
    return [(name, colour) for _, colour, name in LOSS_BINS]


def bucket_fill(bucket: str) -> str:
    return BUCKET_FILLS[bucket]


def bucket_legend() -> list[tuple[str, str]]:
    return [(f"actual token in the model's {name}" if name.startswith("top") else f"ranked {name}", colour)
            for name, colour in BUCKET_FILLS.items()]


def loss_bars(labels: Sequence[str], values: Sequence[float], unit: str, uniform: float, mean: float,
              selected: int | None = None, title: str = "") -> go.Figure:
    """One bar per predicted token; the uniform guess and the mean as lines; the selected bar highlighted."""
    n = len(values)
    colours = [ACCENT if i == selected else PRIMARY for i in range(n)]
    fig = go.Figure(go.Bar(x=list(range(n)), y=list(values), marker_color=colours, name=f"loss ({unit})",
                           customdata=[[plain(l)] for l in labels],
                           hovertemplate=f"%{{customdata[0]}}<br>%{{y:.2f}} {unit}<extra></extra>"))
    fig.add_hline(y=uniform, line=dict(color=OKABE_ITO[5], dash="dash", width=1.5),
                  annotation=dict(text=f"uniform guess over the vocabulary: {uniform:.2f} {unit}",
                                  font=dict(size=12), xanchor="right", x=1, yanchor="bottom"))
    fig.add_hline(y=mean, line=dict(color=OKABE_ITO[2], width=1.5),
                  annotation=dict(text=f"mean: {mean:.2f} {unit}", font=dict(size=12), xanchor="left", x=0,
                                  yanchor="bottom"))
    ticks = list(range(n)) if n <= 40 else list(range(0, n, max(1, n // 40)))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=360,
                                    showlegend=False, bargap=0.15, margin=dict(l=10, r=10, t=40, b=90)))
    fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=[plain(labels[i]) for i in ticks], tickangle=-60,
                     tickfont=dict(family="ui-monospace, Menlo, Consolas, monospace", size=11))
    fig.update_yaxes(title=f"loss ({unit})", rangemode="tozero", gridcolor="rgba(128,128,128,0.25)")
    return fig


def perplexity_bars(names: Sequence[str], values: Sequence[float], tokens: Sequence[int], title: str = "") -> go.Figure:
    """Perplexity of several texts side by side, on a log axis (they span orders of magnitude)."""
    colours = [OKABE_ITO[i % 6] for i in range(len(names))]
    fig = go.Figure(go.Bar(x=list(values), y=[plain(n) for n in names], orientation="h", marker_color=colours,
                           text=[f"{v:,.1f}" for v in values], textposition="outside", cliponaxis=False,
                           customdata=[[t] for t in tokens],
                           hovertemplate="%{y}<br>perplexity %{x:,.2f} over %{customdata[0]} tokens<extra></extra>"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)),
                                    height=70 + 42 * len(names), showlegend=False,
                                    margin=dict(l=10, r=60, t=40, b=40)))
    fig.update_xaxes(type="log", title="perplexity (log scale; lower = better predicted)",
                     gridcolor="rgba(128,128,128,0.25)")
    fig.update_yaxes(autorange="reversed")
    return fig


def stride_curve(strides: Sequence[int], perplexities: Sequence[float], passes: Sequence[int], selected: int,
                 full: float, title: str = "") -> go.Figure:
    """Sliding-window perplexity against the stride, with the full-context perplexity for reference."""
    fig = go.Figure(go.Scatter(x=list(strides), y=list(perplexities), mode="lines+markers", name="sliding window",
                               line=dict(color=PRIMARY, width=2), customdata=[[p] for p in passes],
                               hovertemplate="stride %{x}<br>perplexity %{y:.2f}<br>%{customdata[0]} passes"
                                             "<extra></extra>"))
    if selected in strides:
        i = list(strides).index(selected)
        fig.add_trace(go.Scatter(x=[selected], y=[perplexities[i]], mode="markers", name="chosen stride",
                                 marker=dict(color=ACCENT, size=13, line=dict(color="white", width=1.5)),
                                 hoverinfo="skip"))
    fig.add_hline(y=full, line=dict(color=OKABE_ITO[2], dash="dash", width=1.5),
                  annotation=dict(text=f"whole text as context: {full:.2f}", font=dict(size=12), xanchor="left",
                                  x=0, yanchor="bottom"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=340,
                                    legend=dict(orientation="h", y=-0.25, x=0), margin=dict(l=10, r=10, t=40, b=70)))
    fig.update_xaxes(type="log", title="stride (tokens the window moves each pass; log scale)",
                     tickvals=list(strides), gridcolor="rgba(128,128,128,0.25)")
    fig.update_yaxes(title="perplexity", gridcolor="rgba(128,128,128,0.25)")
    return fig
