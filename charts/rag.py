"""RAG charts: how the handbook is cut into chunks, the retrieval scores with the chunks taken, the reference
answer's per-token probability with and without them, and its probability as the gold chunk moves."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout, legend_below

MUTED = "#9A9A9A"
GOLD = OKABE_ITO[5]


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, xanchor="left", font=dict(size=14))


def chunk_lengths(words: Sequence[int], size: int, title: str = "") -> go.Figure:
    """How many words each chunk holds, against the size limit: sections end chunks early."""
    counts = np.bincount(np.asarray(words, dtype=int), minlength=size + 1)[1:size + 1]
    fig = go.Figure(go.Bar(x=list(range(1, size + 1)), y=counts.tolist(), marker_color=PRIMARY,
                           hovertemplate="%{y} chunks of %{x} words<extra></extra>", showlegend=False))
    fig.add_vline(x=size, line=dict(color=ACCENT, dash="dash"), annotation_text=f"limit: {size} words",
                  annotation_position="top left")
    fig.update_layout(**base_layout(title=_title(title), height=280, bargap=0.05))
    fig.update_xaxes(title="words in the chunk", range=[0, size + 2])
    fig.update_yaxes(title="chunks", range=[0, max(1, int(counts.max(initial=0))) * 1.25])
    return fig


def retrieval_scores(labels: Sequence[str], scores: Sequence[float], k: int, gold: int | None,
                     title: str = "") -> go.Figure:
    """The best-scoring chunks, best at the top: the k taken into the prompt in colour, the rest grey; the
    chunk that holds the reference answer marked."""
    ys = [plain(s) for s in labels]
    colours = [PRIMARY if i < k else MUTED for i in range(len(ys))]
    fig = go.Figure(go.Bar(
        y=ys, x=[float(s) for s in scores], orientation="h", marker_color=colours,
        marker_line=dict(color=[GOLD if i == gold else "rgba(0,0,0,0)" for i in range(len(ys))], width=3),
        text=[f"{s:.3f}" + (" ★ holds the answer" if i == gold else "") for i, s in enumerate(scores)],
        textposition="outside", cliponaxis=False, showlegend=False,
        hovertemplate="%{y}<br>cosine %{x:.4f}<extra></extra>"))
    if 0 < k < len(ys):
        fig.add_hline(y=k - 0.5, line=dict(color=ACCENT, dash="dash"),
                      annotation_text=f"top {k} go into the prompt", annotation_position="bottom right")
    high = max(scores) if len(scores) else 1.0
    fig.update_layout(**base_layout(title=_title(title), height=max(280, 26 * len(ys) + 120)))
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=11))
    fig.update_xaxes(title="cosine similarity with your question (MiniLM)", range=[min(0.0, *scores), high * 1.45])
    return fig


def reference_tokens(tokens: Sequence[str], p_without: Sequence[float], p_with: Sequence[float],
                     title: str = "") -> go.Figure:
    """Each reference token's probability, teacher-forced, without and with the retrieved context."""
    xs = [f"{i + 1}: {plain(t)}" for i, t in enumerate(tokens)]
    fig = go.Figure([
        go.Bar(x=xs, y=list(p_without), name="without retrieval", marker_color=MUTED,
               text=[f"{p:.2g}" for p in p_without], textposition="outside", cliponaxis=False,
               hovertemplate="%{x}<br>without: %{y:.4g}<extra></extra>"),
        go.Bar(x=xs, y=list(p_with), name="with the retrieved chunks", marker_color=PRIMARY,
               text=[f"{p:.2g}" for p in p_with], textposition="outside", cliponaxis=False,
               hovertemplate="%{x}<br>with: %{y:.4g}<extra></extra>"),
    ])
    fig.update_layout(**base_layout(title=_title(title), barmode="group", height=340))
    legend_below(fig)
    fig.update_yaxes(title="probability of this token", range=[0, 1.12])
    fig.update_xaxes(type="category")
    return fig


def gold_positions(logprobs: Sequence[float], baseline: float, title: str = "") -> go.Figure:
    """p(reference) with the gold chunk at each position, as a multiple of p(reference) without retrieval.

    A ratio reads better than ln p here: the positions differ by fractions of a nat, which a bar of ln p
    (dozens of nats long) hides. ln p itself rides along in the hover and in `customdata`."""
    ratios = [float(np.exp(v - baseline)) for v in logprobs]
    xs = [f"position {i + 1}" for i in range(len(logprobs))]
    fig = go.Figure(go.Bar(x=xs, y=ratios, marker_color=PRIMARY, showlegend=False,
                           text=[_times(r) for r in ratios], textposition="outside", cliponaxis=False,
                           customdata=[[float(v)] for v in logprobs],
                           hovertemplate="gold chunk at %{x}<br>%{y:,.4g} times as likely as without retrieval"
                                         "<br>ln p(reference) %{customdata[0]:.3f}<extra></extra>"))
    fig.add_hline(y=1.0, line=dict(color=MUTED, dash="dash"), annotation_text="as likely as without retrieval",
                  annotation_position="top right")
    fig.update_layout(**base_layout(title=_title(title), height=320))
    fig.update_yaxes(title="× p(reference) without retrieval", range=[0, max([1.0, *ratios]) * 1.2])
    fig.update_xaxes(type="category")
    return fig


def _times(ratio: float) -> str:
    return f"×{ratio:,.0f}" if ratio >= 100 else f"×{ratio:.3g}"
