import time
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.state_space import delta_bars, kept_bars, model_decode, retention_map, step_costs
from engine.tokens.offsets import visible
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.jobs import follow
from ui.long_context import DEFAULT_LONGEST, context_cost_job
from ui.state_space import CHECK_CHANNELS, EXPAND, MAMBA_STATES, STATES, STEP_CAP, scan_view, step_cost_job
from ui.text import escape_markdown, human_bytes, short_tokens, wrapping_metric

DEFAULT_TEXT = ("My grandmother kept bees behind the old mill in Tarrow. Every August she sold jars of heather "
                "honey at the market, and every August the same man bought six jars and paid in silver coins. "
                "Nobody knew his name. When she retired she gave me the hives, the smoker and the recipe.")
MAX_TOKENS = 96
CONTEXTS = [1024, 4096, 16384, 65536, 131072]
AGAIN_FLAG = "_ssm_measure_again"


def scan_section(text: str) -> None:
    st.subheader("1 · A selective scan on your text", anchor=False)
    c1, c2 = st.columns(2)
    selectivity = c1.slider("Selectivity", 0.0, 3.0, 1.0, 0.25, key="select", bind="query-params",
                            help="How strongly the step size Δ follows the token's surprise. 0: every token gets "
                                 "the same Δ, a plain linear recurrence (a convolution).")
    decay = c2.slider("Forgetting rate |A|", 0.05, 2.0, 0.2, 0.05, key="decay", bind="query-params",
                      help="The state shrinks by exp(−|A| Δ) at every step: higher forgets faster.")
    with st.spinner("Scoring every token of your text with SmolLM2..."):
        view = scan_view(text, float(selectivity), float(decay))
    labels = [visible(t) for t in view.tokens]
    length = len(labels)
    if length < 2:
        st.info("Type at least two tokens: the scan needs a history to keep or forget.", icon=":material/edit:")
        return
    last = view.kept[-1]
    top = np.argsort(-last)[:3]
    row = st.container(horizontal=True, gap="large")   # wraps on a narrow window
    a = b = c = d = row
    wrapping_metric(a, "Step sizes Δ", f"{view.deltas.min():.2f} to {view.deltas.max():.2f}",
                     "one per token", "Δ_t = softplus(bias + selectivity × standardised surprise). Larger: the "
                     "token is written harder and the state forgets more of the past.")
    wrapping_metric(b, "Largest share of the final state", f"{100 * last[top[0]]:.0f}%",
                     f"“{escape_markdown(labels[top[0]])}”, token {top[0] + 1}",
                     "After the last token, how the state's content divides between the tokens read.")
    wrapping_metric(c, "Scan = unrolled matrix form", f"{view.unrolled_gap:.0e}",
                     f"max |difference|, {CHECK_CHANNELS} channels",
                     "The recurrence against y = M x with M built directly from the decays, on the first "
                     f"{CHECK_CHANNELS} channels of SmolLM2's real token embeddings, {STATES} states each.")
    wrapping_metric(d, "Selectivity 0 = convolution", f"{view.convolution_gap:.0e}",
                     "max |difference|", "With every Δ equal, the scan against one causal convolution with the "
                     "kernel K_k = C exp(kΔA) ΔB, on the same embeddings.")
    show_chart(figure(delta_bars, labels, view.deltas, view.surprise,
                      title="Step size Δ per token, set by how surprising SmolLM2 found it"),
               partial(pd.DataFrame, {"position": range(1, length + 1), "token": view.tokens,
                                      "surprise_nats": view.surprise, "delta": view.deltas}),
               name="ssm-deltas", key="deltas")
    # One chart under the other: side by side, both are cramped on a laptop screen.
    show_chart(figure(retention_map, view.kept, labels, title="Where the state's content comes from (rows sum to 1)"),
               partial(pd.DataFrame, {"step": np.repeat(np.arange(1, length + 1), length),
                                      "token": np.tile(np.arange(1, length + 1), length),
                                      "share": view.kept.ravel()}),
               name="ssm-retention", key="retention")
    st.caption("Row t: after reading token t, how much of the one-number state comes from each earlier token "
               "(the weights Δ_s exp(−|A| Σ Δ_r) of the unrolled form, scaled to sum to 1). It reads like an "
               "attention map, but nothing looks back: each row follows from the previous one by one update.")
    show_chart(figure(kept_bars, labels, last, title="What the final state holds"),
               partial(pd.DataFrame, {"position": range(1, length + 1), "token": view.tokens,
                                      "share_of_final_state": last, "raw_weight": view.raw_last}),
               name="ssm-final-state", key="kept")
    kept = ", ".join(f"“{escape_markdown(labels[i])}” {100 * last[i]:.0f}%" for i in top)
    st.caption(f"Kept most: {kept}. Move the selectivity to 0: the state becomes a plain fading average of "
               "the most recent tokens. Raise it: surprising tokens are written hard and wipe what came before.")


def cost_section() -> None:
    st.subheader("2 · Cost per token: a growing cache against a fixed state, measured", anchor=False)
    card = lm().card
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    longest = c1.select_slider("Longest context for the one-layer timing (tokens)", CONTEXTS, value=16384,
                               key="longest", bind="query-params", format_func=short_tokens,
                               help=f"Measured up to {STEP_CAP:,} tokens on this shared server.")
    c2.button("Measure again", key="again", icon=":material/refresh:", width="stretch",
              on_click=st.session_state.__setitem__, args=(AGAIN_FLAG, True))
    longest = longest if longest in CONTEXTS else 16384
    if longest > STEP_CAP:
        st.info(f"Measured up to {STEP_CAP:,} tokens only: at {longest:,} the attention layer's cache alone would "
                f"take {human_bytes(2 * card.kv_heads * card.head_dim * 4 * longest)} per timing run, on a server "
                "shared with other readers.", icon=":material/straighten:")
    steps = follow(step_cost_job(longest, again=bool(st.session_state.pop(AGAIN_FLAG, False))), what="step timing")
    if steps is not None:
        first, last = steps.points[0], steps.points[-1]
        row = st.container(horizontal=True, gap="large")   # wraps on a narrow window
        a = b = c = row
        wrapping_metric(a, f"Attention step at {last.context:,}", f"{last.attention_ms:.2f} ms",
                         f"{last.attention_ms / first.attention_ms:.0f}× the time at {first.context:,}",
                         f"One layer with SmolLM2's shapes ({steps.heads} query heads, {steps.kv_heads} KV heads of "
                         f"{steps.head_dim}): one new token attends over every cached token.")
        wrapping_metric(b, f"Scan step at {last.context:,}", f"{last.scan_ms:.3f} ms",
                         f"{last.scan_ms / first.scan_ms:.1f}× the time at {first.context:,}",
                         f"One layer of {steps.channels:,} channels × {steps.states} states, Mamba's defaults at "
                         "this width. Its work does not depend on the context.")
        wrapping_metric(c, "Memory kept by one layer", human_bytes(last.kv_bytes),
                         f"KV cache, against a fixed {human_bytes(last.state_bytes)} state",
                         "Bytes of the arrays each layer keeps at this context, float32.")
        show_chart(figure(step_costs, [p.context for p in steps.points], [p.attention_ms for p in steps.points],
                          [p.scan_ms for p in steps.points], [p.kv_bytes / 1e6 for p in steps.points],
                          [p.state_bytes / 1e6 for p in steps.points],
                          title="One layer, one generated token, same numpy on the same core"),
                   partial(pd.DataFrame, {"context": [p.context for p in steps.points],
                                          "attention_ms": [p.attention_ms for p in steps.points],
                                          "scan_ms": [p.scan_ms for p in steps.points],
                                          "kv_bytes": [p.kv_bytes for p in steps.points],
                                          "state_bytes": [p.state_bytes for p in steps.points]}),
                   name="ssm-step-costs", key="steps")
        measured = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(steps.measured_at))
        st.caption(f"Measured at {measured}, best of 5 runs per point, random values (the cost depends on the "
                   "shapes only). At short contexts the attention step is cheap too; it is the growth that differs.")

    st.markdown("**The real SmolLM2**, decoding after prompts of growing length (the same measurement as on the "
                "context-window page):")
    costs = follow(context_cost_job(DEFAULT_LONGEST), what="timing")
    if costs is None or not costs.points:
        return
    points = costs.points
    state_bytes = card.layers * EXPAND * card.d_model * MAMBA_STATES * 4
    row = st.container(horizontal=True, gap="large")   # wraps on a narrow window
    a = b = row
    wrapping_metric(a, f"SmolLM2 decode at {points[-1].length:,} tokens", f"{points[-1].decode_ms:.0f} ms",
                     f"{points[0].decode_ms:.0f} ms at {points[0].length}",
                     "Median time of one generated token, measured on the live model after a prefill.")
    wrapping_metric(b, f"Its KV cache at {points[-1].length:,}", human_bytes(points[-1].kv_bytes),
                     f"vs {human_bytes(state_bytes)} for {card.layers} scan layers at any length",
                     f"Measured on the real cache tensors. The scan figure: {card.layers} layers × "
                     f"{EXPAND * card.d_model:,} channels × {MAMBA_STATES} states × 4 bytes.")
    show_chart(figure(model_decode, [p.length for p in points], [p.decode_ms for p in points],
                      [p.kv_bytes / 1e6 for p in points], state_bytes / 1e6,
                      title="SmolLM2 (30 layers) on this server: time and memory per sequence"),
               partial(pd.DataFrame, {"context": [p.length for p in points],
                                      "decode_ms_median": [p.decode_ms for p in points],
                                      "kv_bytes": [p.kv_bytes for p in points],
                                      "scan_state_bytes_30_layers": state_bytes}),
               name="ssm-smollm2-decode", key="decode")
    if costs.stopped_early:
        st.caption(f"Measured up to {points[-1].length:,} of {costs.requested[-1]:,} tokens: the run stopped early "
                   "(a reader pressed Stop, or the server was too busy to finish within its time budget).")
    st.caption("At these lengths SmolLM2's step time is dominated by its weights (30 layers of matrix products), so "
               "the rise with context is modest; the cache's growth is exact and linear. Over long contexts, and "
               "across many sequences served at once, that cache is what fixed-state models remove.")


with concept_page("state-space-models"):
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=100,
                        help=f"Up to {MAX_TOKENS} tokens. SmolLM2 scores how surprising each token is; the scan "
                             "writes surprising tokens harder.")
    if text.strip():
        scan_section(text)
    else:
        st.info("Type a few sentences above to run the selective scan on them. The measurements below need no "
                "text.", icon=":material/edit:")
    st.divider()
    cost_section()
