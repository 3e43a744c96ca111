"""Sentence-embedding charts: cosine matrices on one shared scale, similarity to the query, 2-D maps, the
benchmark by layer."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, SEQUENTIAL, base_layout

ROLE_COLOURS = {"query": OKABE_ITO[5], "paraphrase": OKABE_ITO[2], "other": OKABE_ITO[0]}
MUTED = "#9A9A9A"
# Below the plot: on a narrow screen a legend above it wraps into the title.
LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.18, x=0, xanchor="left")


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, xanchor="left", font=dict(size=14))


def short(sentence: str, width: int = 28) -> str:
    return sentence if len(sentence) <= width else sentence[:width - 1].rstrip() + "…"


def similarity_heatmap(sims: np.ndarray, labels: Sequence[str], sentences: Sequence[str],
                       title: str = "") -> go.Figure:
    """A cosine matrix with its values printed; the colour scale is fixed to 0-1 so two matrices compare."""
    sims = np.asarray(sims, dtype=float)
    hover = [[f"{plain(short(sentences[i], 60))}<br>{plain(short(sentences[j], 60))}" for j in range(len(sentences))]
             for i in range(len(sentences))]
    fig = go.Figure(go.Heatmap(
        z=sims, x=[plain(lab) for lab in labels], y=[plain(lab) for lab in labels], zmin=0.0, zmax=1.0,
        colorscale=SEQUENTIAL, texttemplate="%{z:.2f}", textfont=dict(size=11 if len(labels) <= 5 else 9),
        customdata=hover, colorbar=dict(thickness=8, tickvals=[0, 0.5, 1]),
        hovertemplate="%{customdata}<br>cosine %{z:.3f}<extra></extra>"))
    fig.update_layout(**base_layout(title=_title(title), height=380, margin=dict(l=10, r=10, t=50, b=10)))
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=12), type="category")   # "3" is a label, not a number
    fig.update_xaxes(side="bottom", tickfont=dict(size=12), type="category")
    return fig


def query_bars(labels: Sequence[str], encoder_cos: Sequence[float], decoder_cos: Sequence[float],
               encoder_name: str, decoder_name: str, title: str = "") -> go.Figure:
    """Each other sentence's cosine with the query under both models, side by side."""
    ys = [plain(lab) for lab in labels]
    fig = go.Figure([
        go.Bar(y=ys, x=list(encoder_cos), orientation="h", name=plain(encoder_name), marker_color=PRIMARY,
               text=[f"{v:.2f}" for v in encoder_cos], textposition="outside", cliponaxis=False,
               hovertemplate="%{y}<br>" + plain(encoder_name) + ": %{x:.3f}<extra></extra>"),
        go.Bar(y=ys, x=list(decoder_cos), orientation="h", name=plain(decoder_name), marker_color=ACCENT,
               text=[f"{v:.2f}" for v in decoder_cos], textposition="outside", cliponaxis=False,
               hovertemplate="%{y}<br>" + plain(decoder_name) + ": %{x:.3f}<extra></extra>"),
    ])
    lowest = min(0.0, *encoder_cos, *decoder_cos) if len(encoder_cos) else 0.0
    low = lowest - 0.15 if lowest < 0 else 0.0      # room for a negative bar's value, left of it
    fig.update_layout(**base_layout(title=_title(title), barmode="group", height=max(260, 62 * len(labels) + 150),
                                    margin=dict(l=10, r=30, t=50, b=10), legend=LEGEND_BELOW))
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=12), type="category")
    fig.update_xaxes(title="cosine similarity with the query", range=[low, 1.12])
    return fig


def sentence_map(coords: np.ndarray, labels: Sequence[str], roles: Sequence[str], sentences: Sequence[str],
                 explained: float, title: str = "") -> go.Figure:
    """Sentences placed by PCA of their (unit-length) vectors; colour marks the query and its paraphrase."""
    coords = np.asarray(coords, dtype=float)
    fig = go.Figure()
    for role in ("query", "paraphrase", "other"):
        idx = [i for i, r in enumerate(roles) if r == role]
        if not idx:
            continue
        fig.add_trace(go.Scatter(
            x=coords[idx, 0], y=coords[idx, 1], mode="markers+text", name=role,
            text=[plain(labels[i]) for i in idx], textposition="top center",
            marker=dict(color=ROLE_COLOURS[role], size=12, line=dict(color="white", width=1)),
            customdata=[plain(short(sentences[i], 70)) for i in idx],
            hovertemplate="%{customdata}<extra></extra>"))
    fig.update_layout(**base_layout(title=_title(title), height=400, margin=dict(l=10, r=10, t=50, b=10),
                                    legend=LEGEND_BELOW | dict(y=-0.15)))
    fig.update_xaxes(title="PC1", zeroline=False, showticklabels=False)
    fig.update_yaxes(title="PC2", zeroline=False, showticklabels=False, scaleanchor="x", scaleratio=1)
    fig.add_annotation(text=f"these 2 axes keep {100 * explained:.0f}% of the variance", xref="paper",
                       yref="paper", x=1, y=0, xanchor="right", yanchor="bottom", showarrow=False,
                       font=dict(size=11, color=MUTED))
    return fig


def benchmark_by_layer(layers: Sequence[int], wins: dict[str, Sequence[int]], names: dict[str, str],
                       encoder_wins: int, total: int, current_layer: int, current_pooling: str,
                       title: str = "") -> go.Figure:
    """Triples where the paraphrase beats the distractor, per SmolLM2 layer and pooling; MiniLM as a line."""
    fig = go.Figure()
    colours = [ACCENT, OKABE_ITO[3], OKABE_ITO[4]]
    for colour, (pooling, values) in zip(colours, wins.items()):
        fig.add_trace(go.Scatter(x=list(layers), y=list(values), mode="lines+markers", name=plain(names[pooling]),
                                 line=dict(color=colour, width=2), marker=dict(size=5),
                                 hovertemplate="layer %{x}: %{y} of " + str(total) + "<extra></extra>"))
    fig.add_trace(go.Scatter(x=[layers[0], layers[-1]], y=[encoder_wins, encoder_wins], mode="lines",
                             name="MiniLM (one vector per sentence)", line=dict(color=PRIMARY, width=3, dash="dash"),
                             hovertemplate=f"MiniLM: {encoder_wins} of {total}<extra></extra>"))
    if current_pooling in wins:
        fig.add_trace(go.Scatter(x=[current_layer], y=[wins[current_pooling][current_layer]], mode="markers",
                                 name="your choice", marker=dict(size=14, color="rgba(0,0,0,0)",
                                                                 line=dict(color=OKABE_ITO[5], width=3)),
                                 hovertemplate="your choice: layer %{x}, %{y} of " + str(total) + "<extra></extra>"))
    fig.add_hline(y=total / 2, line=dict(color=MUTED, dash="dot", width=1),
                  annotation_text="coin flip", annotation_position="bottom left", annotation_font_color=MUTED)
    fig.update_layout(**base_layout(title=_title(title), height=470, margin=dict(l=10, r=10, t=50, b=10),
                                    legend=LEGEND_BELOW | dict(y=-0.16)))
    fig.update_xaxes(title="SmolLM2 layer (0 = token embeddings)", dtick=5)
    fig.update_yaxes(title=f"paraphrase ranked above distractor (of {total})", range=[-0.5, total + 0.5])
    return fig
