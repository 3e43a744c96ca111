"""Charts for temperature and truncation sampling: data in, plotly figure out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.distributions import ZERO_WIDTH
from charts.labels import plain
from charts.style import OKABE_ITO, base_layout

ORIGINAL = "#9AA5B1"      # T = 1 reference: a neutral grey-blue that reads on light and dark
SCALED = OKABE_ITO[5]     # vermillion: the distribution at the chosen temperature
KEPT = OKABE_ITO[0]       # blue
RENORMALISED = OKABE_ITO[2]
REMOVED = {"top-k": OKABE_ITO[1], "top-p": OKABE_ITO[3], "min-p": "#8C8C8C", "greedy": "#8C8C8C"}
REMOVED_NAMES = {"top-k": "removed by top-k", "top-p": "removed by top-p", "min-p": "removed by min-p",
                 "greedy": "removed: T = 0 is greedy"}


def _legend_below(height: int, top: int = 50, bottom: int = 90) -> dict:
    """Layout pieces for a horizontal legend under the x-axis title, clear of the title at any width."""
    plot_height = max(100, height - top - bottom)
    return dict(height=height, margin=dict(l=10, r=10, t=top, b=bottom),
                legend=dict(orientation="h", yanchor="top", y=-52 / plot_height, xanchor="left", x=0.0))


MARKS = [OKABE_ITO[4], OKABE_ITO[5]]   # sky blue, vermillion: the two steps compared


def _percent_label(p: float) -> str:
    return f"{p:.1f}%" if p >= 0.05 else f"{p:.2g}%"


def _unique(labels: Sequence[str]) -> list[str]:
    """Token labels as plotly categories: HTML-like tags escaped (plotly reads <b>, <br>, <a>), and an
    invisible rank suffix so equal labels are not merged into one bar."""
    return [plain(label) + ZERO_WIDTH * rank for rank, label in enumerate(labels)]


def temperature_bars(labels: Sequence[str], ids: Sequence[int], original: Sequence[float],
                     scaled: Sequence[float], temperature: float, title: str = "") -> go.Figure:
    """Grouped horizontal bars: each token's probability at T = 1 and at the chosen T, top token first."""
    rows = _unique(labels)
    t_name = "T = 0 (greedy)" if temperature <= 0 else f"T = {temperature:.2f}"
    fig = go.Figure()
    for name, values, colour, text in [
        ("T = 1 (the model's own)", original, ORIGINAL, False),
        (t_name, scaled, SCALED, True),
    ]:
        percent = [100.0 * v for v in values]
        fig.add_trace(go.Bar(
            x=percent, y=rows, orientation="h", name=name, marker_color=colour,
            text=[_percent_label(p) for p in percent] if text else None, textposition="outside",
            customdata=[[i, f"{v:.6f}"] for i, v in zip(ids, values)],
            hovertemplate="token %{y}<br>id %{customdata[0]}<br>" + name +
                          ": probability %{customdata[1]}<extra></extra>",
            cliponaxis=False,
        ))
    top = max([100.0 * v for v in [*original, *scaled]], default=1.0)
    fig.update_layout(**base_layout(
        title=title, barmode="group", bargap=0.25, bargroupgap=0.05,
        **_legend_below(max(300, 40 * len(labels) + 140))))
    fig.update_yaxes(autorange="reversed", title=None, tickfont=dict(family="monospace", size=14))
    fig.update_xaxes(title="probability (%)", range=[0, min(100.0, top) * 1.2 + 1])
    return fig


def entropy_curve(temperatures: Sequence[float], entropies: Sequence[float], top1: Sequence[float],
                  current_t: float, current_entropy: float, current_top1: float,
                  title: str = "") -> go.Figure:
    """Entropy (bits, left axis) and the top token's probability (%, right axis) against T, current T marked."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=list(temperatures), y=list(entropies), name="entropy (bits)", mode="lines",
        line=dict(color=KEPT, width=3),
        hovertemplate="T = %{x:.2f}<br>entropy %{y:.3f} bits<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=list(temperatures), y=[100.0 * p for p in top1], name="top token's probability (%)", mode="lines",
        line=dict(color=OKABE_ITO[1], width=2, dash="dash"), yaxis="y2",
        hovertemplate="T = %{x:.2f}<br>top token %{y:.2f}%<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=[current_t], y=[current_entropy], name="your T", mode="markers",
        marker=dict(color=SCALED, size=14, line=dict(color="white", width=2)),
        hovertemplate="your T = %{x:.2f}<br>entropy %{y:.3f} bits<extra></extra>"))
    top_bits = max([*entropies, current_entropy], default=1.0)
    fig.add_annotation(x=current_t, y=current_entropy, ax=-50 if current_t > 0.4 else 50,
                       ay=45 if current_entropy > 0.6 * top_bits else -45,
                       text=f"T = {current_t:.2f}: {current_entropy:.2f} bits", showarrow=True, arrowhead=0,
                       font=dict(size=13, color=SCALED), bgcolor="rgba(128,128,128,0.12)")
    fig.add_trace(go.Scatter(
        x=[current_t], y=[100.0 * current_top1], mode="markers", yaxis="y2", showlegend=False,
        marker=dict(color=OKABE_ITO[1], size=10, symbol="diamond"),
        hovertemplate="your T = %{x:.2f}<br>top token %{y:.2f}%<extra></extra>"))
    fig.add_vline(x=1.0, line=dict(color="gray", dash="dot", width=1),
                  annotation_text="T = 1", annotation_position="bottom right")
    fig.update_layout(**base_layout(
        title=title, hovermode="closest", **_legend_below(440),
        yaxis=dict(title="entropy (bits)", range=[0, top_bits * 1.15 + 0.1], rangemode="tozero"),
        yaxis2=dict(title="top token's probability (%)", overlaying="y", side="right", range=[0, 105],
                    tickvals=[0, 20, 40, 60, 80, 100], showgrid=False)))
    fig.update_xaxes(title="temperature T", range=[-0.03, max(temperatures, default=2.0) + 0.05])
    return fig


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis spanning 10**lo .. 10**hi: 1-2-5 steps on a short range, decades otherwise."""
    steps = (1, 2, 5) if hi - lo < 2.5 else (1,)
    return [m * 10.0 ** e for e in range(int(np.floor(lo)), int(np.ceil(hi)) + 1) for m in steps
            if lo <= np.log10(m * 10.0 ** e) <= hi]


def survivor_bars(labels: Sequence[str], ids: Sequence[int], probabilities: Sequence[float],
                  status: Sequence[str], renormalised: Sequence[float], cumulative: Sequence[float],
                  title: str = "", log_x: bool = False) -> go.Figure:
    """Top candidates as horizontal bars coloured by which filter kept or removed them.

    `probabilities` are after temperature; `status` is "kept" or the filter that removed the token
    ("top-k", "top-p", "min-p"); green diamonds are the survivors' renormalised probabilities.
    """
    rows = _unique(labels)
    percent = [100.0 * p for p in probabilities]
    fig = go.Figure()
    groups = [("kept", KEPT, "kept")] + [(f, c, REMOVED_NAMES[f]) for f, c in REMOVED.items()]
    for key, colour, name in groups:
        idx = [i for i, s in enumerate(status) if s == key]
        if not idx:
            continue
        fig.add_trace(go.Bar(
            x=[percent[i] for i in idx], y=[rows[i] for i in idx], orientation="h", name=name,
            marker=dict(color=colour, opacity=1.0 if key == "kept" else 0.75),
            customdata=[[ids[i], f"{probabilities[i]:.6f}", f"{100 * cumulative[i]:.2f}", name,
                         f"{100 * renormalised[i]:.2f}%" if key == "kept" else "0 (removed)"] for i in idx],
            hovertemplate="token %{y}<br>id %{customdata[0]}<br>probability at this T %{customdata[1]}"
                          "<br>cumulative mass %{customdata[2]}%<br>%{customdata[3]}"
                          "<br>after renormalising: %{customdata[4]}<extra></extra>",
        ))
    kept = [i for i, s in enumerate(status) if s == "kept"]
    if kept:
        fig.add_trace(go.Scatter(
            x=[100.0 * renormalised[i] for i in kept], y=[rows[i] for i in kept], mode="markers",
            name="renormalised (what is sampled)",
            marker=dict(symbol="diamond", size=10, color=RENORMALISED, line=dict(color="white", width=1)),
            hovertemplate="token %{y}<br>renormalised probability %{x:.2f}%<extra></extra>"))
    top = max([*percent, *[100.0 * r for r in renormalised]], default=1.0)
    fig.update_layout(**base_layout(
        title=title, barmode="overlay", bargap=0.2, **_legend_below(max(340, 22 * len(labels) + 200), bottom=130)))
    fig.update_yaxes(autorange="reversed", title=None, tickfont=dict(family="monospace", size=13),
                     categoryorder="array", categoryarray=rows)
    if log_x:
        smallest = min([v for v in percent if v > 0], default=1e-3)
        lo, hi = np.log10(smallest) - 0.3, np.log10(min(100.0, top)) + 0.15
        fig.update_xaxes(title="probability (%, log scale)", type="log", range=[lo, hi],
                         tickvals=_log_ticks(lo, hi), tickformat="~g")
    else:
        fig.update_xaxes(title="probability (%)", range=[0, min(100.0, top) * 1.08 + 0.5])
    return fig


def entropy_by_position(labels: Sequence[str], entropies: Sequence[float], guesses: Sequence[str],
                        marks: Sequence[tuple[int, str]], title: str = "") -> go.Figure:
    """One bar per step of the text: the entropy of the prediction made after each token.

    `marks` are (position, name) pairs to highlight, coloured blue then orange.
    """
    rows = _unique(labels)
    colours = [ORIGINAL] * len(labels)
    for (idx, _), colour in zip(marks, MARKS):
        colours[idx] = colour
    fig = go.Figure(go.Bar(
        x=rows, y=list(entropies), marker_color=colours,
        customdata=[[i + 1, plain(g)] for i, g in enumerate(guesses)],
        hovertemplate="after token %{customdata[0]} %{x}<br>entropy %{y:.2f} bits"
                      "<br>top guess %{customdata[1]}<extra></extra>",
    ))
    for (idx, name), colour in zip(marks, MARKS):
        fig.add_annotation(x=rows[idx], y=entropies[idx], text=name, showarrow=True, arrowhead=0, ay=-28,
                           font=dict(color=colour, size=13))
    fig.update_layout(**base_layout(title=title, height=300, bargap=0.15))
    fig.update_xaxes(title="the model predicts the next token after ...", tickangle=-45,
                     tickfont=dict(family="monospace", size=12), type="category")
    fig.update_yaxes(title="entropy (bits)", rangemode="tozero",
                     range=[0, max(entropies, default=1.0) * 1.25 + 0.1])
    return fig
