"""Charts of the prompt-injection page: the context with its parts coloured, the attack's success per defence
setting (with the defence's cost on the clean task), the classifier's sentence scores, sampled answer rates."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout, legend_below
from charts.tokens import Chip, token_chips

# Light tints (black text reads on them in both themes), one per part of the context.
PART_FILLS = {"system": "#F5CD73", "instruction": "#A6D6F2", "document": "#E6CCE0", "attack": "#F08A6C",
              "assistant": "#9FDFC4"}
PART_NAMES = {"system": "system (template default)", "instruction": "app's instruction", "document": "document (data)",
              "attack": "attacker's text", "assistant": "assistant"}
ATTACK, CLEAN, CUT = OKABE_ITO[5], OKABE_ITO[0], OKABE_ITO[2]


def context_chips(groups: Sequence[tuple[str, Sequence[tuple[int, str, str, bool, str]]]], columns: int = 64,
                  title: str = "") -> go.Figure:
    """One row group per turn; each token (id, label, part, is_special, hover) coloured by its part."""
    seen, chip_groups = [], []
    for name, tokens in groups:
        chips = []
        for ident, label, part, special, hover in tokens:
            if not special and part not in seen:
                seen.append(part)
            chips.append(Chip(label=label, hover=hover, kind="special" if special else "text", ident=ident,
                              fill=None if special else PART_FILLS.get(part, "#DDDDDD")))
        chip_groups.append((name, chips))
    legend = [(PART_NAMES[p], PART_FILLS[p]) for p in PART_FILLS if p in seen]
    return token_chips(chip_groups, columns=columns, title=title, legend=legend, font_size=13)


def success_by_setting(settings: Sequence[str], p_attack: Sequence[float], p_baseline: float,
                       reference: Sequence[float], marker: str, title: str = "") -> go.Figure:
    """Left: P(answer starts with the marker) per defence setting, log scale, with the clean document's value as
    a dashed line. Right: the reference summary's per-token probability on the clean document (the task)."""
    rows = [plain(s) for s in settings]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.2, column_widths=[0.58, 0.42], subplot_titles=[
        "Attack succeeds (log scale)", "Clean task"])
    fig.add_trace(go.Bar(x=list(p_attack), y=rows, orientation="h", marker_color=ATTACK, name="attacked document",
                         text=[f"{p:.2%}" if p >= 1e-4 else f"{p:.1e}" for p in p_attack], textposition="outside",
                         cliponaxis=False, hovertemplate="%{y}: %{x:.3e}<extra>attack succeeds</extra>"), 1, 1)
    fig.add_vline(x=max(p_baseline, 1e-30), line_dash="dash", line_color="#888888", row=1, col=1)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(dash="dash", color="#888888"),
                             name=plain(f"clean document, no defence: {p_baseline:.1e}"), hoverinfo="skip"))
    fig.add_trace(go.Bar(x=list(reference), y=rows, orientation="h", marker_color=CLEAN, name="clean document",
                         text=[f"{p:.1%}" for p in reference], textposition="outside", cliponaxis=False,
                         hovertemplate="%{y}: %{x:.2%}<extra>reference summary</extra>"), 1, 2)
    low = min([p for p in list(p_attack) + [p_baseline] if p > 0] or [1e-12])
    fig.update_xaxes(type="log", range=[np.log10(low) - 0.5, 0.6], exponentformat="power", fixedrange=True,
                     row=1, col=1)
    fig.update_xaxes(range=[0, max(max(reference, default=0) * 1.35, 0.05)], tickformat=".0%",
                     fixedrange=True, row=1, col=2)
    fig.update_yaxes(autorange="reversed", fixedrange=True)
    fig.update_yaxes(showticklabels=False, row=1, col=2)
    fig.update_layout(**base_layout(title=title, height=110 + 48 * len(rows), bargap=0.3))
    legend_below(fig, bottom=70)
    fig.update_layout(margin=dict(t=80))
    return fig


def classifier_scores(groups: Sequence[tuple[str, Sequence[str], Sequence[float]]], threshold: float,
                      title: str = "") -> go.Figure:
    """Each document sentence's best cosine similarity to a known injection phrasing; at or above the
    threshold it is removed. One group per document."""
    labels, scores, colours, hovers = [], [], [], []
    for name, sentences, values in groups:
        for i, (sentence, score) in enumerate(zip(sentences, values)):
            short = sentence if len(sentence) <= 48 else sentence[:46] + "…"
            labels.append(plain(f"{name} {i + 1}: {short}"))
            scores.append(float(score))
            colours.append(ATTACK if score >= threshold else CLEAN)
            hovers.append(plain(sentence))
    fig = go.Figure(go.Bar(x=scores, y=labels, orientation="h", marker_color=colours, hovertext=hovers,
                           text=[f"{s:.2f}" for s in scores], textposition="outside", cliponaxis=False,
                           hovertemplate="%{hovertext}<br>cosine %{x:.3f}<extra></extra>", showlegend=False))
    fig.add_vline(x=threshold, line_dash="dash", line_color=ATTACK)
    for name, colour in ((f"removed (≥ {threshold:.2f})", ATTACK), ("kept", CLEAN)):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                                 marker=dict(symbol="square", size=12, color=colour)))
    fig.update_xaxes(range=[min(0.0, min(scores, default=0)), 1.05], fixedrange=True)
    fig.update_yaxes(autorange="reversed", fixedrange=True, tickfont=dict(size=12))
    fig.update_layout(**base_layout(title=title, height=120 + 26 * len(labels)))
    legend_below(fig, bottom=70)
    return fig


def sampled_rates(settings: Sequence[str], marker_rates: Sequence[float], keyword_rates: Sequence[float],
                  marker: str, keyword: str, n: int, title: str = "") -> go.Figure:
    """Share of sampled answers containing the marker (attacked document) and the keyword (clean document)."""
    rows = [plain(s) for s in settings]
    fig = go.Figure()
    for values, name, colour in ((marker_rates, f"attacked: answers containing '{marker}'", ATTACK),
                                 (keyword_rates, f"clean: answers containing '{keyword}'", CLEAN)):
        fig.add_trace(go.Bar(x=[100 * v for v in values], y=rows, orientation="h", name=plain(name),
                             marker_color=colour, text=[f"{round(v * n)}/{n}" for v in values],
                             textposition="outside", cliponaxis=False,
                             hovertemplate="%{y}: %{x:.0f}%<extra></extra>"))
    fig.update_xaxes(range=[0, 118], ticksuffix="%", fixedrange=True)
    fig.update_yaxes(autorange="reversed", fixedrange=True)
    fig.update_layout(**base_layout(title=title, height=130 + 56 * len(rows), barmode="group"))
    legend_below(fig, bottom=70)
    return fig
