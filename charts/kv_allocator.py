"""PagedAttention charts: KV memory over a batch's life, each request's reservation against its pages, the physical
page pool with its block tables, the batch that fits a budget, and prompt pages shared by parallel samples."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.style import OKABE_ITO, base_layout, legend_below

USED, FUTURE, NEVER, SLACK, SHARED = OKABE_ITO[0], OKABE_ITO[4], "#999999", OKABE_ITO[1], OKABE_ITO[3]
# Colours dark enough for white labels: Okabe-Ito's darker ones, then Tol's muted ones.
POOL_COLOURS = [OKABE_ITO[0], OKABE_ITO[5], OKABE_ITO[2], "#882255", "#332288", "#117733", "#AA4499", "#999933",
                OKABE_ITO[3], "#44AA99", OKABE_ITO[1]]
FREE_PAGE = "rgba(153,153,153,0.25)"


def memory_over_time(iterations: Sequence[int], used_mb: Sequence[float], future_mb: Sequence[float],
                     never_mb: Sequence[float], paged_mb: Sequence[float], title: str = "") -> go.Figure:
    """Contiguous memory stacked as used / reserved for tokens still to come / never used, and the paged total as
    a line just above the used memory."""
    fig = go.Figure()
    hover = "iteration %{x}: %{y:,.2f} MB<extra>%{fullData.name}</extra>"
    for values, name, colour in ((used_mb, "holds tokens", USED), (future_mb, "contiguous: reserved for tokens to come",
                                                                     FUTURE),
                                 (never_mb, "contiguous: never used (internal fragmentation)", NEVER)):
        fig.add_trace(go.Scatter(x=list(iterations), y=list(values), name=name, stackgroup="contiguous", mode="lines",
                                 line=dict(width=0.5, color=colour), fillcolor=colour, hovertemplate=hover))
    fig.add_trace(go.Scatter(x=list(iterations), y=list(paged_mb), name="paged: pages in use", mode="lines",
                             line=dict(color=SLACK, width=3, dash="dash"), hovertemplate=hover))
    fig.update_layout(**base_layout(title=title, height=380, hovermode="x unified"))
    legend_below(fig, bottom=90)
    fig.update_xaxes(title="iteration (1 = prefill, then one token per request per iteration)", rangemode="tozero")
    fig.update_yaxes(title="KV memory (MB)", rangemode="tozero")
    return fig


def reservations_and_pages(names: Sequence[str], held: Sequence[int], final: Sequence[int], reserved: Sequence[int],
                           page_size: int, title: str = "") -> go.Figure:
    """Each request at one iteration, in tokens: left its contiguous slab (held, still to come, never used), right
    its pages (full pages, and the last page's filled and empty slots)."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("Contiguous: one slab per request", f"Paged: {page_size}-token pages"))
    names = list(names)
    bar = dict(orientation="h", y=names, hoverinfo="skip")
    fig.add_trace(go.Bar(x=list(held), base=[0] * len(names), marker_color=USED, name="holds tokens", **bar), 1, 1)
    fig.add_trace(go.Bar(x=[f - h for f, h in zip(final, held)], base=list(held), marker_color=FUTURE,
                         name="reserved for tokens to come", **bar), 1, 1)
    fig.add_trace(go.Bar(x=[r - f for r, f in zip(reserved, final)], base=list(final), marker_color=NEVER,
                         name="reserved, never used", **bar), 1, 1)
    full_y, full_base, last_y, last_base, last_fill, empty = [], [], [], [], [], []
    for name, tokens in zip(names, held):
        pages = -(-tokens // page_size)
        for j in range(pages - 1):
            full_y.append(name)
            full_base.append(j * page_size)
        if pages:
            last_y.append(name)
            last_base.append((pages - 1) * page_size)
            last_fill.append(tokens - (pages - 1) * page_size)
            empty.append(pages * page_size - tokens)
    edge = dict(line=dict(color="rgba(255,255,255,0.9)", width=1))
    fig.add_trace(go.Bar(y=full_y, x=[page_size] * len(full_y), base=full_base, orientation="h", showlegend=False,
                         marker=dict(color=USED, **edge), hoverinfo="skip"), 1, 2)
    fig.add_trace(go.Bar(y=last_y, x=last_fill, base=last_base, orientation="h", showlegend=False,
                         marker=dict(color=USED, **edge), hoverinfo="skip"), 1, 2)
    fig.add_trace(go.Bar(y=last_y, x=empty, base=[b + f for b, f in zip(last_base, last_fill)], orientation="h",
                         name="last page: empty slots", marker=dict(color=SLACK, **edge), hoverinfo="skip"), 1, 2)
    fig.update_layout(**base_layout(title=title, height=150 + 26 * len(names), barmode="overlay", bargap=0.25))
    legend_below(fig, bottom=80)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="tokens", rangemode="tozero")
    fig.update_xaxes(matches="x", row=1, col=2)
    return fig


def page_pool(pages: Sequence[int], columns: int, colour_keys: Sequence[int], labels: Sequence[str],
              hovers: Sequence[str], shared: Sequence[bool], high_water: int, title: str = "") -> go.Figure:
    """The physical pool, page by page in rows of `columns` (a heatmap, so the cells scale with the window): each
    page in use coloured by the sequence that owns it and labelled with it, shared pages in one colour, free
    pages faint."""
    rows = max(1, -(-high_water // columns))
    palette = [FREE_PAGE, SHARED, *POOL_COLOURS]
    z = [[None] * columns for _ in range(rows)]
    text = [[""] * columns for _ in range(rows)]
    hover = [[""] * columns for _ in range(rows)]
    for p in range(rows * columns):
        if p < high_water:
            z[p // columns][p % columns] = 0
            hover[p // columns][p % columns] = f"page {p}: free"
    for p, key, label, note, is_shared in zip(pages, colour_keys, labels, hovers, shared):
        z[p // columns][p % columns] = 1 if is_shared else 2 + key % len(POOL_COLOURS)
        text[p // columns][p % columns] = label
        hover[p // columns][p % columns] = note
    n = len(palette)
    scale = [pair for i, c in enumerate(palette) for pair in ([i / n, c], [(i + 1) / n, c])]
    fig = go.Figure(go.Heatmap(z=[[None if v is None else v + 0.5 for v in row] for row in z], text=text,
                               texttemplate="%{text}", textfont=dict(size=9, color="white"), hovertext=hover,
                               hoverinfo="text", colorscale=scale, zmin=0, zmax=n, showscale=False, xgap=2, ygap=2))
    fig.update_layout(**base_layout(title=title, height=110 + 26 * rows))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(autorange="reversed", title="first page of row", tickmode="array", tickvals=list(range(rows)),
                     ticktext=[str(r * columns) for r in range(rows)], showgrid=False, zeroline=False)
    return fig


def batch_vs_budget(contiguous_peak_mb: Sequence[float], paged_peak_mb: Sequence[float], budget_mb: float,
                    title: str = "") -> go.Figure:
    """Requests that run at once against the KV budget: n fits once the budget covers the first n's peak."""
    fig = go.Figure()
    for peaks, name, colour in ((contiguous_peak_mb, "contiguous (reserve the maximum)", NEVER),
                                (paged_peak_mb, "paged", USED)):
        xs, ys = list(peaks), list(range(1, len(peaks) + 1))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", line_shape="hv", name=name,
                                 line=dict(color=colour, width=3), marker=dict(size=5),
                                 hovertemplate="%{y} requests need %{x:,.1f} MB<extra>%{fullData.name}</extra>"))
    top = len(paged_peak_mb)   # a trace, not a shape: shapes and annotations take log10 units on a log axis
    fig.add_trace(go.Scatter(x=[budget_mb, budget_mb], y=[0, top], mode="lines+text", name="your budget",
                             line=dict(color=SLACK, width=2, dash="dash"), text=["", f"budget {budget_mb:,.0f} MB"],
                             textposition="top left", hoverinfo="skip"))
    fig.update_layout(**base_layout(title=title, height=360))
    legend_below(fig, bottom=70)
    ticks = [t for t in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
             if t <= 2 * max([budget_mb, *contiguous_peak_mb, *paged_peak_mb])]
    fig.update_xaxes(title="KV memory the batch needs at its peak (MB, log scale)", type="log", tickvals=ticks,
                     ticktext=[f"{t:,}" for t in ticks])
    fig.update_yaxes(title="requests running at once", rangemode="tozero")
    return fig


def sharing_over_time(shared_mb: Sequence[float], private_mb: Sequence[float], title: str = "") -> go.Figure:
    its = list(range(1, len(shared_mb) + 1))
    fig = go.Figure()
    hover = "iteration %{x}: %{y:,.2f} MB<extra></extra>"
    fig.add_trace(go.Scatter(x=its, y=list(private_mb), name="each sample stores the prompt", mode="lines",
                             line=dict(color=NEVER, width=3), hovertemplate=hover))
    fig.add_trace(go.Scatter(x=its, y=list(shared_mb), name="prompt pages shared (copy-on-write)", mode="lines",
                             line=dict(color=SHARED, width=3), hovertemplate=hover))
    fig.update_layout(**base_layout(title=title, height=340))
    legend_below(fig, bottom=70)
    fig.update_xaxes(title="iteration", rangemode="tozero")
    fig.update_yaxes(title="pages in use (MB)", rangemode="tozero")
    return fig
