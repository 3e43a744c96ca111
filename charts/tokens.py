"""Token charts: text as coloured token chips, token counts per tokenizer, embedding-matrix sizes.

Chips are drawn as plotly bars laid out like lines of text, so hovering anywhere on a chip shows its
details. Plotly reads a few HTML tags in labels and hovers, so every string goes through `plain`.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout

# Light tints of Okabe-Ito colours: black text reads on them, and they stand out on light and dark pages.
CHIP_FILLS = ("#A6D6F2", "#F5CD73")          # sky blue / orange, alternating token by token
KIND_FILLS = {"partial": "#E3B3CF", "special": "#C8C8C8", "unknown": "#F2A67A"}
KIND_NAMES = {"partial": "part of a character (bytes in hex)", "special": "special token",
              "unknown": "unknown: [UNK]"}
ROW_PX = 34


@dataclass(frozen=True)
class Chip:
    label: str                 # what the chip shows
    hover: str                 # lines separated by "\n"
    kind: str = "text"         # "text", "partial", "special" or "unknown"
    ident: int = -1            # the token id, kept in the chart data
    break_after: bool = False  # the token ends a line of the text (it holds a newline)
    fill: str | None = None    # a colour of the caller's (e.g. by loss); None: alternate by token


def display_width(label: str) -> int:
    """Columns a label takes in a monospace font: wide (East Asian, emoji) characters take two."""
    width = 0
    for ch in label:
        if unicodedata.combining(ch) or ch in "\u200d\ufe0f":
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return max(width, 1)


def layout_chips(groups: Sequence[tuple[str, Sequence[Chip]]], columns: float,
                 gap: float = 0.35, pad: float = 1.0) -> tuple[list[tuple[int, float, float]], list[tuple[int, str]]]:
    """Place chips in rows like wrapped text: ([(row, x, width) per chip], [(first row, name) per group])."""
    places, heads, row = [], [], 0
    for name, chips in groups:
        heads.append((row, name))
        x = 0.0
        for chip in chips:
            width = display_width(chip.label) + pad
            if x > 0 and x + width > columns:
                row, x = row + 1, 0.0
            places.append((row, x, width))
            x += width + gap
            if chip.break_after:
                row, x = row + 1, 0.0
        if x > 0 or not chips:
            row += 1
    return places, heads


def token_chips(groups: Sequence[tuple[str, Sequence[Chip]]], columns: int = 72, title: str = "",
                font_size: int = 15, height: int | None = None,
                legend: Sequence[tuple[str, str]] = ()) -> go.Figure:
    """Groups of token chips (one group per text or tokenizer), each chip hoverable.

    A group's name labels its first row; give one unnamed group for a single text. Chips with their own
    `fill` are coloured by it; `legend` lists (name, colour) entries that explain those fills.
    """
    chips = [chip for _, group in groups for chip in group]
    places, heads = layout_chips(groups, columns)
    rows = max((r for r, _, _ in places), default=0) + 1
    rows = max(rows, max((r for r, _ in heads), default=0) + 1)
    fills, lines = [], []
    counter = 0
    for chip in chips:
        if chip.fill:
            fills.append(chip.fill)
            lines.append("rgba(0,0,0,0.25)")
        elif chip.kind in KIND_FILLS:
            fills.append(KIND_FILLS[chip.kind])
            lines.append("#D55E00" if chip.kind == "partial" else "rgba(0,0,0,0.35)")
        else:
            fills.append(CHIP_FILLS[counter % 2])
            lines.append("rgba(0,0,0,0.25)")
        counter += 1
    fig = go.Figure(go.Bar(
        y=[r for r, _, _ in places], base=[x for _, x, _ in places], x=[w for _, _, w in places],
        orientation="h", width=0.78,
        marker=dict(color=fills, line=dict(color=lines, width=[2 if c.kind == "partial" else 1 for c in chips])),
        text=[plain(c.label) for c in chips], textposition="inside", insidetextanchor="middle",
        textangle=0, cliponaxis=False,
        textfont=dict(family="ui-monospace, SFMono-Regular, Menlo, Consolas, monospace", size=font_size,
                      color="#111111"),
        customdata=[[c.ident] for c in chips],
        hovertext=["<br>".join(plain(line) for line in c.hover.split("\n")) for c in chips],
        hovertemplate="%{hovertext}<extra></extra>", showlegend=False, name="tokens",
    ))
    for kind in ("partial", "special", "unknown"):
        if any(c.kind == kind for c in chips):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=KIND_NAMES[kind],
                                     marker=dict(symbol="square", size=13, color=KIND_FILLS[kind],
                                                 line=dict(color="#D55E00" if kind == "partial" else "#777",
                                                           width=1.5)),
                                     hoverinfo="skip"))
    for name, colour in legend:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=plain(name), hoverinfo="skip",
                                 marker=dict(symbol="square", size=13, color=colour,
                                             line=dict(color="rgba(0,0,0,0.35)", width=1))))
    named = [(r, n) for r, n in heads if n]
    show_legend = len(fig.data) > 1
    top = (34 if title else 8) + (26 if show_legend else 0)
    fig.update_layout(**base_layout(
        title=dict(text=plain(title), x=0, xanchor="left", font=dict(size=14)) if title else None,
        height=height or rows * ROW_PX + top + 10, bargap=0, showlegend=show_legend, dragmode=False,
        # On a narrow screen every label shrinks to the size the tightest chip needs, never below 6 px.
        uniformtext=dict(minsize=6, mode="show"),
        margin=dict(l=10, r=10, t=top, b=6),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, xanchor="left", font=dict(size=12)),
    ))
    fig.update_xaxes(visible=False, range=[-0.2, columns + 0.2], fixedrange=True)
    fig.update_yaxes(range=[rows - 0.5, -0.5], fixedrange=True, showgrid=False, zeroline=False,
                     tickmode="array", tickvals=[r for r, _ in named], ticktext=[plain(n) for _, n in named],
                     tickfont=dict(family="ui-monospace, Menlo, Consolas, monospace", size=13),
                     visible=bool(named))
    return fig


def token_count_bars(names: Sequence[str], counts: Sequence[int], vocab_sizes: Sequence[int],
                     chars_per_token: Sequence[float], title: str = "") -> go.Figure:
    """Tokens each tokenizer needs for the same text; hover shows vocabulary size and characters per token."""
    colours = [OKABE_ITO[i % 6] for i in range(len(names))]
    fig = go.Figure(go.Bar(
        x=list(counts), y=[plain(n) for n in names], orientation="h", marker_color=colours,
        text=[f"{c:,}" for c in counts], textposition="outside", cliponaxis=False,
        customdata=[[v, f"{c:.2f}"] for v, c in zip(vocab_sizes, chars_per_token)],
        hovertemplate="%{y}<br>%{x:,} tokens<br>vocabulary %{customdata[0]:,}"
                      "<br>%{customdata[1]} characters per token<extra></extra>",
    ))
    fig.update_layout(**base_layout(title=title, height=max(240, 44 * len(names) + 80)))
    fig.update_yaxes(autorange="reversed", title=None, tickfont=dict(size=13))
    fig.update_xaxes(title="tokens for this text", rangemode="tozero",
                     range=[0, max(counts, default=1) * 1.15 + 1])
    return fig


def _human(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    return f"{n / 1e3:.1f} k"


def embedding_bars(names: Sequence[str], vocab_sizes: Sequence[int], parameters: Sequence[int],
                   megabytes: Sequence[float], title: str = "") -> go.Figure:
    """Parameters of the embedding matrix each vocabulary implies, in millions; hover adds vocab and MB."""
    colours = [OKABE_ITO[i % 6] for i in range(len(names))]
    fig = go.Figure(go.Bar(
        x=[p / 1e6 for p in parameters], y=[plain(n) for n in names], orientation="h", marker_color=colours,
        text=[f"{_human(p)} params · {mb:,.0f} MB" for p, mb in zip(parameters, megabytes)],
        textposition="outside", cliponaxis=False,
        customdata=[[v, p, f"{mb:,.1f}"] for v, p, mb in zip(vocab_sizes, parameters, megabytes)],
        hovertemplate="%{y}<br>vocabulary %{customdata[0]:,}<br>%{customdata[1]:,} parameters"
                      "<br>%{customdata[2]} MB<extra></extra>",
    ))
    fig.update_layout(**base_layout(title=title, height=max(240, 44 * len(names) + 80)))
    fig.update_yaxes(autorange="reversed", title=None, tickfont=dict(size=13))
    fig.update_xaxes(title="embedding parameters (millions)", rangemode="tozero",
                     range=[0, max(parameters, default=1) / 1e6 * 1.45])
    return fig
