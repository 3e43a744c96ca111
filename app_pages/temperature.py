from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.sampling import entropy_curve, temperature_bars
from engine.decoding.sampling import apply_temperature, entropy_bits
from engine.tokens.offsets import visible
from ui import concept_page, prompt_input
from ui.cached import continuation, next_token
from ui.charts import figure, show_chart
from ui.sampling import chart_label, temperature_curve, token_texts
from ui.text import escape_markdown
from ui.inputs import stop_if_empty, whole_number_input

PROMPT_KEY = "prompt"
DEFAULT_PROMPT = "My favourite food is"
PRESETS = {"confident": ["The capital of France is", "The opposite of hot is"],
           "open": ["My favourite food is", "Once upon a time, there was a"]}


def use_prompt(text: str) -> None:
    st.session_state[PROMPT_KEY] = text


def t_label(t: float) -> str:
    return "T = 0 (greedy)" if t <= 0 else f"T = {t:.2f}"


with concept_page("temperature"):
    prompt = prompt_input(PROMPT_KEY, DEFAULT_PROMPT, "Prompt", height=80)
    for kind, icon, label in [("confident", ":material/target:", "Confident"), ("open", ":material/casino:", "Open")]:
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            st.markdown(f"{icon} **{label}** next token:", width=190)
            for i, text in enumerate(PRESETS[kind]):
                st.button(text, key=f"preset-{kind}-{i}", on_click=use_prompt, args=(text,), width="content")

    left, right = st.columns([3, 1])
    t = left.slider("Temperature T", 0.0, 2.0, 0.7, 0.05, key="t", bind="query-params",
                    help="The logits are divided by T before the softmax. T = 1 is the model's own distribution; "
                         "T = 0 means greedy: always the single most likely token.")
    top_n = right.slider("Tokens shown", 5, 25, 12, key="top", bind="query-params",
                         help="The most likely tokens are drawn; all 49,152 are reshaped and counted.")

    stop_if_empty(prompt, "Type a prompt above, or pick one of the presets, to see how temperature reshapes the "
                          "model's next-token distribution.")

    dist = next_token(prompt)               # cached: moving T runs no forward pass
    original = dist.probabilities
    scaled = apply_temperature(dist.logits, t)
    order = np.argsort(-original, kind="stable")[:top_n]   # T never changes the ranking
    texts = token_texts(tuple(int(i) for i in order))
    labels = [chart_label(s) for s in texts]
    h1, ht = dist.entropy_bits, entropy_bits(scaled)
    argmax = int(np.argmax(dist.logits))

    m1, m2, m3, m4 = st.columns(4)
    m1.metric(f"Entropy at {t_label(t)}", f"{ht:.2f} bits", f"{ht - h1:+.2f} bits vs T = 1",
              delta_color="off",
              help="How spread out the choice is. 0 bits: one certain token. The maximum, all 49,152 tokens "
                   f"equally likely, is {np.log2(dist.logits.size):.1f} bits.")
    m2.metric("Top token's probability", f"{100 * scaled[argmax]:.1f}%",
              f"{100 * (scaled[argmax] - original[argmax]):+.1f} points vs T = 1", delta_color="off",
              help=f"The most likely token, {escape_markdown(visible(texts[0]))}, is the same at every T > 0.")
    m3.metric("Like choosing among", f"{2 ** ht:,.1f} tokens",
              help="2 to the power of the entropy: the number of equally likely tokens with the same "
                   "uncertainty (the perplexity of this one step).")
    outside, outside1 = 1.0 - float(scaled[order].sum()), 1.0 - float(original[order].sum())
    m4.metric(f"Mass outside the top {top_n}", f"{100 * outside:.1f}%",
              f"{100 * (outside - outside1):+.1f} points vs T = 1", delta_color="off",
              help="Probability spread over the tokens not drawn. A high T moves mass into this long tail.")
    show_chart(
        figure(temperature_bars, labels, [int(i) for i in order], original[order], scaled[order], t,
                         title=f"Next token after your {len(dist.prompt_ids)}-token prompt: "
                               f"{t_label(t)} against T = 1"),
        partial(pd.DataFrame, {"rank": range(1, len(order) + 1), "token": texts, "token_id": order,
                      "logit": dist.logits[order], "probability_T1": original[order],
                      f"probability_T{t:.2f}": scaled[order]}),
        name=f"temperature-{t:.2f}-distribution", key="temperature_chart")
    st.caption("Dividing every logit by the same T never changes their order, so the bars keep their ranking; "
               "only the gaps between them grow (T < 1) or shrink (T > 1).")

    st.subheader("Entropy against temperature", anchor=False)
    curve = temperature_curve(prompt)
    show_chart(
        figure(entropy_curve, curve.temperatures, curve.entropies, curve.top1, t, ht, float(scaled[argmax]),
                      title="How spread out this prompt's next-token distribution is at each T"),
        partial(pd.DataFrame, {"temperature": curve.temperatures, "entropy_bits": curve.entropies,
                      "top_token_probability": curve.top1}),
        name="entropy-vs-temperature", key="entropy_curve")

    greedy = continuation(prompt, 1)     # T = 0 in the generator: the greedy path
    greedy_id = greedy.new_ids[0] if greedy.new_ids else None
    argmax_text = escape_markdown(visible(token_texts((argmax,))[0]))
    coldest = float(curve.top1[0])
    coldest_text = "more than 99.99%" if coldest > 0.9999 else f"{100 * coldest:.2f}%"
    if greedy_id == argmax:
        st.success(f"**T → 0 is greedy decoding.** The largest logit belongs to **{argmax_text}** "
                   f"(id {argmax}). At T = {curve.temperatures[0]:.2f} it already holds {coldest_text} "
                   f"of the probability; at T = 0 this page gives it all of it (no division by zero). "
                   "Checked: the app's greedy generator picks the same token first.",
                   icon=":material/check_circle:")
    else:
        st.warning(f"The argmax token (id {argmax}) and the greedy generator's first token "
                   f"(id {greedy_id}) differ here: a near tie between the top logits.", icon=":material/warning:")

    st.subheader("Sample continuations at this temperature", anchor=False)
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1], vertical_alignment="bottom")
    n_samples = c1.slider("Samples", 1, 8, 4, key="n", bind="query-params")
    length = c2.slider("Length (tokens)", 5, 40, 15, key="len", bind="query-params")
    seed = whole_number_input("Seed", 0, 1_000_000, 0, "seed", container=c3,
                              help="Sample i uses seed + i, so the same link gives the same samples.")
    run = c4.toggle("Generate samples", value=False, key="sample", bind="query-params",
                    help="Sampling runs the model once per token (about 1 s per 20 tokens on this CPU), "
                         "so it only runs while this is on.")
    if not run:
        st.info(f"Switch on **Generate samples** to draw {n_samples} continuation(s) of {length} tokens at "
                f"{t_label(t)}. While it is on, they are redrawn whenever T or these settings change.",
                icon=":material/casino:")
    else:
        bar = st.progress(0.0, text="Sampling...")
        samples = []
        for i in range(n_samples):
            bar.progress(i / n_samples, text=f"Sampling continuation {i + 1} of {n_samples} at {t_label(t)}...")
            samples.append(continuation(prompt, length, temperature=t, seed=seed + i))
        bar.empty()
        distinct = len({s.new_text for s in samples})
        mean_probs = [float(np.mean(s.chosen_probabilities)) if s.chosen_probabilities else 0.0 for s in samples]
        m1, m2 = st.columns(2)
        m1.metric("Different continuations", f"{distinct} of {n_samples}",
                  help="At T = 0 every sample is the greedy continuation, so they are all the same.")
        m2.metric("Average per-token probability", f"{100 * float(np.mean(mean_probs)):.1f}%",
                  help="For each sampled token, the probability the model gave it at T = 1; averaged over "
                       "each sample's tokens and then over the samples. Low T picks likely tokens; "
                       "high T reaches into the tail.")
        for i, (s, mp) in enumerate(zip(samples, mean_probs)):
            with st.container(border=True):
                st.caption(f"Sample {i + 1} · seed {seed + i} · {len(s.new_ids)} tokens · average per-token "
                           f"probability {100 * mp:.1f}%" + (" · stopped at end-of-text" if s.stopped_at_eos else ""))
                st.text(prompt + s.new_text)
        st.download_button(
            "Samples (CSV)", pd.DataFrame({
                "sample": range(1, n_samples + 1), "seed": [seed + i for i in range(n_samples)],
                "temperature": t, "continuation": [s.new_text for s in samples],
                "average_token_probability": mean_probs}).to_csv(index=False).encode("utf-8"),
            file_name=f"samples-T{t:.2f}.csv", mime="text/csv", key="samples-csv", icon=":material/download:")
        st.caption("SmolLM2-135M is an instruct model used here as a plain text completer (no chat template), "
                   "so it continues your text rather than answering it.")
