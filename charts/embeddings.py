"""Embedding charts: word groups projected to 2-D/3-D, explained variance, cosine-similarity bars."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, OKABE_ITO, PRIMARY, base_layout

GROUP_COLOURS = OKABE_ITO[:7]       # Okabe-Ito without its black, which vanishes on a dark theme
CONTEXT_GREY = "#9A9A9A"
INPUT_GREY = "#A8A8A8"
ZERO_WIDTH = "\u200b"



def shown_token(text: str) -> str:
    """A token's text with its spaces and line breaks visible."""
    return plain(text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅")


def _hover(points: pd.DataFrame, dims: int) -> tuple[list, str]:
    custom = [[plain(w), shown_token(f), plain(i), plain(p), plain(g)]
              for w, f, i, p, g in zip(points["word"], points["form"], points["ids"], points["pieces"],
                                       points["group"])]
    coords = "<br>".join(f"{a} %{{{a}:.3f}}" for a in "xyz"[:dims])
    template = ("<b>%{customdata[0]}</b>  (group %{customdata[4]})<br>looked up as %{customdata[1]}<br>"
                "token id(s) %{customdata[2]}<br>pieces %{customdata[3]}<br>" + coords + "<extra></extra>")
    return custom, template


def word_scatter(points: pd.DataFrame, groups: Sequence[str], dims: int, axis_titles: Sequence[str],
                 title: str = "", labels: bool = True) -> go.Figure:
    """One colour per group, a label on every word, grey context points; diamonds mark multi-token words."""
    fig = go.Figure()
    scatter = go.Scatter3d if dims == 3 else go.Scatter
    context = points[points["kind"] == "context"]
    if len(context):
        custom, template = _hover(context, dims)
        coords = {a: context[a] for a in "xyz"[:dims]}
        fig.add_trace(scatter(**coords, mode="markers", name=f"context ({len(context)} tokens)",
                              marker=dict(color=CONTEXT_GREY, size=3 if dims == 3 else 5, opacity=0.45),
                              customdata=custom, hovertemplate=template))
    words = points[points["kind"] == "word"]
    for n, group in enumerate(groups):
        members = words[words["group"] == group]
        if not len(members):
            continue
        custom, template = _hover(members, dims)
        coords = {a: members[a] for a in "xyz"[:dims]}
        symbols = ["diamond" if m else "circle" for m in members["multi"]]
        fig.add_trace(scatter(
            **coords, mode="markers+text" if labels else "markers", name=plain(group),
            text=[plain(w) + ("*" if m else "") for w, m in zip(members["word"], members["multi"])],
            textposition="top center", textfont=dict(size=12 if dims == 2 else 11),
            marker=dict(color=GROUP_COLOURS[n % len(GROUP_COLOURS)], size=10 if dims == 2 else 5,
                        symbol=symbols, line=dict(width=0.5, color="white") if dims == 2 else None),
            customdata=custom, hovertemplate=template))
    layout = base_layout(title=plain(title), height=640 if dims == 2 else 720,
                         legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, title=None),
                         margin=dict(l=10, r=10, t=90, b=10))
    fig.update_layout(**layout)
    if dims == 3:
        fig.update_layout(scene=dict(xaxis_title=axis_titles[0], yaxis_title=axis_titles[1],
                                     zaxis_title=axis_titles[2], bgcolor="rgba(0,0,0,0)", aspectmode="cube"))
    else:
        fig.update_xaxes(title=axis_titles[0], zeroline=False)
        fig.update_yaxes(title=axis_titles[1], zeroline=False)
    return fig


def explained_variance_bars(explained: np.ndarray, shown: int, top: int = 10) -> go.Figure:
    """Share of the points' variance along each principal component; the components on screen highlighted."""
    ratios = 100.0 * np.asarray(explained, dtype=float)[:top]
    names = [f"PC{i + 1}" for i in range(len(ratios))]
    cumulative = np.cumsum(ratios)
    fig = go.Figure(go.Bar(
        x=names, y=ratios, marker_color=[ACCENT if i < shown else PRIMARY for i in range(len(ratios))],
        text=[f"{r:.1f}%" for r in ratios], textposition="outside", cliponaxis=False,
        customdata=cumulative, name="per component",
        hovertemplate="%{x}: %{y:.2f}% of the variance<br>PC1 to %{x} together: %{customdata:.2f}%<extra></extra>"))
    fig.update_layout(**base_layout(title="Variance kept by each principal component", height=300,
                                    showlegend=False))
    fig.update_yaxes(title="variance explained (%)", rangemode="tozero", range=[0, max(ratios, default=1) * 1.25])
    fig.update_xaxes(title=None)
    return fig


def cosine_bars(texts: Sequence[str], cosines: Sequence[float], ids: Sequence[int], roles: Sequence[str],
                title: str = "", role_names: dict[str, str] | None = None) -> go.Figure:
    """Horizontal bars of cosine similarity, best on top; `title` may hold user text (shown as plain text).

    `roles` colours each bar: "query"/"input" grey (one of the words asked about), "expected" orange,
    "variant" light blue (the same word up to case and spacing), anything else blue.
    """
    colours = {"query": INPUT_GREY, "input": INPUT_GREY, "expected": ACCENT, "variant": OKABE_ITO[4]}
    role_names = role_names or {}
    rows = [shown_token(t) + ZERO_WIDTH * n for n, t in enumerate(texts)]   # unique labels: plotly merges equal ones
    fig = go.Figure(go.Bar(
        x=list(cosines), y=rows, orientation="h",
        marker_color=[colours.get(r, PRIMARY) for r in roles],
        text=[f"{c:.3f}" for c in cosines], textposition="outside", cliponaxis=False,
        customdata=[[i, role_names.get(r, "")] for i, r in zip(ids, roles)],
        hovertemplate="token %{y}<br>id %{customdata[0]}<br>cosine %{x:.4f}<br>%{customdata[1]}<extra></extra>"))
    low = min(0.0, min(cosines, default=0.0))
    fig.update_layout(**base_layout(title=plain(title), height=max(240, 26 * len(rows) + 80), bargap=0.25))
    fig.update_yaxes(autorange="reversed", title=None, tickfont=dict(family="monospace", size=13))
    fig.update_xaxes(title="cosine similarity", range=[low, 1.12])
    return fig


def projection_axis_titles(method_name: str, explained: Sequence[float], dims: int, linear: bool) -> list[str]:
    """Axis titles of a projection: PCA's components with the variance each keeps; t-SNE/UMAP axes have no unit."""
    if linear:
        unit = "% of variance" if dims == 2 else "%"
        return [f"PC{i + 1} ({100 * explained[i]:.1f}{unit})" if i < len(explained) else f"PC{i + 1}"
                for i in range(dims)]
    return [f"{method_name} {i + 1}" if dims == 3 else f"{method_name} {i + 1} (no units)" for i in range(dims)]
