"""The tool-use page's model work: the vocabulary's texts and the handbook titles (read once), the tool
probabilities for a question (cached), and the whole call-run-answer round as a job keyed by the question."""
from __future__ import annotations

import streamlit as st

from concepts.catalogue import load_catalogue
from engine.runtime.jobs import Job, JobContext, job_registry
from engine.tokens.offsets import decode_each
from engine.using.tool_use import tool_probabilities, tool_round
from ui.models import lm

ROUND_BUDGET_S = 120


@st.cache_resource(show_spinner=False)
def vocabulary() -> tuple[str, ...]:
    """Every token id's decoded text, in id order (read-only)."""
    model = lm()
    return tuple(decode_each(model, list(range(len(model.tokenizer)))))


@st.cache_resource(show_spinner=False)
def titles() -> dict[str, str]:
    return {c.slug: c.title for c in load_catalogue().concepts}


@st.cache_data(max_entries=64, show_spinner=False)
def probabilities(question: str, examples: str) -> list[float]:
    return [float(p) for p in tool_probabilities(lm(), question, examples)]


def round_job(question: str, examples: str) -> Job:
    model, vocab, known = lm(), vocabulary(), titles()

    def work(ctx: JobContext):
        return tool_round(model, question, examples, vocab, known, ctx.report, ctx.should_stop)

    return job_registry().submit(("tool round", question, examples), work, title="A tool call", budget_s=ROUND_BUDGET_S)
