from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.compression import SURVIVAL, damage_curve, survival_heatmap
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.compression import LINEARS, SWEEP_SPARSITY, ids_of, pruned, pruning_sweep, survivors
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.text import described_metric

TEXT_KEY = "text"
DEFAULT_TEXT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
                "movable metal type with an oil-based ink and a wooden press. Books became cheaper, and ideas spread "
                "faster. Within fifty years, presses were working in more than two hundred cities across Europe, and "
                "millions of books had been printed. Scholars could compare the same text in different places, "
                "errors could be corrected in the next edition, and news travelled in pamphlets that anyone could "
                "buy for a few coins.")
METHODS = {"magnitude": "magnitude", "Wanda": "wanda"}      # shown (and in the link) -> engine name
PATTERNS = {"unstructured": "unstructured", "2:4": "2:4"}

with concept_page("pruning"):
    text = prompt_input(TEXT_KEY, DEFAULT_TEXT, "Text to measure (and, for Wanda, to calibrate on)", height=110)
    stop_if_empty(text, "Type a paragraph above: the model is pruned and measured on it.")
    if len(ids_of(text)) < 8:
        st.info("Give the model a few sentences: on a handful of tokens the measurements are mostly noise.",
                icon=":material/edit:")
        st.stop()
    c1, c2, c3 = st.columns([1.4, 1.2, 1.4])
    method = METHODS[c1.segmented_control("Importance", list(METHODS), default="magnitude", key="method",
                                          bind="query-params", help="magnitude scores a weight by |w|; Wanda by "
                                          "|w| times the norm of its input over your text (activation-aware).")
                     or "magnitude"]
    pattern = c2.segmented_control("Pattern", list(PATTERNS), default="unstructured", key="pattern",
                                   bind="query-params",
                                   help="2:4 keeps exactly 2 of every 4 consecutive weights in a row: 50% "
                                        "sparsity that GPUs with sparse tensor cores can run faster.") or "unstructured"
    sparsity = c3.slider("Sparsity (share of weights removed)", 0.0, 0.9, 0.5, 0.05, key="sparsity",
                         bind="query-params", disabled=pattern == "2:4",
                         help="In every row of every block's linear layers, this share of the least important "
                              "weights is set to zero.")
    if pattern == "2:4":
        sparsity = 0.5

    chosen = pruned(text, sparsity, method, pattern)
    other = "wanda" if method == "magnitude" else "magnitude"
    rival = pruned(text, sparsity, other, pattern)
    m = metric_row(4)
    described_metric(m[0], "Perplexity", f"{chosen.perplexity:,.2f}", f"float32: {chosen.base_perplexity:,.2f}")
    described_metric(m[1], f"With {other} instead", f"{rival.perplexity:,.2f}", "same sparsity and pattern")
    described_metric(m[2], "Mean KL to float32", f"{chosen.mean_kl:.4f} nats", "per next-token distribution")
    described_metric(m[3], "Top-1 token unchanged", f"{100 * chosen.top1_agreement:.1f}%", "of the positions")

    st.subheader("The cliff: quality against sparsity", anchor=False)
    points = follow(pruning_sweep(text, method), what="pruning sweep")
    if points:
        show_chart(figure(damage_curve, [p.setting for p in points], [p.damage.perplexity for p in points],
                          [p.damage.top1_agreement for p in points], points[0].damage.base_perplexity,
                          sparsity if pattern == "unstructured" else -1, "sparsity", "{:.0%}",
                          title=f"{method} pruning, unstructured"),
                   partial(pd.DataFrame, {"sparsity": [p.setting for p in points],
                                          "perplexity": [p.damage.perplexity for p in points],
                                          "mean_kl_nats": [p.damage.mean_kl for p in points],
                                          "top1_unchanged": [p.damage.top1_agreement for p in points]}),
                   name=f"pruning-sweep-{method}", key="sweep_chart")
        st.caption("Removing the smallest weights barely matters at first: most of a layer's output comes from its "
                   "larger weights. Past some point the damage grows steeply; where that point lies is measured "
                   "here for this model and text.")

    st.subheader("Which weights survive", anchor=False)
    h1, h2 = st.columns(2)
    layer = h1.slider("Layer", 1, lm().card.layers, 1, key="layer", bind="query-params")
    linear = h2.selectbox("Matrix", LINEARS, index=6, key="matrix", bind="query-params")
    name = f"layers.{layer - 1}.{linear}"
    codes = survivors(text, name, sparsity, pattern)
    show_chart(figure(survival_heatmap, codes, title=f"{name}: the first {codes.shape[0]} rows × {codes.shape[1]} inputs"),
               partial(pd.DataFrame, {"row": np.repeat(np.arange(codes.shape[0]), codes.shape[1]),
                                      "input": np.tile(np.arange(codes.shape[1]), codes.shape[0]),
                                      "survival": np.array(SURVIVAL, dtype=object)[codes.ravel()]}),
               name=f"survivors-{name}", key="survivors_chart")
    agree = float(np.mean((codes == 0) | (codes == 3)))
    st.caption(f"The two methods agree on {100 * agree:.0f}% of these weights. Wanda multiplies each weight by the "
               "size of the input it meets on your text, so whole input columns that carry large activations are "
               "spared even where their weights are small (vertical stripes).")
