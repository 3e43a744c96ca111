"""Charts for knowledge distillation: soft targets against the hard label, the T^2 factor, and learning curves.

One colour code throughout: blue is the hard label (and the student trained on it), orange the teacher's soft
targets (and the student trained on them), grey the teacher as it is at T = 1.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.distributions import ZERO_WIDTH
from charts.labels import plain
from charts.style import OKABE_ITO, base_layout

HARD = OKABE_ITO[0]        # blue
SOFT = OKABE_ITO[1]        # orange
TEACHER = "#9AA5B1"        # grey-blue: reads on light and dark backgrounds
LOG_FLOOR = 1e-6           # percent: the left edge of a log axis (smaller bars start there)


def _legend_below(fig: go.Figure, height: int, top: int = 50, bottom: int = 95) -> None:
    plot = max(100, height - top - bottom)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=top, b=bottom),
                      legend=dict(orientation="h", yanchor="top", y=-56 / plot, xanchor="left", x=0.0))


def _percent_label(p: float) -> str:
    return f"{p:.1f}%" if p >= 0.05 else f"{p:.2g}%"


def soft_target_bars(labels: Sequence[str], ids: Sequence[int], teacher: Sequence[float], soft: Sequence[float],
                     hard_row: int, temperature: float, log_scale: bool = False, title: str = "") -> go.Figure:
    """Per token (rows, the teacher's favourite first): the teacher at T = 1, its soft targets at T, and the
    hard label, which puts 100% on the one token that actually came next (row `hard_row`)."""
    rows = [plain(label) + ZERO_WIDTH * rank for rank, label in enumerate(labels)]
    fig = go.Figure()
    hard = [100.0 if i == hard_row else None for i in range(len(labels))]
    for name, values, colour, with_text in [
        ("hard label: the token that came next (100%)", hard, HARD, False),
        ("teacher at T = 1", [100.0 * v for v in teacher], TEACHER, False),
        (f"soft targets at T = {temperature:g}", [100.0 * v for v in soft], SOFT, True),
    ]:
        fig.add_trace(go.Bar(
            x=values, y=rows, orientation="h", name=name, marker_color=colour,
            text=[_percent_label(v) for v in values] if with_text else None, textposition="outside",
            textfont=dict(size=12),
            customdata=[[i, "-" if v is None else f"{v / 100:.6g}"] for i, v in zip(ids, values)],
            hovertemplate="token %{y}<br>id %{customdata[0]}<br>" + name + ": %{customdata[1]}<extra></extra>",
            cliponaxis=False))
    fig.update_layout(**base_layout(title=title, barmode="group", bargap=0.2, bargroupgap=0.04,
                                    uniformtext=dict(minsize=11, mode="show")))
    _legend_below(fig, max(320, 34 * len(labels) + 150))
    fig.update_yaxes(autorange="reversed", title=None, tickfont=dict(family="monospace", size=14))
    if log_scale:
        smallest = min([100.0 * v for v in (*teacher, *soft) if v > 0], default=1.0)
        low = np.log10(max(LOG_FLOOR, smallest / 3))
        ticks = [10.0 ** e for e in range(int(np.ceil(low)), 3)]
        fig.update_xaxes(type="log", title="probability (%, log scale)", range=[low, np.log10(100) + 0.35],
                         tickvals=ticks, ticktext=[f"{t:g}%" for t in ticks])
    else:
        fig.update_xaxes(title="probability (%)", range=[0, 100 * 1.16])
    return fig


def gradient_curves(temperatures: Sequence[float], without: Sequence[float], scaled: Sequence[float],
                    current_t: float, current: tuple[float, float], title: str = "") -> go.Figure:
    """The soft term's gradient on the student's logits against T, with and without the T^2 factor (log axis)."""
    fig = go.Figure()
    for name, values, colour, dash in [("KL alone", without, TEACHER, "dash"),
                                       ("T² × KL (Hinton et al.)", scaled, SOFT, "solid")]:
        fig.add_trace(go.Scatter(
            x=list(temperatures), y=list(values), name=name, mode="lines", line=dict(color=colour, width=3, dash=dash),
            hovertemplate="T = %{x:.2f}<br>" + name + ": gradient size %{y:.4g}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=[current_t, current_t], y=list(current), name="your T", mode="markers",
        marker=dict(color=[TEACHER, SOFT], size=13, line=dict(color="white", width=2)),
        hovertemplate="your T = %{x:.2f}<br>gradient size %{y:.4g}<extra></extra>"))
    fig.update_layout(**base_layout(title=title))
    _legend_below(fig, 360)
    fig.update_xaxes(title="distillation temperature T")
    fig.update_yaxes(type="log", title="size of the gradient on the student's logits", dtick=1,
                     exponentformat="power")
    return fig


def learning_curves(hard_steps: Sequence[int], hard: Sequence[float], soft_steps: Sequence[int], soft: Sequence[float],
                    y_title: str, train_hard: Sequence[float] | None = None, train_soft: Sequence[float] | None = None,
                    teacher: float | None = None, teacher_name: str = "", percent: bool = False,
                    title: str = "") -> go.Figure:
    """Held-out curves of the two students against training steps; optional training-set curves (dotted) and
    the teacher's own value as a reference line."""
    scale = 100.0 if percent else 1.0
    fig = go.Figure()
    series = [("hard-label student, held out", hard_steps, hard, HARD, "solid"),
              ("soft-target student, held out", soft_steps, soft, SOFT, "solid")]
    if train_hard is not None and train_soft is not None:
        series += [("hard-label student, on its training text", hard_steps, train_hard, HARD, "dot"),
                   ("soft-target student, on its training text", soft_steps, train_soft, SOFT, "dot")]
    steps = [*hard_steps, *soft_steps]
    unit = "%" if percent else ""
    for name, xs, values, colour, dash in series:
        fig.add_trace(go.Scatter(
            x=list(xs), y=[scale * v for v in values], name=name, mode="lines",
            line=dict(color=colour, width=3 if dash == "solid" else 2, dash=dash),
            hovertemplate="step %{x}<br>" + name + f": %{{y:.3f}}{unit}<extra></extra>"))
    if teacher is not None:
        fig.add_trace(go.Scatter(
            x=[min(steps), max(steps)], y=[scale * teacher] * 2, name=teacher_name, mode="lines",
            line=dict(color=TEACHER, width=2, dash="dash"),
            hovertemplate=teacher_name + f": %{{y:.3f}}{unit}<extra></extra>"))
    fig.update_layout(**base_layout(title=title))
    _legend_below(fig, 430, bottom=120)
    fig.update_xaxes(title="training step (minibatches of positions)")
    fig.update_yaxes(title=y_title, rangemode="tozero")
    return fig
