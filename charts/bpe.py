"""Charts of a BPE run: the text after k merges, pair counts, tokens per word by vocabulary size, SmolLM2 ranks."""
from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout
from charts.tokens import Chip, token_chips

FRESH_FILL = "#8FD9B6"        # a light tint of Okabe-Ito's bluish green: black text reads on it in both themes
FRESH_LINE = "#009E73"
MUTED = "#9A9A9A"
# Below the plot: on a narrow screen a legend above it wraps into the title.
LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.2, x=0, xanchor="left")


def merge_chips(chips: Sequence[Chip], fresh: Sequence[bool], columns: int = 72, title: str = "",
                fresh_name: str = "made by this merge") -> go.Figure:
    """Token chips of a text, with the tokens the latest merge created filled green (and named in a legend)."""
    fig = token_chips([("", chips)], columns=columns, title=title, font_size=14)
    bars = fig.data[0]
    colours = list(bars.marker.color)
    widths = list(bars.marker.line.width)
    lines = list(bars.marker.line.color)
    for i, is_fresh in enumerate(fresh):
        if is_fresh:
            colours[i], lines[i], widths[i] = FRESH_FILL, FRESH_LINE, 2
    bars.marker.color, bars.marker.line.color, bars.marker.line.width = colours, lines, widths
    if any(fresh):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=plain(fresh_name), hoverinfo="skip",
                                 marker=dict(symbol="square", size=13, color=FRESH_FILL,
                                             line=dict(color=FRESH_LINE, width=1.5))))
        top = fig.layout.margin.t + (0 if len(fig.data) > 2 else 26)
        fig.update_layout(showlegend=True, margin=dict(t=top), height=fig.layout.height + (top - fig.layout.margin.t))
    return fig


def pair_bars(labels: Sequence[str], counts: Sequence[int], chosen: int | None, title: str = "") -> go.Figure:
    """The most frequent adjacent pairs right now; `chosen` (an index) is the one the trainer merges next."""
    colours = [ACCENT if i == chosen else PRIMARY for i in range(len(labels))]
    fig = go.Figure(go.Bar(
        x=list(counts), y=[plain(label) for label in labels], orientation="h", marker_color=colours,
        text=[f"{c:,}" for c in counts], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}<br>%{x:,} times in the corpus<extra></extra>"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, xanchor="left", font=dict(size=14)),
                                    height=max(220, 30 * len(labels) + 90), showlegend=False,
                                    margin=dict(l=10, r=30, t=50, b=40)))
    fig.update_yaxes(autorange="reversed", tickfont=dict(family="ui-monospace, Menlo, Consolas, monospace", size=13))
    fig.update_xaxes(title="occurrences of the pair", rangemode="tozero", range=[0, max(counts, default=1) * 1.2])
    return fig


def tokens_per_word_curve(vocab_sizes: Sequence[int], per_word: Sequence[float], current: int,
                          reference: float | None, reference_name: str, title: str = "") -> go.Figure:
    """Tokens per word of the corpus as the vocabulary grows one merge at a time; the current size marked."""
    fig = go.Figure(go.Scatter(x=list(vocab_sizes), y=list(per_word), mode="lines", name="your tokenizer",
                               line=dict(color=PRIMARY, width=2.5),
                               hovertemplate="vocabulary %{x:,}<br>%{y:.2f} tokens per word<extra></extra>"))
    index = list(vocab_sizes).index(current) if current in vocab_sizes else None
    if index is not None:
        fig.add_trace(go.Scatter(x=[current], y=[per_word[index]], mode="markers", name="now",
                                 marker=dict(color=ACCENT, size=12, line=dict(color="white", width=1)),
                                 hovertemplate="now: vocabulary %{x:,}<br>%{y:.2f} tokens per word<extra></extra>"))
    if reference is not None:
        fig.add_trace(go.Scatter(x=[vocab_sizes[0], vocab_sizes[-1]], y=[reference, reference], mode="lines",
                                 name=plain(reference_name), line=dict(color=OKABE_ITO[2], dash="dash", width=2),
                                 hovertemplate=plain(reference_name) + ": %{y:.2f} tokens per word<extra></extra>"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, xanchor="left", font=dict(size=14)),
                                    height=420, margin=dict(l=10, r=10, t=50, b=10), legend=LEGEND_BELOW))
    fig.update_xaxes(title="vocabulary size (256 bytes + merges)")
    fig.update_yaxes(title="tokens per word", rangemode="tozero")
    return fig


def rank_scatter(steps: Sequence[int], ranks: Sequence[int | None], labels: Sequence[str], ceiling: int,
                 current: int, title: str = "") -> go.Figure:
    """Each of our merges (x: its step) at its rank in SmolLM2's merge list (y, log scale); absent ones on top."""
    found = [(s, r, lab) for s, r, lab in zip(steps, ranks, labels) if r is not None]
    missing = [(s, lab) for s, r, lab in zip(steps, ranks, labels) if r is None]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[s for s, _, _ in found], y=[r for _, r, _ in found], mode="markers", name="also a SmolLM2 merge",
        marker=dict(color=[ACCENT if s == current else PRIMARY for s, _, _ in found], size=8, opacity=0.85),
        text=[plain(lab) for _, _, lab in found],
        hovertemplate="your merge %{x}: %{text}<br>SmolLM2's merge %{y:,}<extra></extra>"))
    if missing:
        fig.add_trace(go.Scatter(
            x=[s for s, _ in missing], y=[ceiling] * len(missing), mode="markers", name="not in SmolLM2's list",
            marker=dict(color=MUTED, size=8, symbol="x"), text=[plain(lab) for _, lab in missing],
            hovertemplate="your merge %{x}: %{text}<br>not one of SmolLM2's merges<extra></extra>"))
    top = max([r for _, r, _ in found] + [ceiling, 10])
    fig.add_trace(go.Scatter(x=[1, max(steps, default=1)], y=[1, max(steps, default=1)], mode="lines",
                             name="same rank in both", line=dict(color=MUTED, dash="dot", width=1), hoverinfo="skip"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, xanchor="left", font=dict(size=14)),
                                    height=460, margin=dict(l=10, r=10, t=50, b=10), legend=LEGEND_BELOW))
    fig.update_xaxes(title="your merge (step)", rangemode="tozero")
    decades = [10 ** i for i in range(int(math.log10(max(ceiling, 10))) + 1) if 10 ** i < ceiling]
    fig.update_yaxes(title="rank in SmolLM2's merge list (log)", type="log",
                     range=[-0.1, 1.05 * math.log10(max(top, 10))], tickvals=decades + [ceiling],
                     ticktext=[f"{d:,}" for d in decades] + ["none"])
    return fig
