"""Charts of the RoPE page: the rotation table the model uses, its wavelengths, one pair turning, each pair's
share of a score, and a score as a function of distance. Pairs are shown 1-based; positions m as RoPE counts
them, from 0."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import ACCENT, DIVERGING, OKABE_ITO, PRIMARY, base_layout

NEGATIVE, POSITIVE = OKABE_ITO[0], OKABE_ITO[5]   # blue below zero, vermilion above, as DIVERGING draws them
QUERY = OKABE_ITO[4]   # sky blue: reads on white and on the dark theme
FAINT = "rgba(140,140,140,0.55)"


def angle_heatmap(cos: np.ndarray, labels: Sequence[str], title: str = "") -> go.Figure:
    """cos(m theta_i) [positions, pairs]: fast pairs (left) flicker from token to token, slow ones barely move."""
    positions, pairs = cos.shape
    rows = [f"{m} {plain(labels[m])}" for m in range(positions)]
    fig = go.Figure(go.Heatmap(
        z=cos, x=np.arange(1, pairs + 1), y=np.arange(positions), zmin=-1, zmax=1, zmid=0, colorscale=DIVERGING,
        text=[[rows[m]] * pairs for m in range(positions)], colorbar=dict(title="cos", thickness=12, len=0.7),
        hovertemplate="position %{text} · pair %{x}<br>cos(angle) = %{z:.4f}<extra></extra>"))
    step = max(1, positions // 24)
    fig.update_xaxes(title="pair i (1 = fastest)", showgrid=False)
    fig.update_yaxes(title="position m · token", autorange="reversed", showgrid=False,
                     tickvals=list(range(0, positions, step)), ticktext=rows[::step],
                     tickfont=dict(family="monospace", size=11))
    fig.update_layout(**base_layout(title=title, height=min(760, max(420, 12 * positions + 140))))
    return fig


def wavelength_chart(wavelengths: np.ndarray, context: int, text_length: int, title: str = "") -> go.Figure:
    """Tokens per full turn of each pair (log scale), against the model's context and the reader's text."""
    pairs = np.arange(1, wavelengths.size + 1)
    fig = go.Figure(go.Bar(x=pairs, y=wavelengths, marker_color=PRIMARY, name="tokens per turn",
                           hovertemplate="pair %{x}<br>one full turn every %{y:,.1f} tokens<extra></extra>"))
    for value, name, colour, dash in ((context, f"the context: {context:,} tokens", ACCENT, "dash"),
                                      (text_length, f"your text: {text_length} tokens", OKABE_ITO[2], "dot")):
        fig.add_trace(go.Scatter(x=[0.5, wavelengths.size + 0.5], y=[value, value], mode="lines", name=name,
                                 line=dict(color=colour, dash=dash, width=2.5),
                                 hovertemplate=f"{name}<extra></extra>"))
    fig.update_xaxes(title="pair i")
    fig.update_yaxes(title="wavelength (tokens, log scale)", type="log", dtick=1)   # powers of ten only
    fig.update_layout(**base_layout(title=title, height=420, legend=dict(orientation="h", y=-0.2)))
    return fig


def _arrow(x: float, y: float, name: str, colour: str, dash: str, hover: str) -> go.Scatter:
    return go.Scatter(x=[0, x], y=[0, y], name=name, mode="lines+markers", line=dict(color=colour, width=3, dash=dash),
                      marker=dict(symbol="arrow", size=[0, 15], angleref="previous", color=colour),
                      hovertemplate=hover + "<extra></extra>")


def pair_rotation(q_pair: np.ndarray, k_pair: np.ndarray, q_turned: np.ndarray, k_turned: np.ndarray,
                  trail: np.ndarray, query_pos: int, key_pos: int, title: str = "") -> go.Figure:
    """One pair of the query and of the key as 2-D arrows, before RoPE (dashed) and turned to their positions
    (solid); the dots are where the query's arrow would point at every position of the text."""
    fig = go.Figure(go.Scatter(
        x=trail[:, 0], y=trail[:, 1], mode="markers", name="query turned to each position",
        marker=dict(color=FAINT, size=7), customdata=np.arange(len(trail)),
        hovertemplate="query's pair if it sat at position %{customdata}<extra></extra>"))
    # keys first, so that a query lying along its key stays visible on top
    fig.add_trace(_arrow(*k_pair, "key before RoPE", ACCENT, "dot", "key, before RoPE"))
    fig.add_trace(_arrow(*k_turned, f"key at n = {key_pos}", ACCENT, "solid", f"key turned to n = {key_pos}"))
    fig.add_trace(_arrow(*q_pair, "query before RoPE", QUERY, "dot", "query, before RoPE"))
    fig.add_trace(_arrow(*q_turned, f"query at m = {query_pos}", QUERY, "solid", f"query turned to m = {query_pos}"))
    reach = 1.15 * float(max(np.abs(trail).max(), np.abs(k_pair).max(), 1e-6))
    fig.update_xaxes(title="first number of the pair", range=[-reach, reach], zeroline=True)
    fig.update_yaxes(title="second number", range=[-reach, reach], zeroline=True, scaleanchor="x")
    fig.update_layout(**base_layout(title=title, height=460, legend=dict(orientation="h", y=-0.18)))
    return fig


def pair_contribution_bars(contributions: np.ndarray, selected: int | None = None, title: str = "") -> go.Figure:
    """Each pair's part of q . k (they sum to the raw score); the selected pair outlined."""
    pairs = np.arange(1, contributions.size + 1)
    fig = go.Figure(go.Bar(
        x=pairs, y=contributions, marker_color=[POSITIVE if c >= 0 else NEGATIVE for c in contributions],
        marker_line=dict(color=[ACCENT if i == selected else "rgba(0,0,0,0)" for i in range(contributions.size)],
                         width=3),
        hovertemplate="pair %{x}<br>adds %{y:.3f} to q · k<extra></extra>"))
    fig.update_xaxes(title="pair i (1 = fastest)")
    fig.update_yaxes(title="part of q · k", zeroline=True)
    fig.update_layout(**base_layout(title=title, height=360))
    return fig


def score_by_distance_chart(distances: np.ndarray, scores: np.ndarray, without_rope: float, actual_distance: int,
                            actual_score: float, title: str = "") -> go.Figure:
    """q . k of two fixed vectors against the distance between their positions; RoPE off is a flat line."""
    fig = go.Figure(go.Scatter(x=distances, y=scores, mode="lines", name="with RoPE", line=dict(color=PRIMARY, width=2),
                               hovertemplate="distance %{x}<br>q · k = %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[distances[0], distances[-1]], y=[without_rope, without_rope], mode="lines",
                             name="RoPE off (no distance at all)", line=dict(color=FAINT, width=2, dash="dash"),
                             hovertemplate="RoPE off: q · k = %{y:.3f} at every distance<extra></extra>"))
    fig.add_trace(go.Scatter(x=[actual_distance], y=[actual_score], mode="markers", name="the model's score here",
                             marker=dict(color=ACCENT, size=13, symbol="diamond", line=dict(width=1, color="white")),
                             hovertemplate="distance %{x} in your text<br>"
                                           "the model's q · k = %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title="distance m − n (tokens between query and key)")
    fig.update_yaxes(title="raw score q · k")
    fig.update_layout(**base_layout(title=title, height=400, legend=dict(orientation="h", y=-0.22)))
    return fig
