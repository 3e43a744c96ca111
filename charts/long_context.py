"""Context-window charts: measured prefill time and cache bytes against length; perplexity against context given."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.labels import plain
from charts.style import OKABE_ITO, base_layout

MEASURED, FORMULA, PER_TOKEN = OKABE_ITO[0], OKABE_ITO[1], OKABE_ITO[5]


def prefill_and_cache(lengths: Sequence[int], prefill_s: Sequence[float], per_token_ms: Sequence[float],
                      kv_mb: Sequence[float], formula_lengths: Sequence[int], formula_mb: Sequence[float],
                      context_limit: int, title: str = "") -> go.Figure:
    """Three panels: prefill seconds; milliseconds per prompt token; cache MB, measured and by formula, with the
    model's trained context marked."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.09,
                        subplot_titles=("prefill time (s)", "prefill time per prompt token (ms)",
                                        "KV cache after the prefill (MB)"))
    x = list(lengths)
    fig.add_trace(go.Scatter(x=x, y=list(prefill_s), name="prefill, measured", mode="lines+markers",
                             line=dict(color=MEASURED, width=3), marker=dict(size=9),
                             hovertemplate="%{x:,} tokens: %{y:.2f} s<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=list(per_token_ms), name="per prompt token, measured", mode="lines+markers",
                             line=dict(color=PER_TOKEN, width=3), marker=dict(size=9, symbol="square"),
                             hovertemplate="%{x:,} tokens: %{y:.2f} ms per token<extra></extra>"), row=1, col=2)
    fig.add_trace(go.Scatter(x=list(formula_lengths), y=list(formula_mb), name="cache, formula (from the config)",
                             mode="lines", line=dict(color=FORMULA, width=2, dash="dot"),
                             hovertemplate="%{x:,} tokens: %{y:,.1f} MB by formula<extra></extra>"), row=1, col=3)
    fig.add_trace(go.Scatter(x=x, y=list(kv_mb), name="cache, measured (real tensors)", mode="markers",
                             marker=dict(color=MEASURED, size=11, symbol="circle-open", line=dict(width=2.5)),
                             hovertemplate="%{x:,} tokens: %{y:,.1f} MB measured<extra></extra>"), row=1, col=3)
    fig.add_vline(x=context_limit, line=dict(color="gray", dash="dash", width=1.5), row=1, col=3)
    fig.add_annotation(x=context_limit, xref="x3", y=1, yref="y3 domain", text=f"trained context {context_limit:,}",
                       showarrow=False, xanchor="right", yanchor="top", font=dict(size=11, color="gray"))
    for col in (1, 2, 3):
        fig.update_xaxes(title="tokens", rangemode="tozero", row=1, col=col)
        fig.update_yaxes(rangemode="tozero", row=1, col=col)
    fig.update_layout(**base_layout(title=title, height=400, legend=dict(orientation="h", y=-0.25, x=0)))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    return fig


def perplexity_vs_context(contexts: Sequence[int], perplexities: Sequence[float], scored: int,
                          title: str = "") -> go.Figure:
    """Perplexity of the same scored tokens as the model is given more of the text before them (log x)."""
    fig = go.Figure(go.Scatter(
        x=list(contexts), y=list(perplexities), mode="lines+markers+text", line=dict(color=MEASURED, width=3),
        marker=dict(size=10), text=[f"{p:.1f}" for p in perplexities], textposition="top right",
        hovertemplate="%{x:,} earlier tokens given: perplexity %{y:.2f}<extra></extra>",
        name=f"perplexity of the last {scored} tokens"))
    fig.update_xaxes(type="log", title="earlier tokens the model is given (log scale)", tickvals=list(contexts),
                     ticktext=[f"{c:,}" for c in contexts])
    fig.update_yaxes(title=f"perplexity of the last {scored} tokens", rangemode="tozero")
    fig.update_layout(**base_layout(title=title, height=380, showlegend=False))
    fig.update_layout(margin=dict(l=10, r=10, t=60, b=10))
    return fig


def window_sizes(names: Sequence[str], contexts: Sequence[int], cache_gb: Sequence[float], live: str,
                 title: str = "") -> go.Figure:
    """Left: each model's trained context (log scale). Right: its KV cache for one full-window sequence."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.22,
                        subplot_titles=("context window (tokens, log scale)", "KV cache for one full window (GB)"))
    colours = [OKABE_ITO[1] if n == live else MEASURED for n in names]
    fig.add_trace(go.Bar(y=list(names), x=list(contexts), orientation="h", marker_color=colours,
                         text=[f"{c:,}" for c in contexts], textposition="auto",
                         hovertemplate="%{y}: %{x:,} tokens<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(y=list(names), x=list(cache_gb), orientation="h", marker_color=colours,
                         text=[f"{g:.2f}" for g in cache_gb], textposition="auto",
                         hovertemplate="%{y}: %{x:.2f} GB<extra></extra>"), row=1, col=2)
    ticks = [2 ** p for p in range(10, 21) if min(contexts) / 2 <= 2 ** p <= max(contexts) * 2]
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[f"{t // 1024}k" for t in ticks], row=1, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_yaxes(autorange="reversed", showticklabels=False, row=1, col=2)
    fig.update_layout(**base_layout(title=title, height=80 + 48 * len(names), showlegend=False))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    return fig


def needle_heatmap(lengths: Sequence[int], depths: Sequence[float], probabilities, found, title: str = "") -> go.Figure:
    """Rows: where the needle sits; columns: haystack length; colour: the answer's probability (✓ = top choice)."""
    z = [[probabilities[j][i] for j in range(len(lengths))] for i in range(len(depths))]
    text = [[(f"{probabilities[j][i]:.2f} {'✓' if found[j][i] else '✗'}" if probabilities[j][i] is not None else "")
             for j in range(len(lengths))] for i in range(len(depths))]
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{n:,} tokens" for n in lengths], y=[f"{100 * d:.0f}%" for d in depths], zmin=0, zmax=1,
        colorscale="Viridis", text=text, texttemplate="%{text}", textfont=dict(size=14),
        colorbar=dict(title="P(answer)", thickness=12),
        hovertemplate="haystack %{x}, needle at depth %{y}<br>P(answer) = %{z:.3f}<extra></extra>"))
    fig.update_xaxes(title="haystack length", type="category")
    fig.update_yaxes(title="needle depth (0% = first sentence)", type="category", autorange="reversed")
    fig.update_layout(**base_layout(title=title, height=360))
    fig.update_layout(margin=dict(l=10, r=10, t=60, b=10))
    return fig


def needle_attention(attention: Sequence[float], tokens: Sequence[str], needle: tuple[int, int],
                     title: str = "") -> go.Figure:
    """Mean attention of the answer step over every earlier position, with the needle's span shaded."""
    x = list(range(1, len(attention) + 1))
    fig = go.Figure(go.Scatter(x=x, y=list(attention), mode="lines", line=dict(color=MEASURED, width=1.5),
                               fill="tozeroy", fillcolor="rgba(0,114,178,0.15)", customdata=[plain(t) for t in tokens],
                               hovertemplate="position %{x} %{customdata}: %{y:.4f}<extra></extra>"))
    fig.add_vrect(x0=needle[0] + 0.5, x1=needle[1] + 0.5, fillcolor="rgba(230,159,0,0.30)", line_width=0,
                  annotation_text="needle", annotation_position="top left")
    fig.update_xaxes(title="position in the prompt", rangemode="tozero")
    fig.update_yaxes(title="attention weight (mean of 30 layers × 9 heads)", type="log", exponentformat="power")
    fig.update_layout(**base_layout(title=title, height=340, showlegend=False))
    fig.update_layout(margin=dict(l=10, r=10, t=60, b=10))
    return fig
