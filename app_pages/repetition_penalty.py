from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.penalties import penalty_bars
from engine.decoding.strategies import distinct_ngrams, repeated_spans
from engine.decoding.penalties import Penalty, penalized
from engine.tokens.offsets import visible
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.decoding import pieces, prompt_ids, text_of
from ui.inputs import stop_if_empty
from ui.layout import metric_row
from ui.penalties import penalized_run
from ui.text import described_metric, escape_markdown

PROMPT_KEY = "prompt"
DEFAULT_PROMPT = "I love you. I love you. I"
PRESETS = {"A loop": DEFAULT_PROMPT,
           "Code (repeats are right)": "for i in range(3):\n    print(i)\nfor j in range(3):\n   ",
           "Names (repeats are right)": "Alice and Bob went to the market. At the market, Alice bought apples and",
           "A list": "Colours: red, green, blue, yellow,"}
SHOWN_SEEN = 10
STEPS = 24


def use_prompt(text: str) -> None:
    st.session_state[PROMPT_KEY] = text


with concept_page("repetition-penalty"):
    prompt = prompt_input(PROMPT_KEY, DEFAULT_PROMPT, "Prompt", height=80)
    with st.container(horizontal=True, gap="small"):
        for i, (name, text) in enumerate(PRESETS.items()):
            st.button(name, key=f"preset-{i}", on_click=use_prompt, args=(text,), width="content")
    stop_if_empty(prompt, "Type a prompt above (or pick a preset) to see what a repetition penalty does to the "
                          "model's real logits and to its greedy output.")
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1.1], vertical_alignment="bottom")
    theta = c1.slider("Multiplicative θ (CTRL)", 1.0, 2.0, 1.3, 0.05, key="theta", bind="query-params",
                      help="Seen tokens: a positive logit is divided by θ, a negative one multiplied by θ. 1 = off.")
    alpha = c2.slider("Frequency α", 0.0, 2.0, 0.5, 0.1, key="alpha", bind="query-params",
                      help="Seen tokens lose α for every time they have appeared. 0 = off.")
    beta = c3.slider("Presence β", 0.0, 2.0, 1.0, 0.1, key="beta", bind="query-params",
                     help="Seen tokens lose β once, however often they appeared. 0 = off.")
    count_prompt = c4.toggle("Count the prompt's tokens", value=True, key="prompt_counts", bind="query-params",
                             help="transformers counts the prompt as already seen; OpenAI's frequency and presence "
                                  "penalties count only the generated text.")
    penalties = {"none": Penalty("multiplicative", 1.0, count_prompt),
                 f"multiplicative θ={theta:.2f}": Penalty("multiplicative", theta, count_prompt),
                 f"frequency α={alpha:.1f}": Penalty("frequency", alpha, count_prompt),
                 f"presence β={beta:.1f}": Penalty("presence", beta, count_prompt)}

    ids = prompt_ids(prompt)
    base = penalized_run(prompt, "multiplicative", 1.0, count_prompt, STEPS)
    logits, seen = base.first_logits, list(base.first_seen)
    st.subheader("The first step's logits, before and after", anchor=False)
    if not seen:
        st.info("Nothing has been seen yet at the first step: with the prompt not counted, the penalties start "
                "to act from the second generated token. Switch **Count the prompt's tokens** on to see them here.",
                icon=":material/info:")
    else:
        seen_ids = sorted(set(seen), key=lambda t: -logits[t])[:SHOWN_SEEN]
        counts = [seen.count(t) for t in seen_ids]
        after = {name: penalized(logits, seen, p)[seen_ids] for name, p in list(penalties.items())[1:]}
        labels = [visible(t) for t in pieces(tuple(seen_ids))]
        show_chart(figure(penalty_bars, labels, counts, logits[seen_ids].tolist(),
                          {name: values.tolist() for name, values in after.items()},
                          title=f"Logits of the {len(seen_ids)} likeliest already-seen tokens at the first new token"),
                   partial(pd.DataFrame, {"token": labels, "token_id": seen_ids, "times_seen": counts,
                                          "logit": logits[seen_ids]} | {k: v for k, v in after.items()}),
                   name="penalized-logits", key="logits_chart")
        top_before = int(np.argmax(logits))
        m = metric_row(4)
        described_metric(m[0], "Top token, no penalty", visible(pieces((top_before,))[0]),
                         f"logit {logits[top_before]:.2f}" + (", already seen" if top_before in seen else ""))
        for slot, (name, p) in zip(m[1:], list(penalties.items())[1:]):
            top = int(np.argmax(penalized(logits, seen, p)))
            described_metric(slot, f"Top token, {name.split()[0]}", visible(pieces((top,))[0]),
                             "changed" if top != top_before else "unchanged")
        lowest = int(np.argmin(logits))
        z_low, negatives = float(logits[lowest]), int((logits < 0).sum())
        seen_negative = sum(logits[t] < 0 for t in set(seen))
        st.markdown(
            f"**Why the sign matters.** {negatives:,} of the {logits.size:,} logits at this step are negative "
            f"({seen_negative} of them belong to already-seen tokens). The lowest is {z_low:.2f}, for "
            f"{escape_markdown(visible(pieces((lowest,))[0]))}. Were it seen, θ = {theta:.2f} would take it to "
            f"{z_low * theta:.2f} (multiplied: less likely), whereas dividing it, as the CTRL paper's formula "
            f"reads, would give {z_low / theta:.2f}: more likely, the opposite of a penalty. Frequency and presence "
            "penalties subtract, so the sign does not matter to them.")

    st.subheader(f"Greedy generation, {STEPS} tokens, with each penalty", anchor=False)
    rows = []
    for name, p in penalties.items():
        run = penalized_run(prompt, p.kind, p.strength, p.count_prompt, STEPS)
        new = list(run.new_ids)
        loops = repeated_spans(new)
        rows.append({"penalty": name, "continuation": text_of(tuple(new)),
                     "distinct 2-grams": distinct_ngrams(new, 2) if len(new) > 1 else float("nan"),
                     "longest loop (tokens)": max((size * reps for _, size, reps in loops), default=0),
                     "prompt tokens reused": sum(t in set(ids) for t in new)})
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "distinct 2-grams": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0,
                                                           help="Share of the output's token pairs that are new."),
        "prompt tokens reused": st.column_config.NumberColumn(help="Generated tokens that also occur in the prompt: "
                                                              "for code or names, reusing them is correct.")})
    st.markdown("  \n".join(f"**{escape_markdown(r['penalty'])}:** *{escape_markdown(prompt.rstrip())}*"
                            f"{escape_markdown(r['continuation'])}" for r in rows))
    st.caption("A penalty cannot tell a bad repeat from a good one: in code, variable names and keywords must come "
               "back, and in a story the characters' names must too. Try the code and names presets with strong "
               "penalties to watch the output drift to other tokens.")
