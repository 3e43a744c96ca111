"""Speculative-decoding charts: what each round's draft proposed, what the full model kept, and the cost."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from charts.labels import plain
from charts.style import OKABE_ITO, PRIMARY, base_layout

ACCEPTED = OKABE_ITO[2]     # bluish green
REJECTED = OKABE_ITO[5]     # vermillion
OWN = PRIMARY               # the full model's own token


def rounds_chart(accepted: Sequence[int], rejected: Sequence[int], drafted_text: Sequence[str],
                 draft_ms: Sequence[float], verify_ms: Sequence[float], title: str = "") -> go.Figure:
    """Per round, stacked: drafted tokens accepted, drafted tokens rejected, and the one token the full model
    adds itself (every round has it). Hover gives the drafted tokens and the round's draft and verify times."""
    rounds = list(range(1, len(accepted) + 1))
    hover = [[plain(t), d, v] for t, d, v in zip(drafted_text, draft_ms, verify_ms)]
    template = ("round %{x}: %{y} %{fullData.name}<br>drafted: %{customdata[0]}<br>draft %{customdata[1]:.0f} ms, "
                "verify %{customdata[2]:.0f} ms<extra></extra>")
    fig = go.Figure()
    fig.add_trace(go.Bar(x=rounds, y=list(accepted), name="drafted, accepted", marker_color=ACCEPTED,
                         customdata=hover, hovertemplate=template))
    fig.add_trace(go.Bar(x=rounds, y=list(rejected), name="drafted, rejected", marker_color=REJECTED,
                         customdata=hover, hovertemplate=template))
    fig.add_trace(go.Bar(x=rounds, y=[1] * len(rounds), name="full model's own token", marker_color=OWN,
                         customdata=hover, hovertemplate=template))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=360,
                                    barmode="stack", bargap=0.2,
                                    legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                                    margin=dict(l=10, r=10, t=80, b=10)))
    fig.update_xaxes(title="round (one full-model pass each)", dtick=1 if len(rounds) <= 20 else None)
    fig.update_yaxes(title="tokens", gridcolor="rgba(128,128,128,0.25)", dtick=1)
    return fig


def first_round_bars(labels: Sequence[str], probabilities: Sequence[float], accepted: int, title: str = "") -> go.Figure:
    """The first round's drafted tokens: the full model's probability of each, accepted ones green."""
    colours = [ACCEPTED if i < accepted else REJECTED for i in range(len(labels))]
    fig = go.Figure(go.Bar(x=[f"{i + 1}. {plain(l)}" for i, l in enumerate(labels)], y=[100 * p for p in probabilities],
                           marker_color=colours, text=["accepted" if i < accepted else "rejected"
                                                       for i in range(len(labels))], textposition="outside",
                           hovertemplate="%{x}<br>full model's p = %{y:.1f}%<extra></extra>"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=300,
                                    showlegend=False, margin=dict(l=10, r=10, t=40, b=10)))
    fig.update_yaxes(title="full model's probability (%)", range=[0, 110], gridcolor="rgba(128,128,128,0.25)")
    return fig
