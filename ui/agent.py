"""The agents page's model work: the loop's first decision (cached, drawn at once) and the whole bounded loop as a
job keyed by every input that shapes it. The vocabulary and the handbook titles come from the tool-use page's
shared pieces."""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.using.agent import AgentRun, Decision, first_decision, run_agent
from ui.models import lm
from ui.tool_use import titles, vocabulary

# The loop checks its own time limit before each step; a step already started finishes, so the job's hard budget
# leaves room for one more step on a busy server.
JOB_MARGIN_S = 60


@st.cache_data(max_entries=64, show_spinner=False)
def opening_decision(question: str, thought_tokens: int) -> Decision:
    return first_decision(lm(), question, titles(), thought_tokens)


def agent_job(question: str, thought_tokens: int, step_limit: int, token_budget: int, time_limit_s: int,
              forced: tuple[tuple[int, str], ...]) -> Job:
    model, vocab, known = lm(), vocabulary(), titles()

    def work(ctx: JobContext) -> AgentRun:
        return run_agent(model, question, vocab, known, thought_tokens=thought_tokens, step_limit=step_limit,
                         token_budget=token_budget, time_limit_s=time_limit_s, forced=dict(forced),
                         on_step=ctx.report, stop_requested=ctx.stop_requested)

    key = ("agent loop", question, thought_tokens, step_limit, token_budget, time_limit_s, forced)
    return job_registry().submit(key, work, title="An agent loop", budget_s=time_limit_s + JOB_MARGIN_S)
