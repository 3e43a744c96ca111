from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.activations import curves, gate_histogram, layer_shares, swiglu_surface, token_losses
from engine.inside.activations import FUNCTIONS, NEAR_ZERO, SWAPPABLE, swiglu
from ui import concept_page, lm, prompt_input
from ui.activations import MAX_TOKENS, gate_histograms, swap
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty
from ui.sampling import chart_label, token_texts
from ui.text import described_metric

PRESETS = {
    "Story": "The old lighthouse keeper climbed the spiral stairs every evening, trimmed the wick, and watched the "
             "ships slip past the rocks until dawn. Nobody in the village could remember a night when the light "
             "had failed, not even during the great storm that flooded the harbour.",
    "Code": "def mean(values):\n    \"\"\"Average of a non-empty list.\"\"\"\n    if not values:\n        raise "
            "ValueError(\"empty list\")\n    return sum(values) / len(values)\n",
    "Facts": "Water boils at 100 degrees Celsius at sea level. The Moon orbits the Earth about once every 27 days, "
             "and light from the Sun takes a little over eight minutes to reach us.",
}
DEFAULT_FUNCTIONS = ["ReLU", "GELU", "SiLU"]
SAMPLE_POINTS = (-2.0, -1.0, 0.0, 1.0, 2.0)
GRID = 401


def use_preset(text: str) -> None:
    st.session_state["text"] = text


with concept_page("activation-functions"):
    st.subheader("The functions and their slopes", anchor=False)
    pick, span_col = st.columns([3, 2], vertical_alignment="bottom")
    chosen = pick.multiselect("Functions", list(FUNCTIONS), default=DEFAULT_FUNCTIONS, key="fn", bind="query-params",
                              help="; ".join(f"{a.name}: {a.where}" for a in FUNCTIONS.values()))
    span = span_col.slider("x from −s to +s", 2, 10, 5, key="span", bind="query-params",
                           help="The range of inputs drawn. The real gate values below mostly fall within ±5.")
    show_slopes = st.toggle("Slopes", value=True, key="slopes", bind="query-params",
                                   help="The derivative f′(x): what a gradient is multiplied by when it flows back "
                                        "through the function during training.")
    if not chosen:
        st.info("Pick at least one function above; SiLU, the one SmolLM2 uses, is drawn meanwhile.",
                icon=":material/functions:")
        chosen = ["SiLU"]
    xs = np.linspace(-span, span, GRID)
    values = {n: FUNCTIONS[n].function(xs) for n in chosen}
    slopes = {n: FUNCTIONS[n].derivative(xs) for n in chosen} if show_slopes else None
    show_chart(figure(curves, xs, values, slopes, title="Each function (solid) and its slope (dotted)"),
               partial(pd.DataFrame, {"x": xs, **{f"{n}(x)": v for n, v in values.items()},
                                      **{f"{n}'(x)": v for n, v in (slopes or {}).items()}}),
               name="activation-curves", key="curves")
    table = pd.DataFrame({"function": chosen, "formula": [FUNCTIONS[n].formula for n in chosen],
                          **{f"f({x:g})": [float(FUNCTIONS[n].function(np.array([x]))[0]) for n in chosen]
                             for x in SAMPLE_POINTS},
                          "slope at 0": [float(FUNCTIONS[n].derivative(np.array([0.0]))[0]) for n in chosen],
                          f"lowest on ±{span}": [float(v.min()) for v in values.values()],
                          "used in": [FUNCTIONS[n].where for n in chosen]})
    st.dataframe(table, hide_index=True, width="stretch", column_config={"formula": None})
    st.caption("Every value is computed from the formula on this page; the tests hold each curve and slope to "
               "PyTorch's own functions. ReLU's slope is exactly 0 for every negative input, so a neuron stuck "
               "there gets no gradient; GELU and SiLU dip slightly below zero and keep a small slope.")

    with st.expander("SwiGLU: SiLU with a second input", expanded=False):
        grid = np.linspace(-span, span, 81)
        surface = swiglu(grid[None, :], grid[:, None])
        show_chart(figure(swiglu_surface, grid, grid, surface, title="SiLU(gate) × up"),
                   partial(pd.DataFrame, {"gate": np.tile(grid, grid.size), "up": np.repeat(grid, grid.size),
                                          "output": surface.ravel()}), name="swiglu-surface", key="swiglu")
        st.caption("Each FFN neuron of SmolLM2 multiplies SiLU of its gate by a second, linear input (up). A negative "
                   "gate nearly closes the neuron (the pale left half) but never quite: up can still scale the small "
                   "negative SiLU output.")

    st.subheader("What SmolLM2's gates actually receive", anchor=False)
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown(":material/description: **Try:**", width="content")
        for i, (label, sample) in enumerate(PRESETS.items()):
            st.button(label, key=f"preset-{i}", on_click=use_preset, args=(sample,), width="content")
    text = prompt_input("text", PRESETS["Story"], "Your text", max_tokens=MAX_TOKENS, height=100)
    stop_if_empty(text, "Type a text above, or pick a preset, to see the gate values SiLU receives inside "
                        "SmolLM2 and what swapping it does to the model's perplexity.")
    card = lm().card
    layer = st.slider(f"Layer (1-{card.layers})", 1, card.layers, 15, key="layer", bind="query-params",
                      help="Each layer's FFN has its own gate projection, so each has its own spread of values.")
    stats = gate_histograms(text)
    h = stats.layers[layer - 1]
    tokens = len(stats.ids)
    m1, m2, m3 = st.columns(3)
    described_metric(m1, "Gate values", f"{h.total:,}", f"{tokens} tokens × {stats.ffn_dim:,}",
                     help=f"One gate pre-activation per neuron per token in layer {layer}: every one of them is in "
                          f"the histogram. They range from {h.minimum:.2f} to {h.maximum:.2f} (median "
                          f"{h.median:+.2f}).")
    described_metric(m2, "Below zero", f"{100 * h.share_negative:.1f}%", "ReLU gives exactly 0",
                     help="SiLU passes a small negative value here instead (never below −0.28).")
    described_metric(m3, f"|SiLU(gate)| < {NEAR_ZERO}", f"{100 * h.share_near_zero:.1f}%", "nearly closed",
                     help="The neuron passes on almost nothing at these tokens: a soft form of sparsity.")
    overlay_x = np.linspace(h.edges[0], h.edges[-1], GRID)
    show_chart(figure(gate_histogram, h.edges, h.counts, h.below, h.above, h.minimum, h.maximum,
                      {n: (overlay_x, FUNCTIONS[n].function(overlay_x)) for n in chosen},
                      title=f"Layer {layer}: the gate values SiLU received on your text"),
               partial(pd.DataFrame, {"bin_from": h.edges[:-1], "bin_to": h.edges[1:], "count": h.counts}),
               name=f"gate-histogram-layer{layer}", key="histogram")
    st.caption(f"Bins of 0.1. The orange end bars gather the most extreme 0.2%: {h.below:,} values below "
               f"{h.edges[0]:.1f} (the lowest is {h.minimum:.2f}) and {h.above:,} above {h.edges[-1]:.1f} (the "
               f"highest {h.maximum:.2f}). Where the grey mass sits on the curves above it is where the choice of "
               "function matters.")
    show_chart(figure(layer_shares, list(range(1, card.layers + 1)), [x.share_negative for x in stats.layers],
                      [x.share_near_zero for x in stats.layers], layer, f"|SiLU(gate)| < {NEAR_ZERO}",
                      title="Negative and nearly closed gates, layer by layer"),
               partial(pd.DataFrame, {"layer": range(1, card.layers + 1),
                                      "share_below_zero": [x.share_negative for x in stats.layers],
                                      "share_silu_near_zero": [x.share_near_zero for x in stats.layers],
                                      "min": [x.minimum for x in stats.layers],
                                      "max": [x.maximum for x in stats.layers]}),
               name="gate-shares-by-layer", key="shares")

    st.subheader("Swap SiLU for another function, keep the weights", anchor=False)
    if tokens < 2:
        st.info("Perplexity scores each next token, so it needs a text of at least two tokens.", icon=":material/edit:")
    else:
        result = swap(text)
        base = result.perplexity["SiLU"]
        cols = st.columns(len(SWAPPABLE))
        for col, name in zip(cols, SWAPPABLE):
            ppl = result.perplexity[name]
            trained = name == "SiLU"
            note = "as trained" if trained else f"{ppl / base:,.1f}× SiLU's"
            col.metric(f"Perplexity, {name}", f"{ppl:,.1f}", note,
                       delta_color="off" if trained else "inverse", delta_arrow="off" if trained else "auto",
                       help=f"exp of the mean −ln p of the {tokens - 1} next tokens of your text, with every one "
                            f"of the {card.layers} FFNs using {name} in its gate. Top-1 hits: "
                            f"{100 * result.top1[name]:.0f}%.")
        labels = [chart_label(t) for t in token_texts(result.ids[1:])]
        show_chart(figure(token_losses, labels, result.token_nll, title="Loss on each next token of your text"),
                   partial(pd.DataFrame, {"position": range(2, tokens + 1), "token": token_texts(result.ids[1:]),
                                          **{f"nll_{n}": v for n, v in result.token_nll.items()}}),
                   name="swap-token-losses", key="losses")
        st.caption("The weights were trained with SiLU. GELU is its close cousin, so the model survives it with "
                   "some damage; ReLU zeroes every negative gate, the majority in most layers, and the predictions "
                   "fall apart. This measures how tightly trained weights fit their function, not which function "
                   "is better.")
