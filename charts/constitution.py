"""Chart of the constitutional judge: p(Yes) and p(No) for the original and the revised answer, and the yes-share."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.style import OKABE_ITO, base_layout, legend_below


def judge_scores(p_yes: tuple[float, float], p_no: tuple[float, float], title: str = "") -> go.Figure:
    """Left: the judge's raw first-token probabilities of Yes and No. Right: the yes-share each answer earns."""
    names = ["original answer", "revised answer"]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.14,
                        subplot_titles=["judge: p(Yes) and p(No)", "yes-share"])
    fig.add_trace(go.Bar(x=names, y=[100 * p for p in p_yes], name="p(Yes)", marker_color=OKABE_ITO[2],
                         hovertemplate="%{x}: p(Yes) %{y:.1f}%<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=names, y=[100 * p for p in p_no], name="p(No)", marker_color=OKABE_ITO[5],
                         hovertemplate="%{x}: p(No) %{y:.1f}%<extra></extra>"), row=1, col=1)
    shares = [y / (y + n) if y + n > 0 else 0.5 for y, n in zip(p_yes, p_no)]
    fig.add_trace(go.Bar(x=names, y=[100 * s for s in shares], name="yes-share", marker_color=OKABE_ITO[0],
                         text=[f"{100 * s:.1f}%" for s in shares], textposition="outside",
                         hovertemplate="%{x}: yes-share %{y:.1f}%<extra></extra>"), row=1, col=2)
    fig.add_hline(y=50, line=dict(color="gray", dash="dot"), row=1, col=2)
    fig.update_yaxes(title="%", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 115], row=1, col=2)
    fig.update_layout(**base_layout(title=title, height=380, barmode="group"))
    legend_below(fig, bottom=80)
    return fig
