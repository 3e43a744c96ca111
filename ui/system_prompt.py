"""The system-prompt page's model work: the chat rendered to role-marked tokens (cached), the answers as a job."""
from __future__ import annotations

import streamlit as st

from engine.using.chat_template import AnswerComparison, RenderedChat, chat_messages, compare_answers, render_tokens
from engine.runtime.jobs import Job, JobContext, job_registry
from ui.models import lm

ANSWER_BUDGET_S = 90


@st.cache_data(max_entries=128, show_spinner=False)
def rendered_chat(system: str, user: str) -> RenderedChat:
    """The chat (an empty system prompt left out, so the template's default applies) as role-marked tokens."""
    return render_tokens(lm(), chat_messages(system, user))


def answers_job(first_text: str, second_text: str, max_new_tokens: int) -> Job:
    """Both greedy answers and the per-position divergence along each, keyed by the two rendered chats."""
    model = lm()

    def work(ctx: JobContext) -> AnswerComparison:
        return compare_answers(model, first_text, second_text, max_new_tokens,
                               on_step=lambda fraction, what: ctx.report(fraction, f"Generating {what}..."))

    return job_registry().submit(("system prompt answers", first_text, second_text, int(max_new_tokens)), work,
                                 title="Greedy answers under two system prompts", budget_s=ANSWER_BUDGET_S)
