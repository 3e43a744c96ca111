"""Figure builders for the model-formats page (pure: no Streamlit, no model)."""
from __future__ import annotations

import plotly.graph_objects as go

from charts.style import OKABE_ITO, base_layout


def bytes_by_type_bars(types: list[str], megabytes: list[float], weights_m: list[float],
                       bits: list[float], title: str) -> go.Figure:
    """Where the file's bytes go, one bar per ggml type, labelled with its bits per weight."""
    fig = go.Figure(go.Bar(
        x=megabytes, y=types, orientation="h", marker_color=OKABE_ITO[:len(types)],
        text=[f"{mb:.1f} MB · {b:g} bits/weight" for mb, b in zip(megabytes, bits)], textposition="auto",
        customdata=list(zip(weights_m, bits)),
        hovertemplate="%{y}: %{x:.2f} MB<br>%{customdata[0]:.2f} M weights<br>"
                      "%{customdata[1]:.2f} bits per weight<extra></extra>"))
    fig.update_layout(**base_layout(title=title, height=230, xaxis_title="megabytes in the file",
                                    yaxis=dict(autorange="reversed")))
    return fig
