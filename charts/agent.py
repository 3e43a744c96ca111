"""Charts of an agent loop: every action's probability at every decision, and the context against its budget."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import OKABE_ITO, SEQUENTIAL, base_layout


def decision_grid(names: Sequence[str], probabilities: Sequence[Sequence[float]], chosen: Sequence[int],
                  forced: Sequence[bool], title: str = "") -> go.Figure:
    """One row per step, one column per action: P(action) in %, the action taken marked (and whether forced)."""
    p = 100 * np.asarray(probabilities, dtype=float).reshape(len(chosen), len(names))
    rows = [f"step {i + 1}" for i in range(len(chosen))]
    text = [[(("forced ▶ " if forced[r] else "▶ ") if c == chosen[r] else "") + f"{p[r, c]:.1f}%"
             for c in range(len(names))] for r in range(len(chosen))]
    fig = go.Figure(go.Heatmap(z=p, x=[plain(n) for n in names], y=rows, text=text, texttemplate="%{text}",
                               textfont=dict(size=14), colorscale=SEQUENTIAL, zmin=0, zmax=100,
                               colorbar=dict(title="%", thickness=12), xgap=3, ygap=3,
                               hovertemplate="%{y}, %{x}: %{z:.2f}%<extra></extra>"))
    fig.update_layout(**base_layout(title=title, height=110 + 46 * len(rows)))
    fig.update_xaxes(fixedrange=True, tickfont=dict(size=14))
    fig.update_yaxes(autorange="reversed", fixedrange=True)
    return fig


def budget_bars(before: Sequence[int], added: Sequence[int], budget: int, reserve: int, title: str = "") -> go.Figure:
    """Tokens in the context after each step (the prompt first), split into what was there and what the step added;
    the budget, and the line past which no further step may start (budget minus one step's reserve)."""
    rows = ["prompt"] + [f"step {i}" for i in range(1, len(added))]
    fig = go.Figure()
    fig.add_bar(y=rows, x=list(before), orientation="h", name="context before the step", marker_color=OKABE_ITO[0],
                hovertemplate="%{y}: %{x:,} tokens already in the context<extra></extra>")
    fig.add_bar(y=rows, x=list(added), orientation="h", name="added by the step (thought, call, observation)",
                marker_color=OKABE_ITO[1], text=[f"{b + a:,} of {budget:,}" for b, a in zip(before, added)],
                textposition="outside", cliponaxis=False,
                hovertemplate="%{y}: +%{x:,} tokens<extra></extra>")
    fig.add_vline(x=budget, line=dict(color=OKABE_ITO[5], width=2),
                  annotation_text=f"budget {budget:,}", annotation_position="top left")
    if 0 < budget - reserve:
        fig.add_vline(x=budget - reserve, line=dict(color="#888888", dash="dash"),
                      annotation_text="no new step past here", annotation_position="bottom left")
    # The legend sits between the title and the bars: below the plot it would collide with the axis title
    # on a chart this short.
    fig.update_layout(**base_layout(title=dict(text=title, y=0.98, yanchor="top"), height=170 + 40 * len(rows),
                                    barmode="stack", bargap=0.35, margin=dict(l=10, r=10, t=90, b=10),
                                    legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom",
                                                traceorder="normal")))
    fig.update_xaxes(title="tokens in the context", range=[0, budget * 1.18], fixedrange=True)
    fig.update_yaxes(autorange="reversed", fixedrange=True)
    return fig
