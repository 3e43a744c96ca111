import time
from functools import partial

import pandas as pd
import streamlit as st

from charts.speculative import first_round_bars, rounds_chart
from engine.decoding.speculative import EARLY_EXIT, LOOKUP
from engine.tokens.offsets import visible
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.decoding import pieces, text_of
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.speculative import checked_first_round, comparison_job
from ui.text import described_metric, escape_markdown

PROMPT_KEY = "prompt"
DEFAULT_PROMPT = "The cat sat on the mat. The dog sat on the log. The cat"
PRESETS = ["The cat sat on the mat. The dog sat on the log. The cat",
           "List the planets of the solar system: Mercury, Venus, Earth,",
           "def add(a, b):\n    return a + b\n\ndef add_three(a, b, c):\n"]
DRAFTERS = {"Prompt lookup": LOOKUP, "Early exit": EARLY_EXIT}   # shown names (and link values) -> engine names
TIME_BUDGET_S = 90
AGAIN_FLAG = "_spec_measure_again"


def use_prompt(text: str) -> None:
    st.session_state[PROMPT_KEY] = text


def coloured_output(run) -> str:
    """The output, token by token: accepted drafts green, the full model's own tokens blue."""
    parts, shown = [], 0
    for r in run.rounds:
        ids = r.new_ids[:len(run.new_ids) - shown]
        for i, piece in enumerate(pieces(tuple(ids))):
            colour = "green" if i < r.accepted else "blue"
            parts.append(f":{colour}-background[{escape_markdown(visible(piece))}]")
        shown += len(ids)
    return " ".join(parts)


with concept_page("speculative-decoding"):
    layers = lm().model.config.num_hidden_layers
    prompt = prompt_input(PROMPT_KEY, DEFAULT_PROMPT, "Prompt", max_tokens=120, height=80,
                          help="Greedy decoding continues this text twice: plainly and speculatively.")
    with st.container(horizontal=True, gap="small"):
        for i, text in enumerate(PRESETS):
            st.button(escape_markdown(text.split("\n")[0]), key=f"preset-{i}", on_click=use_prompt, args=(text,),
                      width="content")
    stop_if_empty(prompt, "Type a prompt above (or pick one) to decode it speculatively and check it against greedy.")

    left, right = st.columns(2)
    with left:
        chosen = st.segmented_control("Draft", list(DRAFTERS), default="Prompt lookup", key="draft",
                                      bind="query-params",
                                      help="Who proposes the tokens the full model then checks. Prompt lookup "
                                           "copies what followed the same words earlier in the text; early exit "
                                           "runs only the model's first layers.")
        drafter = DRAFTERS.get(chosen, LOOKUP)
        k = st.slider("Tokens drafted per round (k)", 1, 8, 4, key="k", bind="query-params",
                      help="The draft proposes up to k tokens; the full model checks them all in one pass.")
    with right:
        new_tokens = st.slider("New tokens", 8, 64, 32, 4, key="n", bind="query-params",
                               help="How many tokens both runs generate (fewer if the model ends the text).")
        if drafter == LOOKUP:
            ngram = st.slider("Match the last n tokens", 1, 4, 2, key="ngram", bind="query-params",
                              help="Prompt lookup looks for the last n tokens earlier in the text and proposes "
                                   "what followed them there (falling back to shorter matches).")
            exit_layer = layers - 6
        else:
            exit_layer = st.slider("Draft from the first L layers", 1, layers - 1, layers - 6, key="exit",
                                   bind="query-params",
                                   help=f"The draft runs only the first L of the model's {layers} layers, then the "
                                        "final norm and output head.")
            ngram = 2

    preview = checked_first_round(prompt, drafter, k, ngram, exit_layer)
    if preview.drafted:
        show_chart(figure(first_round_bars, [visible(p) for p in pieces(preview.drafted)], preview.draft_probs,
                          preview.accepted, title=f"Round 1, checked now: {preview.accepted} of "
                                                  f"{len(preview.drafted)} drafted tokens accepted"),
                   partial(pd.DataFrame, {"drafted_id": preview.drafted, "model_choice_id": preview.targets,
                                          "model_probability": preview.draft_probs}),
                   name="first-round", key="first_round_chart")
    else:
        st.info("Round 1 has no draft: the last words of the prompt never occurred earlier in it, so prompt lookup "
                "proposes nothing and the model takes a plain greedy step.", icon=":material/search_off:")

    again = bool(st.session_state.pop(AGAIN_FLAG, False))
    result = follow(comparison_job(prompt, new_tokens, drafter, k, ngram, exit_layer, TIME_BUDGET_S, again=again),
                    what="two decoding runs")
    if result is not None:   # while the job runs, its progress shows and the rest of the frame (quiz) follows
        run = result.speculative
        n_out = len(run.new_ids)

        st.markdown(f"**{escape_markdown(prompt.rstrip())}** {coloured_output(run)}")
        st.caption(":green-background[green]: drafted and accepted; :blue-background[blue]: the full model's own token "
                   "(one per round, after the last accepted draft). ␣ is a space, ↵ a new line.")

        a, b, c, d = metric_row(4)
        if result.identical:
            described_metric(a, "Output vs greedy", "identical ✓", f"all {n_out} tokens match",
                             "Compared token id by token id with plain greedy decoding (generate, temperature 0).")
        elif result.identical_so_far:
            described_metric(a, "Output vs greedy", "identical so far ✓", f"{n_out} of {len(result.greedy_ids)} tokens",
                             "The run was stopped early; every token it made matches greedy's.")
        else:
            described_metric(a, "Output vs greedy", "differs ✗", f"first at token {result.first_difference + 1}",
                             "Checking k tokens in one pass adds the same numbers in another order; a near-tie between "
                             "two tokens can flip. The rule itself is exact.")
        rate = f"{100 * run.acceptance_rate:.0f}%" if run.proposed else "–"
        described_metric(b, "Acceptance rate", rate, f"{run.accepted} of {run.proposed} drafted tokens",
                         "Accepted drafted tokens ÷ proposed drafted tokens, over all rounds.")
        described_metric(c, "Full-model passes", f"{run.full_model_passes}", f"greedy needs {len(result.greedy_ids)}",
                         "After reading the prompt: one verification pass per round here, one pass per token for greedy.")
        described_metric(d, "Measured speed-up", f"{result.speedup:.2f}×",
                         f"{result.greedy_s:.2f} s ÷ {run.total_s:.2f} s",
                         "Greedy's time ÷ speculative's time, both timed on this server just now (prefill "
                         "included). Below 1× means slower.")

        per_pass = result.greedy_s / max(len(result.greedy_ids), 1)
        verify = run.verify_s / max(run.full_model_passes, 1)
        st.markdown(f"**Where the time went.** Greedy: {len(result.greedy_ids)} passes of about {1000 * per_pass:.0f} ms. "
                    f"Speculative: {run.full_model_passes} verification passes of about {1000 * verify:.0f} ms each "
                    f"(checking up to {k + 1} tokens costs about as much as one on this CPU: the weights are read once "
                    f"either way), plus {run.draft_s:.2f} s of drafting and {run.prefill_s:.2f} s reading the prompt.")
        if drafter == EARLY_EXIT:
            st.warning(f"**Early-exit drafts are not free.** Each drafted token runs {exit_layer} of {layers} layers over "
                       "the whole text again (this draft keeps no KV cache), so drafting took "
                       f"{run.draft_s:.2f} s. And a 135M model's middle layers rarely agree with its last ones: "
                       "only the top few layers draft tokens the full model accepts.", icon=":material/warning:")
        elif run.proposed == 0:
            st.info("Prompt lookup found nothing to copy: no n-gram of the output occurred earlier, so every round was "
                    "a plain greedy step. Repetitive text (code, lists, quoting the prompt) is where it pays.",
                    icon=":material/search_off:")

        rounds = run.rounds
        show_chart(figure(rounds_chart, [r.accepted for r in rounds], [r.proposed - r.accepted for r in rounds],
                          [" ".join(visible(p) for p in pieces(r.drafted)) or "(nothing)" for r in rounds],
                          [1000 * r.draft_s for r in rounds], [1000 * r.verify_s for r in rounds],
                          title=f"{len(rounds)} rounds: drafted tokens kept, rejected, and the model's own"),
                   partial(pd.DataFrame, {
                       "round": range(1, len(rounds) + 1), "drafted_ids": [" ".join(map(str, r.drafted)) for r in rounds],
                       "proposed": [r.proposed for r in rounds], "accepted": [r.accepted for r in rounds],
                       "model_token_id": [r.model_token for r in rounds], "draft_ms": [1000 * r.draft_s for r in rounds],
                       "verify_ms": [1000 * r.verify_s for r in rounds]}),
                   name="speculative-rounds", key="rounds_chart")

        note, button = st.columns([3, 1.2], vertical_alignment="center")
        measured = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result.measured_at))
        note.caption(f":material/schedule: Measured at {measured} on this server's shared CPU and stored for these "
                     "settings, so a shared link shows the same run. Timings move with the server's load; the tokens, "
                     "the acceptance and the pass counts do not.")
        button.button("Measure again", key="again", icon=":material/refresh:", width="stretch",
                      on_click=st.session_state.__setitem__, args=(AGAIN_FLAG, True))
        if run.stopped_early:
            st.warning(f"Stopped after {n_out} tokens (a Stop press, or the {TIME_BUDGET_S} s budget).",
                       icon=":material/speed:")
        with st.expander("Greedy's text, for comparison"):
            st.text(prompt + text_of(tuple(result.greedy_ids)))
