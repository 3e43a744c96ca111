"""Shared chart conventions: colour-blind-safe colours and a layout that reads in light and dark themes."""
from __future__ import annotations

# Okabe-Ito palette: distinguishable with the common forms of colour blindness.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
PRIMARY = OKABE_ITO[0]
ACCENT = OKABE_ITO[1]
SEQUENTIAL = "Viridis"   # perceptually uniform and colour-blind safe
DIVERGING = "RdBu_r"     # signed values: blue negative, white zero, red positive (safe for red-green blindness)


def base_layout(**extra) -> dict:
    """Transparent backgrounds so Streamlit's theme (light or dark) shows through; compact margins."""
    layout = dict(margin=dict(l=10, r=10, t=40, b=10), paper_bgcolor="rgba(0,0,0,0)",
                  plot_bgcolor="rgba(0,0,0,0)", hoverlabel=dict(font_size=13))
    layout.update(extra)
    return layout


def legend_below(fig, bottom: int = 60) -> None:
    """A horizontal legend under the plot: on a narrow window a long legend wraps downwards there instead of
    growing over the title (plotly widens the bottom margin to fit it)."""
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22, x=0, xanchor="left"),
                      margin=dict(l=10, r=10, t=50, b=bottom))
