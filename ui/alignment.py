"""The alignment page's model work: first steps cached by their text, answers and refusal sweeps as jobs."""
from __future__ import annotations

import streamlit as st

from engine.decoding.bounded_generation import BoundedGeneration, generate_bounded
from engine.runtime.jobs import Job, JobContext, job_registry
from engine.tokens.offsets import token_ids
from engine.using.alignment import CAUTION_LEVELS, FirstStep, RefusalScores, first_step, refusal_ids, score_refusals
from ui.models import lm

ANSWER_BUDGET_S = 20.0      # per generated answer
SWEEP_BUDGET_S = 240.0


@st.cache_data(max_entries=128, show_spinner=False)
def cached_first_step(text: str) -> FirstStep:
    """The next-token distribution after `text` and the refusal openings' log-probabilities (two passes)."""
    model = lm()
    return first_step(model, token_ids(model, text), refusal_ids(model))


def answers_job(chat_text: str, plain_text: str, max_new_tokens: int) -> Job:
    """The greedy reply inside the chat template and the plain continuation, each bounded in tokens and time."""
    model = lm()

    def work(ctx: JobContext) -> tuple[BoundedGeneration, BoundedGeneration]:
        ctx.report(0.0, "Writing the reply inside the chat template...")
        chat = generate_bounded(model, chat_text, max_new_tokens, ANSWER_BUDGET_S, ctx.should_stop)
        ctx.report(0.5, "Continuing the plain text (no template)...")
        plain = generate_bounded(model, plain_text, max_new_tokens, ANSWER_BUDGET_S, ctx.should_stop)
        return chat, plain

    return job_registry().submit(("alignment answers", chat_text, plain_text, int(max_new_tokens)), work,
                                 title="Replies with and without the chat template",
                                 budget_s=2 * ANSWER_BUDGET_S + 10)


def refusal_job(requests: tuple[str, ...], kinds: tuple[str, ...]) -> Job:
    """P(refusal opening) for every request under every caution level; the bundled set is shared by all readers."""
    model = lm()

    def work(ctx: JobContext) -> RefusalScores:
        def on_step(done: int, total: int) -> None:
            level = CAUTION_LEVELS[min((done - 1) // len(requests), len(CAUTION_LEVELS) - 1)].name
            ctx.report(done / total, f"Scored {done} of {total} chats (caution level {level})")
        return score_refusals(model, requests, kinds, on_step=on_step, should_stop=ctx.should_stop)

    return job_registry().submit(("alignment refusals", requests, kinds), work,
                                 title="Refusal probability by caution level", budget_s=SWEEP_BUDGET_S)
