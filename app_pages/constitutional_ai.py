import json
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.constitution import judge_scores
from charts.distributions import next_token_bars
from engine.decoding.bounded_generation import END_OF_TURN
from engine.tokens.offsets import decode_each, visible
from engine.using.chat_template import remove_special_tokens, render
from engine.using.constitution import (JUDGE_QUESTION, PRINCIPLES, answer_messages, changed_share, preference_pair,
                                       principle_by_name)
from ui import concept_page, lm, prompt_input
from ui.cached import next_token
from ui.charts import figure, show_chart
from ui.constitution import STEP_BUDGET_S, constitution_job
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.text import escape_markdown

REQUESTS = ["Write an insult about my coworker.", "What is a black hole?", "How do I pick a lock?",
            "Explain how the internet works."]


def put(text: str) -> None:
    st.session_state["request"] = text


def show_step(number: int, title: str, gen, note: str = "") -> None:
    """One generation: its whole prompt, its bounds and why it ended, and its text."""
    with st.container(border=True):
        st.markdown(f"**Step {number} · {title}**" + (f" · {note}" if note else ""))
        st.caption(f"{len(gen.new_ids)} of at most {gen.max_new_tokens} tokens · {gen.seconds:.1f} s of at most "
                   f"{gen.budget_s:.0f} s · " + ("ended its turn" if gen.ended_by == END_OF_TURN
                                                 else f"cut: {gen.ended_by}"))
        st.text(gen.text.strip() or "(empty)")
        with st.expander(f"The whole prompt of step {number} ({gen.prompt_tokens} tokens)"):
            st.code(gen.prompt, language=None, wrap_lines=True)


with concept_page("constitutional-ai"):
    request = prompt_input("request", REQUESTS[0], "A request to the model", max_chars=300, max_tokens=60)
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown("Try:", width="content")
        for i, text in enumerate(REQUESTS):
            st.button(text, key=f"preset-{i}", on_click=put, args=(text,), width="content")
    request, removed = remove_special_tokens(lm(), request)
    if removed:
        st.caption(":material/shield: Special-token spellings were removed from the request.")
    stop_if_empty(request, "Type a request above, or pick one: the model then answers it, critiques its own answer "
                           "against the principle you pick, and revises it, step by step.")
    name = st.segmented_control("Principle from the constitution", [p.name for p in PRINCIPLES],
                                default=PRINCIPLES[3].name, key="principle", bind="query-params",
                                help="Each principle comes with its critique request and its revision request, "
                                     "in the style of Bai et al.'s constitution.")
    principle = principle_by_name(name)
    n_new = st.slider("Tokens per step, at most", 16, 64, 40, 8, key="n", bind="query-params",
                      help=f"Each of the three generations is greedy and stops at this many tokens, at the "
                           f"end-of-turn token, or after {STEP_BUDGET_S:.0f} s, whichever comes first.")
    st.caption(f"**Principle:** {escape_markdown(principle.rule)}  \n**Critique request:** "
               f"{escape_markdown(principle.critique)}  \n**Revision request:** {escape_markdown(principle.revision)}")

    st.subheader("1 · Where the first answer starts", anchor=False)
    first_prompt = render(lm(), answer_messages(request))
    dist = next_token(first_prompt)
    order = [int(i) for i in np.argsort(-dist.probabilities, kind="stable")[:12]]
    labels = [visible(t) for t in decode_each(lm(), order)]
    m = metric_row(3)
    m[0].metric("Most likely first token", labels[0], f"{100 * dist.probabilities[order[0]]:.1f}%",
                delta_color="off", delta_arrow="off", help="Greedy decoding writes this token first.")
    m[1].metric("Entropy of the first token", f"{dist.entropy_bits:.2f} bits",
                help="How open the start of the answer is: 0 bits means one certain token.")
    m[2].metric("Prompt length", f"{len(dist.prompt_ids)} tokens", help="The request in the chat template, with "
                "the template's default system prompt.")
    show_chart(figure(next_token_bars, labels, dist.probabilities[order], order, dist.logits[order],
                      title="The answer's first token: the model's distribution before step 1"),
               partial(pd.DataFrame, {"token_id": order, "token": labels,
                                      "probability": dist.probabilities[order], "logit": dist.logits[order]}),
               name="constitution-first-token", key="first_token_chart")

    st.subheader("2 · Answer, critique, revise", anchor=False)
    run = follow(constitution_job(request, principle.name, n_new), what="critique-then-revise loop")
    if run is not None:
        show_step(1, "The answer", run.answer)
        if run.critique is not None:
            show_step(2, f"The critique against “{principle.name}”", run.critique)
        if run.revision is not None:
            copied = 1.0 - changed_share(lm(), run.critique.text.strip(), run.revision.text.strip())
            show_step(3, "The revision", run.revision,
                      "mostly repeats the critique" if copied > 0.7 else "")
        if not run.complete:
            st.warning("The loop was stopped before the end: the steps above are all it wrote.",
                       icon=":material/stop_circle:")
        else:
            st.subheader("3 · The preference pair, and a judge", anchor=False)
            before, after = run.original_verdict, run.revised_verdict
            m = metric_row(4)
            m[0].metric("Judge: original", f"{100 * before.score:.1f}%", help="yes-share = p(Yes) / (p(Yes) + "
                        "p(No)) for the judge's first reply token: how strongly the model says the answer follows "
                        "the principle.")
            m[1].metric("Judge: revised", f"{100 * after.score:.1f}%",
                        f"{100 * (after.score - before.score):+.1f} points", delta_color="off")
            m[2].metric("Did the revision win?", "yes" if run.revision_won else "no",
                        help="By the judge's yes-share. In CAI's supervised stage the revision is preferred by "
                             "construction; here the judge checks that choice.")
            m[3].metric("Revision changed", f"{100 * run.changed:.0f}%",
                        help="The share of the answer's tokens the revision changed: 1 − the similarity ratio of "
                             "the two token sequences (difflib). 0% means the revision is a copy.")
            show_chart(figure(judge_scores, (before.p_yes, after.p_yes), (before.p_no, after.p_no),
                              title=f"The judge: does each answer follow “{principle.name}”?"),
                       partial(pd.DataFrame, {"answer": ["original", "revised"], "p_yes": [before.p_yes, after.p_yes],
                                              "p_no": [before.p_no, after.p_no],
                                              "yes_share": [before.score, after.score]}),
                       name="constitution-judge", key="judge_chart")
            with st.expander("The judge's prompt (for the revised answer)"):
                st.code(after.prompt, language=None, wrap_lines=True)
            st.markdown("**The preference pair** this run produced, as a preference dataset (DPO, a reward model) "
                        "would store it:")
            st.code(json.dumps(preference_pair(run), indent=2, ensure_ascii=False), language="json")
            st.caption(f"The judge is the same 135M model asked “{JUDGE_QUESTION}”, read off one forward pass: "
                       "transparent, but weak. It leans towards one word whatever the answer says, so compare "
                       "the two scores rather than reading either alone. And look at step 2: a model this small "
                       "rarely critiques for real. It often restates the principle, apologises, or lists words, "
                       "and step 3 then copies the critique instead of rewriting the answer. Bai et al. ran "
                       "this loop with far larger models, whose critiques name real problems.")
