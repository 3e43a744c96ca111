"""Hallucination charts: how sure the model was of each token of an answer, and sampled answers grouped by meaning."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout

MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"
ENTROPY_COLOUR = OKABE_ITO[5]
GRID = "rgba(128,128,128,0.25)"


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def token_confidence(names: Sequence[str], tokens: Sequence[Sequence[str]], probabilities: Sequence[Sequence[float]],
                     entropies: Sequence[Sequence[float]], runner_ups: Sequence[Sequence[str]],
                     runner_up_probabilities: Sequence[Sequence[float]], title: str = "") -> go.Figure:
    """One row per answer: bars = the model's probability of each token it wrote (%), dots = the entropy of its
    whole prediction at that step (bits, right axis). A dashed line marks the answer's mean probability."""
    rows = len(names)
    fig = make_subplots(rows=rows, cols=1, vertical_spacing=0.2 if rows > 1 else 0.1,
                        specs=[[{"secondary_y": True}] for _ in range(rows)],
                        subplot_titles=[plain(_short(n, 90)) for n in names])
    top_entropy = max([max(e) for e in entropies if len(e)] + [1.0])
    for r, (colour, toks, probs, ents, alts, alt_p) in enumerate(zip(
            [PRIMARY, ACCENT], tokens, probabilities, entropies, runner_ups, runner_up_probabilities), start=1):
        steps = list(range(1, len(toks) + 1))
        fig.add_trace(go.Bar(x=steps, y=[100 * p for p in probs], marker_color=colour, name="token probability",
                             legendgroup="p", showlegend=r == 1,
                             customdata=[[plain(t), plain(a), 100 * q, e]
                                         for t, a, q, e in zip(toks, alts, alt_p, ents)],
                             hovertemplate="token %{x}: %{customdata[0]}<br>p = %{y:.1f}%<br>runner-up "
                                           "%{customdata[1]} (%{customdata[2]:.1f}%)<br>entropy "
                                           "%{customdata[3]:.2f} bits<extra></extra>"), row=r, col=1)
        fig.add_trace(go.Scatter(x=steps, y=list(ents), mode="markers", name="entropy of the prediction (bits)",
                                 marker=dict(color=ENTROPY_COLOUR, size=9, symbol="diamond"), legendgroup="h",
                                 showlegend=r == 1, hovertemplate="token %{x}: entropy %{y:.2f} bits<extra></extra>"),
                      row=r, col=1, secondary_y=True)
        if len(probs):
            mean = 100 * float(np.mean(probs))
            fig.add_trace(go.Scatter(x=[0.5, len(steps) + 0.5], y=[mean, mean], mode="lines", name="mean probability",
                                     line=dict(color="rgba(128,128,128,0.9)", dash="dash", width=2),
                                     legendgroup="m", showlegend=r == 1,
                                     hovertemplate=f"mean {mean:.1f}%<extra></extra>"), row=r, col=1)
        fig.update_xaxes(tickmode="array", tickvals=steps, ticktext=[plain(t) for t in toks], tickangle=-45,
                         tickfont=dict(family=MONO, size=11), row=r, col=1)
        fig.update_yaxes(title_text="p (%)", range=[0, 100], gridcolor=GRID, row=r, col=1, secondary_y=False)
        fig.update_yaxes(title_text="bits", range=[0, 1.1 * top_entropy], dtick=2 if top_entropy > 4 else 1,
                         showgrid=False, row=r, col=1, secondary_y=True, title_font=dict(color=ENTROPY_COLOUR),
                         tickfont=dict(color=ENTROPY_COLOUR))
    height = 260 + 230 * rows
    # Title, then the legend, then the first row's own title: all placed from the top of the figure in pixels,
    # so that a legend wrapped onto two lines on a narrow window still clears both.
    fig.update_layout(**base_layout(
        title=dict(text=plain(title), x=0, y=1 - 8 / height, yref="container", yanchor="top", font=dict(size=14)),
        legend=dict(orientation="h", x=0, y=1 - 36 / height, yref="container", yanchor="top"),
        height=height, bargap=0.25, margin=dict(l=10, r=10, t=135, b=10)))
    return fig


def meaning_groups(names: Sequence[str], sizes: Sequence[Sequence[int]], firsts: Sequence[Sequence[str]],
                   title: str = "") -> go.Figure:
    """One horizontal bar per question, cut into its meaning groups (width = answers in the group); hover
    gives each group's first answer. A bar in one piece means every sample said the same thing."""
    fig = go.Figure()
    widest = max([len(s) for s in sizes] + [1])
    labels = [plain(_short(n, 30)) for n in names]
    for g in range(widest):
        xs = [s[g] if g < len(s) else 0 for s in sizes]
        hover = [plain(_short(f[g], 90)) if g < len(f) else "" for f in firsts]
        fig.add_trace(go.Bar(y=labels, x=xs, orientation="h", name=f"group {g + 1}",
                             marker=dict(color=OKABE_ITO[g % len(OKABE_ITO)], line=dict(color="rgba(255,255,255,0.9)",
                                                                                       width=2)),
                             text=[str(x) if x else "" for x in xs], textposition="inside",
                             insidetextanchor="middle", customdata=[[h] for h in hover], showlegend=False,
                             hovertemplate=f"group {g + 1}: " + "%{x} answer(s)<br>first: %{customdata[0]}"
                                                                "<extra></extra>"))
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), barmode="stack",
                                    height=120 + 70 * len(names), bargap=0.35))
    fig.update_xaxes(title="sampled answers", dtick=1, gridcolor=GRID)
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=13))
    return fig


def similarity_grid(names: Sequence[str], matrices: Sequence[np.ndarray], threshold: float,
                    title: str = "") -> go.Figure:
    """Cosine similarity of every pair of sampled answers, one panel per question (`names` are short panel
    titles); cells at or above the threshold are marked with a dot (those pairs count as the same meaning)."""
    cols = len(names)
    fig = make_subplots(rows=1, cols=cols, horizontal_spacing=0.12,
                        subplot_titles=[plain(n) for n in names])
    for c, sims in enumerate(matrices, start=1):
        n = sims.shape[0]
        idx = list(range(1, n + 1))
        fig.add_trace(go.Heatmap(z=sims, x=idx, y=idx, zmin=0, zmax=1, colorscale="Viridis", showscale=c == cols,
                                 colorbar=dict(title="cosine", thickness=12),
                                 hovertemplate="answers %{y} and %{x}: %{z:.2f}<extra></extra>"), row=1, col=c)
        close = [(i + 1, j + 1) for i in range(n) for j in range(n) if sims[i, j] >= threshold]
        fig.add_trace(go.Scatter(x=[j for _, j in close], y=[i for i, _ in close], mode="markers", showlegend=False,
                                 marker=dict(color="white", size=7, line=dict(color="black", width=1)),
                                 hoverinfo="skip"), row=1, col=c)
        fig.update_xaxes(title_text="answer", dtick=1, range=[0.5, n + 0.5], constrain="domain", showgrid=False,
                         row=1, col=c)
        fig.update_yaxes(title_text="answer", dtick=1, range=[n + 0.5, 0.5], constrain="domain", showgrid=False,
                         scaleanchor=f"x{c if c > 1 else ''}", row=1, col=c)
    fig.update_layout(**base_layout(title=dict(text=plain(title), x=0, font=dict(size=14)), height=380,
                                    margin=dict(l=10, r=10, t=80, b=10)))
    return fig
