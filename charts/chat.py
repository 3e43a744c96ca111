"""Charts of a chat as the model reads it: role-coloured token chips, two next-token distributions side by side,
and how far two prompts' predictions differ along an answer. Data in, plotly figure out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout, legend_below
from charts.tokens import Chip, token_chips

# Light tints (black text reads on them in both themes), one per role.
ROLE_FILLS = {"system": "#F5CD73", "user": "#A6D6F2", "assistant": "#9FDFC4"}
ROLE_NAMES = {"system": "system turn", "user": "user turn", "assistant": "assistant turn"}
FIRST, SECOND = OKABE_ITO[0], OKABE_ITO[5]   # blue for system prompt A, vermilion for B
ZERO_WIDTH = "\u200b"


def role_chips(groups: Sequence[tuple[str, Sequence[tuple[int, str, str, str, str]]]], columns: int = 60,
               title: str = "") -> go.Figure:
    """One row group per turn; each token (id, label, role, part, hover) coloured by its turn's role.

    Special tokens are drawn grey (the chip kind 'special'), so the turn markers stand out from the text.
    """
    chip_groups = []
    roles_seen = []
    for name, tokens in groups:
        chips = []
        for ident, label, role, part, hover in tokens:
            if role not in roles_seen:
                roles_seen.append(role)
            special = part == "special"
            chips.append(Chip(label=label, hover=hover, kind="special" if special else "text", ident=ident,
                              fill=None if special else ROLE_FILLS.get(role, "#DDDDDD")))
        chip_groups.append((name, chips))
    legend = [(ROLE_NAMES.get(r, r), ROLE_FILLS.get(r, "#DDDDDD")) for r in ROLE_FILLS if r in roles_seen]
    return token_chips(chip_groups, columns=columns, title=title, legend=legend, font_size=14)


def _rows(labels: Sequence[str]) -> list[str]:
    """Plotly merges equal category labels: an invisible rank suffix keeps each bar apart."""
    return [plain(label) + ZERO_WIDTH * rank for rank, label in enumerate(labels)]


def side_by_side(panels: Sequence[tuple[str, Sequence[str], Sequence[int], Sequence[float], Sequence[float]]],
                 names: tuple[str, str], title: str = "") -> go.Figure:
    """Two panels, each one prompt's top tokens (bars) with the other prompt's probability for them (rings).

    `panels` holds (panel title, token labels, token ids, probability under this prompt, under the other).
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=[plain(p[0]) for p in panels], horizontal_spacing=0.16)
    colours = (FIRST, SECOND)
    for col, ((_, labels, ids, own, other), colour, other_colour, own_name, other_name) in enumerate(
            zip(panels, colours, colours[::-1], names, names[::-1]), start=1):
        rows = _rows(labels)
        fig.add_trace(go.Bar(x=[100 * p for p in own], y=rows, orientation="h", marker_color=colour,
                             name=f"probability under {own_name}", showlegend=True,
                             legendgroup=own_name, customdata=[[i] for i in ids],
                             text=[f"{100 * p:.1f}%" for p in own], textposition="outside", cliponaxis=False,
                             hovertemplate="%{y}: %{x:.2f}% (id %{customdata[0]})<extra>" + plain(own_name) +
                                           "</extra>"), row=1, col=col)
        fig.add_trace(go.Scatter(x=[100 * p for p in other], y=rows, mode="markers", legendgroup=other_name,
                                 name=f"same token under {other_name}", showlegend=True,
                                 marker=dict(symbol="circle-open", size=11, color=other_colour, line=dict(width=2.5)),
                                 hovertemplate="%{y}: %{x:.2f}%<extra>" + plain(other_name) + "</extra>"),
                      row=1, col=col)
        top = max(max(own, default=0), max(other, default=0))
        fig.update_xaxes(range=[0, 100 * top * 1.3 + 0.5], title="probability (%)", fixedrange=True, row=1, col=col)
        fig.update_yaxes(autorange="reversed", tickfont=dict(family="monospace", size=13), fixedrange=True,
                         row=1, col=col)
    n = max(len(p[1]) for p in panels)
    fig.update_layout(**base_layout(title=title, height=max(300, 26 * n + 190)))
    legend_below(fig, bottom=80)
    fig.update_layout(margin=dict(t=80))   # room for the title above the two panel titles
    return fig


def divergence_along(labels: Sequence[str], p_first: Sequence[float], p_second: Sequence[float],
                     js_bits: Sequence[float], names: tuple[str, str], title: str = "") -> go.Figure:
    """Top: each answer token's probability under both prompts. Bottom: the JS divergence at each position."""
    rows = _rows(labels)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.55, 0.45])
    for values, name, colour, symbol in ((p_first, names[0], FIRST, "circle"), (p_second, names[1], SECOND, "diamond")):
        fig.add_trace(go.Scatter(x=rows, y=[100 * v for v in values], mode="lines+markers", name=f"under {name}",
                                 line=dict(color=colour, width=2), marker=dict(symbol=symbol, size=8),
                                 hovertemplate="%{x}: %{y:.1f}%<extra>" + plain(name) + "</extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=rows, y=list(js_bits), name="JS divergence (bits)", marker_color=OKABE_ITO[2],
                         hovertemplate="%{x}: %{y:.3f} bits<extra>JS divergence</extra>"), row=2, col=1)
    fig.update_yaxes(title="p(this token) %", range=[0, 105], fixedrange=True, row=1, col=1)
    fig.update_yaxes(title="JS (bits)", range=[0, max(1e-3, float(np.max(js_bits, initial=0))) * 1.15],
                     fixedrange=True, row=2, col=1)
    fig.update_xaxes(tickangle=-50, tickfont=dict(family="monospace", size=12), fixedrange=True, row=2, col=1)
    fig.update_layout(**base_layout(title=title, height=500, hovermode="x unified",
                                    legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=90, b=10))
    return fig
