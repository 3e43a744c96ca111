import math
from functools import partial

import pandas as pd
import streamlit as st

from charts.decoding import greedy_steps
from engine.decoding.strategies import distinct_ngrams, repeated_spans
from engine.tokens.offsets import visible
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.decoding import beam, greedy, pieces, prompt_ids, text_of
from ui.inputs import stop_if_empty
from ui.layout import metric_row
from ui.text import described_metric, escape_markdown

PROMPT_KEY = "prompt"
DEFAULT_PROMPT = "The best way to learn a language is"
PRESETS = ["The best way to learn a language is", "I love you. I love you. I", "def fibonacci(n):",
           "The three primary colours are"]
COMPARE_WIDTH = 4


def use_prompt(text: str) -> None:
    st.session_state[PROMPT_KEY] = text


with concept_page("greedy-decoding"):
    prompt = prompt_input(PROMPT_KEY, DEFAULT_PROMPT, "Prompt", height=80)
    with st.container(horizontal=True, gap="small"):
        for i, text in enumerate(PRESETS):
            st.button(text, key=f"preset-{i}", on_click=use_prompt, args=(text,), width="content")
    stop_if_empty(prompt, "Type a prompt above (or pick one) to watch greedy decoding choose one token at a time.")
    steps = st.slider("New tokens", 4, 32, 20, key="steps", bind="query-params",
                      help="How many tokens greedy decoding adds (it stops earlier at end-of-text).")

    trace = greedy(prompt, steps)
    if not trace.steps:
        st.info("The model ended the text at once. Try another prompt.", icon=":material/edit:")
        st.stop()
    new_ids = trace.new_ids
    labels = [visible(t) for t in pieces(tuple(new_ids))]
    runner_ids = tuple(s.top_ids[1] for s in trace.steps)
    runner_labels = [visible(t) for t in pieces(runner_ids)]
    loops = repeated_spans(new_ids)
    in_loop = [any(start <= i < start + size * reps for start, size, reps in loops) for i in range(len(new_ids))]
    closest = min(range(len(trace.steps)), key=lambda i: trace.steps[i].margin)

    st.markdown(f"**{escape_markdown(prompt.rstrip())}**{escape_markdown(text_of(tuple(new_ids)))}")
    c1, c2, c3, c4 = metric_row(4)
    described_metric(c1, "Log-probability of the output", f"{trace.logprob:.2f}",
                     f"p = {math.exp(trace.logprob):.2e} for all {len(new_ids)} tokens",
                     help="The sum of ln p of each chosen token: how likely the model finds this whole "
                          "continuation. Greedy maximises each step, not this sum.")
    described_metric(c2, "Mean chosen probability", f"{100 * sum(math.exp(s.logprob) for s in trace.steps) / len(new_ids):.1f}%",
                     "the winner's share, averaged over the steps")
    described_metric(c3, "Closest call", f"step {closest + 1}",
                     f"margin {100 * trace.steps[closest].margin:.1f} points over {runner_labels[closest]}",
                     help="The step where the top choice beat the runner-up by the least: a near coin flip "
                          "that greedy resolves the same way every time.")
    described_metric(c4, "Distinct 2-grams", f"{100 * distinct_ngrams(new_ids, 2):.0f}%" if len(new_ids) > 1 else "–",
                     "of the output's token pairs", help="100% means no pair of tokens repeats; loops lower it.")

    show_chart(figure(greedy_steps, labels, [math.exp(s.logprob) for s in trace.steps],
                      [s.top_probs[1] for s in trace.steps], runner_labels, in_loop,
                      title="Each step: the token greedy took and the one it passed over"),
               partial(pd.DataFrame, {
                   "step": range(1, len(new_ids) + 1), "chosen": labels, "chosen_id": new_ids,
                   "chosen_probability": [math.exp(s.logprob) for s in trace.steps], "runner_up": runner_labels,
                   "runner_up_probability": [s.top_probs[1] for s in trace.steps],
                   "margin": [s.margin for s in trace.steps], "in_loop": in_loop}),
               name="greedy-steps", key="steps_chart")

    if loops:
        start, size, reps = max(loops, key=lambda l: l[1] * l[2])
        block = escape_markdown(visible(text_of(tuple(new_ids[start:start + size]))))
        st.warning(f"**A repetition loop.** From step {start + 1}, the block *{block}* ({size} tokens) comes "
                   f"{reps} times in a row. Once a loop starts, each repeat makes the next more likely, and greedy "
                   "decoding has no way out: it always takes the top token.", icon=":material/repeat:")
    else:
        st.success("No repeated block in this output. Try the preset *I love you. I love you. I* or more new "
                   "tokens to see greedy decoding fall into a loop.", icon=":material/check_circle:")

    st.subheader("Greedy is not the likeliest text", anchor=False)
    result = beam(prompt, COMPARE_WIDTH, len(new_ids), 0.0)
    beam_ids = result.best_tokens
    b1, b2 = metric_row(2)
    described_metric(b1, "Greedy: log-probability", f"{trace.logprob:.2f}", f"{len(new_ids)} tokens")
    described_metric(b2, f"Beam search ({COMPARE_WIDTH} beams): log-probability", f"{result.logprob(result.best):.2f}",
                     f"{len(beam_ids)} tokens")
    st.markdown(f"Beam search: **{escape_markdown(prompt.rstrip())}**{escape_markdown(text_of(tuple(beam_ids)))}")
    gap = result.logprob(result.best) - trace.logprob
    if gap > 1e-3 and len(beam_ids) == len(new_ids):
        st.caption(f"Keeping {COMPARE_WIDTH} candidates found a continuation of the same length {math.exp(gap):,.1f} "
                   "times as likely as greedy's: an early token with a lower probability led to much likelier "
                   "tokens after it.")
    else:
        st.caption("Here beam search found nothing likelier than greedy's choice (or a text of another length, "
                   "which is not directly comparable); the beam-search page shows its whole tree.")
