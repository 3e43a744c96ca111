"""Charts of the RLHF and DPO pages: a policy's next-token distribution against its reference, proxy reward vs a
judge over the policy's samples, best-of-n curves, and per-token implicit rewards. Pure figure builders."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from charts.labels import plain
from charts.style import DIVERGING, OKABE_ITO, SEQUENTIAL, base_layout, legend_below

GRID = "rgba(128,128,128,0.25)"
REFERENCE, POLICY, PROXY, JUDGE = OKABE_ITO[0], OKABE_ITO[1], OKABE_ITO[1], OKABE_ITO[2]


def _title(text: str) -> dict:
    return dict(text=plain(text), x=0, font=dict(size=14))


def policy_vs_reference(tokens: Sequence[str], reference: Sequence[float], policy: Sequence[float], title: str = "",
                        height: int = 330) -> go.Figure:
    """Paired bars: the reference's and the policy's probability of the same candidate tokens."""
    names = [plain(t) for t in tokens]
    fig = go.Figure([
        go.Bar(x=names, y=list(reference), name="reference (the model as it is)", marker_color=REFERENCE,
               hovertemplate="%{x}<br>reference p = %{y:.2%}<extra></extra>"),
        go.Bar(x=names, y=list(policy), name="policy", marker_color=POLICY,
               hovertemplate="%{x}<br>policy p = %{y:.2%}<extra></extra>")])
    fig.update_yaxes(title="probability of the next token", tickformat=".0%", gridcolor=GRID, rangemode="tozero")
    fig.update_xaxes(tickangle=-35, automargin=True, type="category")
    fig.update_layout(**base_layout(title=_title(title), height=height, barmode="group", bargap=0.25))
    legend_below(fig, bottom=90)
    return fig


def proxy_vs_judge(proxy: Sequence[float], judge: Sequence[float], role: Sequence[str], hover: Sequence[str],
                   title: str = "", height: int = 360) -> go.Figure:
    """One dot per sample: its proxy reward (x) and its judge score (y), labelled samples marked by their role."""
    fig = go.Figure()
    proxy, judge = np.asarray(proxy, float), np.asarray(judge, float)
    styles = {"chosen": (OKABE_ITO[2], "circle"), "rejected": (OKABE_ITO[5], "x"),
              "unlabelled": ("rgba(128,128,128,0.8)", "circle-open")}
    for name, (colour, symbol) in styles.items():
        keep = [i for i, r in enumerate(role) if r == name]
        if not keep:
            continue
        fig.add_trace(go.Scatter(x=proxy[keep], y=judge[keep], mode="markers", name=name,
                                 marker=dict(color=colour, symbol=symbol, size=10, line=dict(width=1.5, color=colour)),
                                 customdata=[plain(hover[i]) for i in keep],
                                 hovertemplate="proxy %{x:.3f} · judge %{y:.3f}<br>%{customdata}<extra></extra>"))
    fig.update_xaxes(title="proxy reward (your reward model)", gridcolor=GRID, zeroline=False)
    fig.update_yaxes(title="judge score (fixed rule)", gridcolor=GRID, zeroline=False)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=70)
    return fig


def best_of_n_curves(ns: Sequence[int], proxy_gain: Sequence[float], judge_gain: Sequence[float],
                     kl_nats: Sequence[float], title: str = "", height: int = 360) -> go.Figure:
    """Gain of the best-of-n winner over a random sample (n = 1), in standard deviations of the pool, for the
    proxy it was picked by and for the judge; the x axis is n on a log scale, the KL bound in the hover."""
    fig = go.Figure()
    for name, gain, colour, dash in (("proxy reward (what best-of-n maximises)", proxy_gain, PROXY, "solid"),
                                     ("judge score (what we wanted)", judge_gain, JUDGE, "dash")):
        fig.add_trace(go.Scatter(x=list(ns), y=list(gain), mode="lines+markers", name=name,
                                 line=dict(color=colour, width=2.5, dash=dash), marker=dict(size=8),
                                 customdata=list(kl_nats),
                                 hovertemplate="n = %{x}<br>gain %{y:+.2f} SD<br>KL ≤ %{customdata:.2f} nats"
                                               "<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="rgba(128,128,128,0.6)", width=1))
    fig.update_xaxes(title="n (samples drawn, the best one by the proxy kept)", type="log",
                     tickvals=list(ns), ticktext=[str(n) for n in ns], gridcolor=GRID)
    fig.update_yaxes(title="gain over n = 1 (pool standard deviations)", gridcolor=GRID, zeroline=False)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=70)
    return fig


def token_rewards(rows: Sequence[Sequence[str]], values: Sequence[Sequence[float]], row_names: Sequence[str],
                  title: str = "", height: int = 260, signed: bool = True, value_name: str = "reward") -> go.Figure:
    """A heat map of per-token values (one row per answer, tokens left to right): diverging around zero when the
    values are signed (implicit rewards), sequential otherwise (log-probabilities, all <= 0)."""
    width = max(len(r) for r in rows)
    z = np.full((len(rows), width), np.nan)
    text = [[""] * width for _ in rows]
    for i, (tokens, vals) in enumerate(zip(rows, values)):
        z[i, :len(vals)] = vals
        for j, t in enumerate(tokens):
            text[i][j] = plain(t)
    limit = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() and np.nanmax(np.abs(z)) > 0 else 1.0
    scale = dict(colorscale=DIVERGING, zmin=-limit, zmax=limit) if signed else \
        dict(colorscale=SEQUENTIAL, zmin=-limit, zmax=0.0)
    fig = go.Figure(go.Heatmap(z=z, text=text, texttemplate="%{text}", textfont=dict(size=10),
                               x=list(range(1, width + 1)), y=[plain(n) for n in row_names], **scale,
                               xgap=1, ygap=3, colorbar=dict(title=value_name, thickness=12),
                               hovertemplate="%{y} · token %{x}: %{text}<br>%{z:+.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="answer token", showgrid=False)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    return fig


def logprob_steps(chosen: Sequence[float], rejected: Sequence[float], title: str = "", height: int = 330) -> go.Figure:
    """Sequence log-probabilities of the chosen and rejected answers under the policy, step 0 onward."""
    steps = np.arange(len(chosen))
    fig = go.Figure()
    for name, vals, colour, dash in (("chosen", chosen, OKABE_ITO[2], "solid"),
                                     ("rejected", rejected, OKABE_ITO[5], "dash")):
        fig.add_trace(go.Scatter(x=steps, y=list(vals), mode="lines+markers", name=name,
                                 line=dict(color=colour, width=2.5, dash=dash), marker=dict(size=6),
                                 hovertemplate=f"{name}<br>step %{{x}}<br>log p = %{{y:.3f}} nats<extra></extra>"))
    fig.update_xaxes(title="DPO step (0 = the reference)", gridcolor=GRID, dtick=1 if len(steps) <= 20 else None)
    fig.update_yaxes(title="log p(answer | prompt), nats", gridcolor=GRID)
    fig.update_layout(**base_layout(title=_title(title), height=height))
    legend_below(fig, bottom=70)
    return fig
