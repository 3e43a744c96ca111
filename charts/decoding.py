"""Decoding charts: greedy's step-by-step confidence and margins, and the beam-search tree."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout

MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"
PRUNED = "rgba(140,140,140,0.55)"


def greedy_steps(labels: Sequence[str], chosen: Sequence[float], runner_up: Sequence[float],
                 runner_up_labels: Sequence[str], in_loop: Sequence[bool], title: str = "") -> go.Figure:
    """Per step: the chosen token's probability beside the runner-up's; steps inside a loop marked."""
    steps = list(range(1, len(labels) + 1))
    ticks = [f"{i}<br>{plain(l)}" for i, l in zip(steps, labels)]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=steps, y=[100 * p for p in chosen], name="chosen (top 1)", marker_color=PRIMARY,
                         marker_line=dict(color=[OKABE_ITO[5] if l else "rgba(0,0,0,0)" for l in in_loop], width=3),
                         customdata=[[plain(l)] for l in labels],
                         hovertemplate="step %{x}: %{customdata[0]}<br>p = %{y:.1f}%<extra></extra>"))
    fig.add_trace(go.Bar(x=steps, y=[100 * p for p in runner_up], name="runner-up (top 2)", marker_color=ACCENT,
                         customdata=[[plain(l)] for l in runner_up_labels],
                         hovertemplate="step %{x}: runner-up %{customdata[0]}<br>p = %{y:.1f}%<extra></extra>"))
    if any(in_loop):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="inside a repetition loop",
                                 marker=dict(symbol="square-open", size=13, color=OKABE_ITO[5],
                                             line=dict(width=3)), hoverinfo="skip"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=380,
                                    barmode="group", bargap=0.25,
                                    legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                                    margin=dict(l=10, r=10, t=70, b=10)))
    fig.update_xaxes(tickmode="array", tickvals=steps, ticktext=ticks, tickfont=dict(family=MONO, size=11))
    fig.update_yaxes(title="probability (%)", range=[0, 100], gridcolor="rgba(128,128,128,0.25)")
    return fig


def beam_tree(steps: Sequence[int], parents: Sequence[int], labels: Sequence[str], cumulative: Sequence[float],
              kept: Sequence[bool], finished: Sequence[bool], best_path: Sequence[int], title: str = "") -> go.Figure:
    """Every candidate the search considered, placed by step (x, 1-based; the prompt at 0) and rank within its
    step (y, best on top).

    Kept beams are coloured, pruned candidates grey, ended beams (end-of-text) ringed, the winning path drawn
    thick. Hover gives the token and the cumulative log-probability of its beam."""
    n = len(steps)
    rows: dict[int, list[int]] = {}
    for i in range(n):
        rows.setdefault(steps[i], []).append(i)
    y = [0.0] * n
    for step, members in rows.items():
        for rank, i in enumerate(sorted(members, key=lambda i: -cumulative[i])):
            y[i] = -rank
    best = set(best_path)
    fig = go.Figure()
    edge_sets = {"pruned": ([], [], PRUNED, 1), "kept": ([], [], PRIMARY, 1.5), "best": ([], [], ACCENT, 4)}
    for i in range(n):
        px, py = (0, 0.0) if parents[i] < 0 else (steps[parents[i]], y[parents[i]])   # x 0 is the prompt
        xs, ys, _, _ = edge_sets["best" if i in best else "kept" if kept[i] else "pruned"]
        xs += [px, steps[i], None]
        ys += [py, y[i], None]
    for name, (xs, ys, colour, width) in edge_sets.items():
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=colour, width=width), hoverinfo="skip",
                                 showlegend=False))
    groups = (("pruned candidate", lambda i: not kept[i], PRUNED, 8),
              ("kept beam", lambda i: kept[i] and i not in best, PRIMARY, 11),
              ("chosen result", lambda i: i in best, ACCENT, 13))
    for name, belongs, colour, size in groups:
        members = [i for i in range(n) if belongs(i)]
        fig.add_trace(go.Scatter(
            x=[steps[i] for i in members], y=[y[i] for i in members], mode="markers+text", name=name,
            text=[plain(labels[i]) if kept[i] else "" for i in members], textposition="top center",
            textfont=dict(family=MONO, size=11),
            marker=dict(color=colour, size=size, symbol=["circle-dot" if finished[i] else "circle" for i in members],
                        line=dict(color=[OKABE_ITO[5] if finished[i] else "rgba(0,0,0,0)" for i in members], width=2)),
            customdata=[[plain(labels[i]), cumulative[i]] for i in members],
            hovertemplate="%{customdata[0]}<br>beam log-prob %{customdata[1]:.2f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers+text", text=["prompt"], textposition="top center",
                             marker=dict(color=OKABE_ITO[2], size=12), showlegend=False, hoverinfo="skip"))
    depth = max((-v for v in y), default=0)
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)),
                                    height=max(340, 90 + 44 * (depth + 1)),
                                    legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                                    margin=dict(l=60, r=20, t=70, b=40)))
    fig.update_xaxes(title="new token", dtick=1, range=[-0.6, max(steps, default=0) + 0.6],
                     gridcolor="rgba(128,128,128,0.15)", zeroline=False)
    fig.update_yaxes(visible=False, range=[-depth - 0.7, 0.8])
    return fig


def diversity_curve(temperatures: Sequence[float], distinct_2: Sequence[float], similarity: Sequence[float],
                    token_prob: Sequence[float], current: float, title: str = "") -> go.Figure:
    """Diversity of a set of samples against temperature: distinct 2-grams, MiniLM similarity, token probability."""
    fig = go.Figure()
    series = (("distinct 2-grams across the samples", distinct_2, PRIMARY, "solid"),
              ("meaning similarity between samples (MiniLM)", similarity, ACCENT, "dash"),
              ("model's probability of the sampled tokens", token_prob, OKABE_ITO[2], "dot"))
    for name, values, colour, dash in series:
        fig.add_trace(go.Scatter(x=list(temperatures), y=[100 * v for v in values], mode="lines+markers", name=name,
                                 line=dict(color=colour, dash=dash, width=2),
                                 hovertemplate="T = %{x}<br>%{y:.1f}%<extra>" + name + "</extra>"))
    fig.add_vline(x=current, line=dict(color="rgba(128,128,128,0.8)", dash="dot"),
                  annotation=dict(text=f"your T = {current:.2f}", font=dict(size=12)))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=380,
                                    legend=dict(orientation="h", y=-0.22, x=0), margin=dict(l=10, r=10, t=40, b=90)))
    fig.update_xaxes(title="temperature", gridcolor="rgba(128,128,128,0.25)")
    fig.update_yaxes(title="%", range=[0, 105], gridcolor="rgba(128,128,128,0.25)")
    return fig
