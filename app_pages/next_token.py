from functools import partial

import pandas as pd
import streamlit as st

from charts.distributions import next_token_bars
from engine.tokens.offsets import visible
from ui import concept_page, lm, prompt_input
from ui.cached import continuation, next_token
from ui.charts import figure, show_chart
from ui.text import escape_markdown
from ui.inputs import stop_if_empty

PROMPT_KEY = "prompt"
DEFAULT_PROMPT = "The capital of France is"


def append_to_prompt(text: str) -> None:
    st.session_state[PROMPT_KEY] = st.session_state.get(PROMPT_KEY, "") + text


with concept_page("next-token"):
    prompt = prompt_input(PROMPT_KEY, DEFAULT_PROMPT, "Prompt", height=90)
    left, right = st.columns([3, 1])
    with right:
        k = st.slider("Tokens shown (top-k)", 3, 30, 10, key="k", bind="query-params",
                      help="How many of the most likely next tokens to list. The model scores all 49,152.")
        show_greedy = st.toggle("Greedy continuation", value=False, key="greedy", bind="query-params",
                                help="Keep taking the single most likely token, one step at a time.")
        greedy_len = st.slider("Continuation length (tokens)", 5, 60, 20, key="greedy_len", bind="query-params",
                               disabled=not show_greedy)

    stop_if_empty(prompt, "Type a prompt above, for example *The capital of France is*, to see what the model "
                          "expects next.")

    dist = next_token(prompt)
    top = dist.top(lm(), k)
    with left:
        show_chart(figure(next_token_bars, [visible(t.text) for t in top], [t.probability for t in top],
                                   [t.id for t in top], [t.logit for t in top],
                                   title=f"What SmolLM2 expects after your {len(dist.prompt_ids)}-token prompt"),
                   partial(pd.DataFrame, {"rank": range(1, len(top) + 1), "token": [t.text for t in top],
                                 "token_id": [t.id for t in top], "logit": [t.logit for t in top],
                                 "probability": [t.probability for t in top]}),
                   name="next-token-probabilities", key="next_token_chart")
        a, b, c = st.columns(3)
        a.metric(f"Top token: {escape_markdown(visible(top[0].text))}", f"{100 * top[0].probability:.1f}%",
                 help=f"Token id {top[0].id}, logit {top[0].logit:.2f}. ␣ marks a leading space.")
        b.metric("Top-k covers", f"{100 * sum(t.probability for t in top):.1f}%",
                 help=f"Share of the probability mass held by the {k} tokens shown; the rest is spread "
                      f"over the other {dist.logits.size - k:,} tokens.")
        c.metric("Uncertainty (entropy)", f"{dist.entropy_bits:.2f} bits",
                 help="0 bits: the model is certain. Each extra bit doubles the number of equally likely choices.")

    st.markdown("**Autocomplete by hand:** click a token to append it to the prompt and see the next step.")
    chip_cols = st.columns(min(len(top), 6))
    for i, t in enumerate(top):
        chip_cols[i % len(chip_cols)].button(
            f"{escape_markdown(visible(t.text))}  ·  {100 * t.probability:.1f}%", key=f"append-{i}",
            on_click=append_to_prompt, args=(t.text,), use_container_width=True,
            help=f"Append token id {t.id}")

    if show_greedy:
        with st.spinner(f"Generating {greedy_len} tokens greedily..."):
            gen = continuation(prompt, greedy_len)
        st.markdown("**Greedy continuation** (each step takes the most likely token):")
        with st.container(border=True):
            st.text(prompt + gen.new_text)
        st.caption(f"{len(gen.new_ids)} tokens at {gen.tokens_per_second:.1f} tokens/s on this server's CPU"
                   + (" · stopped at the end-of-text token" if gen.stopped_at_eos else "")
                   + ". The model is an *instruct* model used here as a plain text completer, without its "
                     "chat template, so it continues your text rather than answering it.")
        st.button("Append this continuation to the prompt", on_click=append_to_prompt, args=(gen.new_text,),
                  icon=":material/playlist_add:")
