from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.decoding import diversity_curve
from charts.sampling import survivor_bars
from engine.decoding.sampling import sampling_filter
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.cached import next_token
from ui.diversity import SWEEP_TEMPERATURES, diversity, sweep_job
from ui.inputs import stop_if_empty, whole_number_input
from ui.jobs import follow
from ui.layout import metric_row
from ui.sampling import chart_label, filter_statuses, token_texts
from ui.text import described_metric, escape_markdown

PROMPT_KEY = "prompt"
FIRST_DRAW_SHOWN = 20
DEFAULT_PROMPT = "My favourite thing about the weekend is"
PRESETS = ["My favourite thing about the weekend is", "The old lighthouse keeper opened the door and saw",
           "A good name for a pet turtle is"]


def use_prompt(text: str) -> None:
    st.session_state[PROMPT_KEY] = text


with concept_page("sampling"):
    prompt = prompt_input(PROMPT_KEY, DEFAULT_PROMPT, "Prompt", height=80)
    with st.container(horizontal=True, gap="small"):
        for i, text in enumerate(PRESETS):
            st.button(text, key=f"preset-{i}", on_click=use_prompt, args=(text,), width="content")
    stop_if_empty(prompt, "Type the start of a text above (or pick one) to draw several continuations of it.")
    c1, c2, c3, c4, c5 = st.columns([1.3, 1.3, 1, 1, 1], vertical_alignment="bottom")
    t = c1.slider("Temperature T", 0.0, 2.0, 0.8, 0.05, key="t", bind="query-params",
                  help="Logits are divided by T before the softmax. T = 0 takes the top token (greedy).")
    top_p = c2.slider("Top-p", 0.05, 1.0, 1.0, 0.05, key="top_p", bind="query-params",
                      help="Keep the smallest set of tokens whose probabilities reach p, then renormalise. 1 = off.")
    samples = c3.slider("Samples", 2, 6, 4, key="n", bind="query-params")
    length = c4.slider("Length", 4, 24, 16, key="len", bind="query-params", help="New tokens per sample.")
    seed = whole_number_input("Seed", 0, 1_000_000, 0, "seed", container=c5,
                              help="Sample i uses seed + i: the same link draws the same samples.")
    if t == 0:
        st.caption("At T = 0 every step takes the single most likely token (greedy): nothing is random, so every "
                   "sample is the same whatever its seed.")
    else:
        st.caption(f"At every step of every sample: the model's logits → divided by T = {t:.2f} → "
                   + (f"cut to the top-p = {top_p:.2f} nucleus and renormalised → " if top_p < 1 else "softmax → ")
                   + "one token drawn with a private random generator seeded by the sample's seed.")

    point = diversity(prompt, t, samples, length, seed, top_p)
    for i, text in enumerate(point.texts):
        with st.container(border=True):
            st.caption(f"Sample {i + 1} · seed {seed + i}")
            st.markdown(f"*{escape_markdown(prompt.rstrip())}*{escape_markdown(text)}")

    m = metric_row(4)
    described_metric(m[0], "Different samples", f"{len(set(point.texts))} of {samples}",
                     "identical at T = 0" if t == 0 else "exact text compared")
    described_metric(m[1], "Distinct 2-grams", f"{100 * point.distinct_2:.0f}%", "of all token pairs, pooled",
                     help="Share of the samples' token pairs that are unique. Low: the samples repeat each other's "
                          "wording.")
    described_metric(m[2], "Meaning similarity", f"{100 * point.similarity:.0f}%",
                     "mean MiniLM cosine over pairs",
                     help="all-MiniLM-L6-v2 embeds each continuation; the mean cosine similarity over every pair. "
                          "High: the samples say much the same thing, even in other words.")
    described_metric(m[3], "Token probability", f"{100 * point.mean_token_prob:.0f}%",
                     "the model's own p, averaged", help="For every sampled token, the probability the model gave "
                                                         "it at T = 1: high T reaches into the unlikely tail.")

    st.subheader("Where the first token of every sample is drawn from", anchor=False)
    logits = next_token(prompt).logits
    result = sampling_filter(logits, t, 0, top_p)
    order = np.argsort(-logits, kind="stable")[:FIRST_DRAW_SHOWN]
    tokens = token_texts(tuple(int(i) for i in order))
    show_chart(figure(survivor_bars, [chart_label(x) for x in tokens], [int(i) for i in order],
                      result.scaled[order], filter_statuses(result, order), result.final[order],
                      np.cumsum(result.scaled[order]),
                      title=f"The model's top {len(order)} next tokens at T = {t:g}"
                            + (f", top-p = {top_p:g}" if top_p < 1 else "")),
               partial(pd.DataFrame, {"token": tokens, "token_id": order, "logit": logits[order],
                                      "probability_at_T": result.scaled[order],
                                      "sampled_probability": result.final[order]}),
               name="first-draw", key="first_draw_chart")
    st.caption(f"Every sample's first token is one draw from the green diamonds: {result.survivors:,} tokens "
               f"can be drawn, holding {100 * result.kept_mass:.1f}% of the mass at this temperature. "
               "Each later token is drawn the same way from the model's prediction after the text so far.")

    st.subheader("Diversity against temperature", anchor=False)
    sweep = follow(sweep_job(prompt, samples, length, seed, top_p), what="temperature sweep")
    if sweep:
        show_chart(figure(diversity_curve, [p.temperature for p in sweep], [p.distinct_2 for p in sweep],
                          [p.similarity for p in sweep], [p.mean_token_prob for p in sweep], t,
                          title=f"{samples} samples of {length} tokens at each temperature, same seeds"),
                   partial(pd.DataFrame, {"temperature": [p.temperature for p in sweep],
                                          "distinct_2": [p.distinct_2 for p in sweep],
                                          "minilm_similarity": [p.similarity for p in sweep],
                                          "mean_token_probability": [p.mean_token_prob for p in sweep],
                                          "samples": [" | ".join(p.texts) for p in sweep]}),
                   name="diversity-vs-temperature", key="sweep_chart")
        st.caption(f"Measured at T = {', '.join(f'{x:g}' for x in SWEEP_TEMPERATURES)}, each with the same seeds. "
                   "Download the data to read the samples at each temperature: no diversity number can tell "
                   "inventive text from nonsense.")
