"""Vector-search charts: a query's nearest neighbours (exact, with what the index found), the lengths each
closeness measure favours, and recall against queries per second as the index's search setting moves."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout, legend_below

MISSED = OKABE_ITO[5]
MUTED = "#9A9A9A"


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, xanchor="left", font=dict(size=14))


def neighbour_bars(labels: Sequence[str], scores: Sequence[float], found: Sequence[bool] | None,
                   title: str = "", score_name: str = "cosine similarity") -> go.Figure:
    """The exact k nearest, best at the top; once an index has answered, bars it missed are coloured apart."""
    ys = [plain(s) for s in labels]
    if found is None:
        colours, names = [PRIMARY] * len(ys), ["exact search"] * len(ys)
    else:
        colours = [PRIMARY if f else MISSED for f in found]
        names = ["found by the index too" if f else "missed by the index" for f in found]
    fig = go.Figure()
    for name, colour in dict(zip(names, colours)).items():
        idx = [i for i, n in enumerate(names) if n == name]
        fig.add_trace(go.Bar(
            y=[ys[i] for i in idx], x=[float(scores[i]) for i in idx], orientation="h", name=name,
            marker_color=colour, text=[f"{scores[i]:.3f}" for i in idx], textposition="outside", cliponaxis=False,
            customdata=[[i + 1] for i in idx],
            hovertemplate="rank %{customdata[0]}: %{y}<br>" + score_name + " %{x:.4f}<extra></extra>"))
    low = min(0.0, *scores) if len(scores) else 0.0
    high = max(scores) if len(scores) else 1.0
    fig.update_layout(**base_layout(title=_title(title), height=max(260, 24 * len(ys) + 150), barmode="overlay",
                                    showlegend=found is not None))
    if found is not None:
        legend_below(fig)
    fig.update_yaxes(categoryorder="array", categoryarray=ys, autorange="reversed", type="category",
                     tickfont=dict(size=12))
    fig.update_xaxes(title=score_name, range=[low, high * 1.15 if high > 0 else 1.0])
    return fig


def metric_lengths(names: Sequence[str], mean_lengths: Sequence[float], set_mean: float,
                   overlaps: Sequence[int], k: int, title: str = "") -> go.Figure:
    """How long the vectors each measure picks are, against the whole set's mean length."""
    xs = [plain(n) for n in names]
    fig = go.Figure(go.Bar(
        x=xs, y=list(mean_lengths), marker_color=[PRIMARY, ACCENT, OKABE_ITO[2]][:len(xs)],
        text=[f"{v:.2f}" for v in mean_lengths], textposition="inside", insidetextanchor="end",
        textfont=dict(color="white"), customdata=[[o, k] for o in overlaps],
        hovertemplate="%{x}<br>mean length of its top %{customdata[1]}: %{y:.3f}<br>"
                      "shares %{customdata[0]} of %{customdata[1]} with cosine<extra></extra>", showlegend=False))
    fig.add_hline(y=set_mean, line=dict(color=MUTED, dash="dash"),
                  annotation_text=f"mean over the whole set: {set_mean:.2f}", annotation_position="top right")
    top = max([*mean_lengths, set_mean]) if len(mean_lengths) else 1.0
    fig.update_layout(**base_layout(title=_title(title), height=320, margin=dict(l=10, r=10, t=50, b=10)))
    fig.update_yaxes(title="mean vector length of the top k", range=[0, top * 1.2])
    return fig


def recall_qps_curve(values: Sequence[int], recall: Sequence[float], qps: Sequence[float], exact_qps: float,
                     chosen: int | None, search_name: str, k: int, title: str = "") -> go.Figure:
    """Each search setting as a point: recall@k up, queries per second (log) across; exact search at recall 1."""
    values, recall, qps = list(values), [float(r) for r in recall], [float(q) for q in qps]
    fig = go.Figure(go.Scatter(
        x=qps, y=recall, mode="lines+markers+text", name=f"index, by {search_name}",
        text=[str(v) for v in values], textposition="top center", marker=dict(color=PRIMARY, size=9),
        line=dict(color=PRIMARY), customdata=[[v] for v in values],
        hovertemplate=search_name + " %{customdata[0]}<br>recall@" + str(k) + " %{y:.3f}<br>%{x:,.0f} queries/s"
                      "<extra></extra>"))
    if np.isfinite(exact_qps):
        fig.add_trace(go.Scatter(x=[exact_qps], y=[1.0], mode="markers+text", name="exact search",
                                 text=["exact"], textposition="bottom center",
                                 marker=dict(color=ACCENT, size=13, symbol="diamond"),
                                 hovertemplate="exact search<br>recall 1<br>%{x:,.0f} queries/s<extra></extra>"))
    if chosen in values:
        i = values.index(chosen)
        fig.add_trace(go.Scatter(x=[qps[i]], y=[recall[i]], mode="markers", name=f"your {search_name}",
                                 marker=dict(color=MISSED, size=17, symbol="circle-open", line=dict(width=3)),
                                 hovertemplate=f"your {search_name} = {chosen}<br>recall@{k} "
                                               "%{y:.3f}<br>%{x:,.0f} queries/s<extra></extra>"))
    fig.update_layout(**base_layout(title=_title(title), height=400))
    legend_below(fig)
    fig.update_xaxes(type="log", title="queries per second (one at a time, one thread; log scale)")
    fig.update_yaxes(title=f"recall@{k}", range=[min([0.0, *recall]) - 0.02, 1.12])
    return fig
