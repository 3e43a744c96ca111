from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.compression import damage_curve, weight_histograms
from engine.serving.compression import bits_per_weight, block_linear_weights
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.compression import LINEARS, SWEEP_BITS, ids_of, quantization_sweep, quantized, weight_sample
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.text import described_metric, human_bytes

TEXT_KEY = "text"
DEFAULT_TEXT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
                "movable metal type with an oil-based ink and a wooden press. Books became cheaper, and ideas spread "
                "faster. Within fifty years, presses were working in more than two hundred cities across Europe, and "
                "millions of books had been printed. Scholars could compare the same text in different places, "
                "errors could be corrected in the next edition, and news travelled in pamphlets that anyone could "
                "buy for a few coins.")
GRANULARITY = {"per tensor": "tensor", "per channel": "channel", "per group": "group"}
SCHEME = {"absmax (symmetric)": "absmax", "zero-point (asymmetric)": "zeropoint"}

with concept_page("quantization"):
    text = prompt_input(TEXT_KEY, DEFAULT_TEXT, "Text to measure the model on", height=110)
    stop_if_empty(text, "Type a paragraph above: the model's perplexity on it is measured before and after "
                        "quantization.")
    if len(ids_of(text)) < 8:
        st.info("Give the model a few sentences: on a handful of tokens the measurements are mostly noise.",
                icon=":material/edit:")
        st.stop()
    c1, c2, c3, c4 = st.columns([1.2, 1.2, 1.4, 1.2])
    bits = c1.select_slider("Bits per weight", [2, 3, 4, 5, 6, 8], value=4, key="bits", bind="query-params")
    granularity_name = c2.selectbox("One scale per", list(GRANULARITY), index=2, key="granularity",
                                    bind="query-params",
                                    help="How many weights share one scale: a whole matrix, one output row, or a "
                                         "small group of consecutive weights in a row (as GGUF's blocks).")
    scheme_name = c3.selectbox("Scheme", list(SCHEME), index=0, key="scheme", bind="query-params",
                               help="absmax maps ±max|w| to the largest integers and keeps 0 exact; zero-point "
                                    "spreads all 2^b levels from the minimum to the maximum.")
    group = c4.select_slider("Group size", [16, 32, 64, 128], value=32, key="group", bind="query-params",
                             disabled=GRANULARITY[granularity_name] != "group",
                             help="Weights per scale in per-group mode. GGUF's Q4_0 and Q4_1 use 32.")
    granularity, scheme = GRANULARITY[granularity_name], SCHEME[scheme_name]

    result = quantized(text, bits, granularity, scheme, group)
    weights = block_linear_weights(lm())
    bpw = bits_per_weight(bits, granularity, scheme, group)
    m = metric_row(4)
    described_metric(m[0], "Perplexity", f"{result.perplexity:,.2f}", f"float32: {result.base_perplexity:,.2f}",
                     help="On your text, with every block's attention and FFN weights quantized.")
    described_metric(m[1], "Mean KL to float32", f"{result.mean_kl:.4f} nats",
                     "per next-token distribution", help="How far each next-token distribution moved from the "
                                                         "float32 model's, averaged over every position.")
    described_metric(m[2], "Top-1 token unchanged", f"{100 * result.top1_agreement:.1f}%", "of the positions")
    described_metric(m[3], "Block weights", human_bytes(weights * bpw / 8),
                     f"{bpw:.2f} bits/weight", help=f"{weights:,} weights in the blocks' linear layers, scales "
                                                   f"included; {human_bytes(weights * 4)} in float32. The tied "
                                                   "embedding matrix is kept in float32 here.")

    st.subheader("Quality against bits", anchor=False)
    points = follow(quantization_sweep(text, granularity, scheme, group), what="quantization sweep")
    if points:
        show_chart(figure(damage_curve, [p.setting for p in points], [p.damage.perplexity for p in points],
                          [p.damage.top1_agreement for p in points], points[0].damage.base_perplexity, bits,
                          "bits per weight", "{:g} bits",
                          title=f"{granularity_name}, {scheme_name}" + (f", groups of {group}" if granularity == "group" else "")),
                   partial(pd.DataFrame, {"bits": [p.setting for p in points],
                                          "perplexity": [p.damage.perplexity for p in points],
                                          "mean_kl_nats": [p.damage.mean_kl for p in points],
                                          "top1_unchanged": [p.damage.top1_agreement for p in points]}),
                   name="quantization-sweep", key="sweep_chart")

    st.subheader("One matrix, before and after", anchor=False)
    h1, h2 = st.columns(2)
    layer = h1.slider("Layer", 1, lm().card.layers, 1, key="layer", bind="query-params")
    linear = h2.selectbox("Matrix", LINEARS, index=6, key="matrix", bind="query-params")
    name = f"layers.{layer - 1}.{linear}"
    before, after = weight_sample(name, bits, granularity, scheme, group)
    show_chart(figure(weight_histograms, before, after, f"{bits}-bit", title=f"{name}: a sample of 20,000 weights"),
               partial(pd.DataFrame, {"float32": before, f"quantized_{bits}bit": after}),
               name=f"weights-{name}", key="histogram")
    sigma = float(before.std())
    outliers = float(np.mean(np.abs(before) > 6 * sigma))
    levels = 2 ** bits - (1 if scheme == "absmax" else 0)
    used = f" Levels used in this sample: {len(np.unique(after)):,}." if granularity == "tensor" else ""
    st.caption(f"Each scale offers {levels} levels.{used} The largest |weight| is "
               f"{np.abs(before).max() / sigma:.1f} standard deviations out; {100 * outliers:.3f}% of weights lie "
               "beyond 6. One outlier stretches the scale of every weight that shares it, which is why smaller "
               "groups (and keeping outliers apart, as LLM.int8() and AWQ do) help.")
