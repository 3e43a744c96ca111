from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.sampling import entropy_by_position, survivor_bars
from engine.decoding.sampling import entropy_bits, sampling_filter
from engine.tokens.offsets import decode, visible
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.sampling import Steps, chart_label, filter_statuses, steps, token_texts
from ui.text import escape_markdown
from ui.inputs import ranged_slider, stop_if_empty

TEXT_KEY = "text"
DEFAULT_TEXT = "The capital of France is Paris. My favourite city is"
SHOWN = 30           # candidates drawn per step
MAX_TOKENS = 128     # one forward pass keeps 128 x 49,152 logits in memory


def context_tail(s: Steps, position: int, chars: int = 36) -> str:
    text = decode(lm(), s.ids[:position + 1])
    return ("…" if len(text) > chars else "") + text[-chars:]


def step_panel(s: Steps, position: int, heading: str, colour: str, t: float, k: int, p: float,
               min_p: float, log_x: bool, key: str) -> None:
    logits = s.logits[position]
    result = sampling_filter(logits, t, k, p, min_p)
    order = np.argsort(-logits, kind="stable")[:SHOWN]  # T keeps the ranking, so this is the rank at any T
    texts = token_texts(tuple(int(i) for i in order))
    status = filter_statuses(result, order)
    cumulative = np.cumsum(result.scaled[order])
    vocab = logits.size

    st.markdown(f"#### :{colour}[{heading}]")
    st.markdown(f"Token {position + 1} of {len(s.ids)}: after **{escape_markdown(context_tail(s, position))}**")
    # A wrapping row, not columns: the panel is half the page wide, and columns cut metric values short.
    with st.container(horizontal=True, gap="medium"):
        st.metric("Survivors", f"{result.survivors:,}", help=f"Tokens left to sample from, out of {vocab:,}.",
                  width="content")
        st.metric("Kept mass", f"{100 * result.kept_mass:.1f}%", width="content",
                  help="Share of the distribution (after temperature) held by the survivors, before they are "
                       "renormalised to 100%.")
        st.metric("Entropy", f"{entropy_bits(result.scaled):.1f} bits", width="content",
                  help=f"Of the distribution after temperature. At T = 1 (the model's own): "
                       f"{s.entropies[position]:.2f} bits.")
    show_chart(
        figure(survivor_bars, [chart_label(x) for x in texts], [int(i) for i in order], result.scaled[order], status,
                      result.final[order], cumulative,
                      title=f"Top {len(order)} candidates at this step", log_x=log_x),
        partial(pd.DataFrame, {"rank": range(1, len(order) + 1), "token": texts, "token_id": order,
                      "logit": logits[order], "probability_after_T": result.scaled[order],
                      "cumulative": cumulative, "status": status,
                      "renormalised_probability": result.final[order]}),
        name=f"survivors-step-{position + 1}", key=f"chart-{key}")

    if t <= 0:
        stages = "T = 0 is greedy: only the argmax survives, whatever k and p say."
    else:
        chain = [(f"top-k ({k})", int(result.after_top_k.sum()), k > 0),
                 (f"top-p ({p:.2f})", int(result.after_top_p.sum()), p < 1.0),
                 (f"min-p ({min_p:.2f})", result.survivors, min_p > 0.0)]
        stages = f"Of the {vocab:,} tokens: " + " → ".join(
            f"{name} keeps **{count:,}**" if on else f"{name.split(' ')[0]} off" for name, count, on in chain) + "."
        if not any(on for _, _, on in chain):
            stages = f"No filter is on: all {vocab:,} tokens can be sampled."
    st.markdown(stages)
    notes = []
    if result.survivors > SHOWN:
        notes.append(f"The chart shows the top {SHOWN} of the {result.survivors:,} survivors.")
    if t > 0:
        in_k = result.scaled[result.after_top_k]
        lead = float(in_k.max() / in_k.sum())
        notes.append(f"Top-p never empties the list: here the top token alone holds {100 * lead:.1f}% of what "
                     f"top-k left, so any p up to {lead:.2f} keeps exactly that one token, never zero.")
    if position + 1 < len(s.ids):
        actual = int(s.ids[position + 1])
        rank = int((logits > logits[actual]).sum()) + 1
        fate = "survives" if result.keep[actual] else "is cut"
        notes.append(f"The token that actually follows in your text, “{escape_markdown(visible(s.texts[position + 1]))}”, "
                     f"is the model's #{rank:,} guess and {fate} under these settings.")
    st.caption(" ".join(notes))


with concept_page("top-k-top-p"):
    text = prompt_input(TEXT_KEY, DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=80,
                        help=f"Up to {MAX_TOKENS} tokens. One forward pass gives the model's next-token "
                             "distribution after every token of it.")
    st.markdown(
        "**Order of operations used here**, as in Hugging Face transformers: logits → divide by **T** → keep "
        "the **top-k** → keep the **top-p** nucleus of what top-k left (renormalised) → drop tokens under "
        "**min-p** × the top token's probability → renormalise → sample. Other engines differ: llama.cpp "
        "runs a configurable sampler chain, and its default applies temperature *after* top-k, top-p and min-p. "
        "For top-k the order does not matter (T keeps the ranking); for top-p it does.")
    c1, c2, c3, c4 = st.columns(4)
    t = c1.slider("Temperature T", 0.0, 2.0, 1.0, 0.05, key="t", bind="query-params",
                  help="Applied first. T = 0 is greedy: only the most likely token survives.")
    k = c2.slider("top-k (0 = off)", 0, 100, 20, key="k", bind="query-params",
                  help="Keep the k most likely tokens.")
    p = c3.slider("top-p (1 = off)", 0.01, 1.0, 0.9, 0.01, key="p", bind="query-params",
                  help="Keep the smallest set of most likely tokens whose probabilities add up to at least p.")
    min_p = c4.slider("min-p (0 = off)", 0.0, 0.5, 0.0, 0.01, key="minp", bind="query-params",
                      help="For comparison: keep tokens with at least min-p times the top token's probability "
                           "(llama.cpp's default is 0.05).")

    stop_if_empty(text, "Type or paste a text above, for example *The capital of France is Paris. My favourite city "
                        "is*, to see which tokens survive at each step.")

    with st.spinner("Running the model over your text..."):
        s = steps(text)   # cached: moving T, k or p runs no forward pass
    n = len(s.ids)
    confident, uncertain = s.confident, s.uncertain

    toggles = st.container(horizontal=True, gap="large")
    pick = toggles.toggle("Choose the two steps myself", value=False, key="pick", bind="query-params",
                          help="By default the left panel shows the step where the model is most confident "
                               "(lowest entropy) and the right one the most uncertain step.", disabled=n < 2)
    log_x = toggles.toggle("Log scale for probabilities", value=False, key="log", bind="query-params",
                           help="Makes the small probabilities in the tail visible.")
    if pick and n >= 2:
        left, right = st.columns(2)
        a = ranged_slider("Left step: after token", 1, n, confident + 1, key="a", container=left) - 1
        b = ranged_slider("Right step: after token", 1, n, uncertain + 1, key="b", container=right) - 1
    else:
        a, b = confident, uncertain

    def describe(position: int) -> str:
        if position == confident:
            return "Confident step (lowest entropy)"
        if position == uncertain:
            return "Uncertain step (highest entropy)"
        return f"Step after token {position + 1}"

    guesses = [f"{chart_label(g)} ({100 * q:.1f}%)" for g, q in zip(s.top_guess, s.top_probability)]
    marks = [(a, describe(a).split(" (")[0])] + ([(b, describe(b).split(" (")[0])] if b != a else [])
    show_chart(
        figure(entropy_by_position, [chart_label(x, 14) for x in s.texts], s.entropies, guesses, marks,
                            title="How sure the model is at each step of your text (entropy at T = 1)"),
        partial(pd.DataFrame, {"position": range(1, n + 1), "token": s.texts, "entropy_bits": s.entropies,
                      "top_guess": s.top_guess}),
        name="entropy-by-position", key="chart-positions")

    if a == b:
        st.info("Both steps are the same position" + (" (your text is a single token)" if n < 2 else "") +
                ": it is shown once.", icon=":material/info:")
        step_panel(s, a, describe(a), "blue", t, k, p, min_p, log_x, "a")
    else:
        left, right = st.columns(2, gap="large")
        with left:
            step_panel(s, a, describe(a), "blue", t, k, p, min_p, log_x, "a")
        with right:
            step_panel(s, b, describe(b), "red", t, k, p, min_p, log_x, "b")
    st.caption("Bars: each candidate's probability after temperature. Blue bars survive; green diamonds are "
               "their renormalised probabilities, the distribution that is actually sampled. "
               "Switch on the log scale to see the removed tail. SmolLM2-135M is small: how sure it is at a step "
               "is a property of this model, not of the language.")
