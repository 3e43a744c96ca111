"""The build-your-own-engine runs: each configuration is a job keyed by the requests and the switches, so a share
link opens the stored run at once; the plain baseline is the same job with every switch off, shared by all
configurations of the same requests."""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.serving.serving_engine import MAX_REQUESTS, EngineOptions, EngineRun, chat_parts, serve
from engine.tokens.offsets import token_ids
from ui.models import lm

MAX_QUESTION_CHARS = 200


def questions_from(text: str) -> tuple[str, ...]:
    """One request per non-empty line, at most MAX_REQUESTS, each cut to MAX_QUESTION_CHARS characters."""
    lines = (line.strip()[:MAX_QUESTION_CHARS] for line in text.splitlines())
    return tuple(line for line in lines if line)[:MAX_REQUESTS]


@st.cache_data(max_entries=64, show_spinner=False)
def request_ids(system: str, questions: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """(shared prefix ids, each request's own ids), tokenized from the model's chat template."""
    model = lm()
    parts = [chat_parts(model, system, q) for q in questions]
    prefix = tuple(token_ids(model, parts[0][0]))
    return prefix, tuple(tuple(token_ids(model, own)) for _, own in parts)


def engine_job(system: str, questions: tuple[str, ...], new_tokens: int, options: EngineOptions, budget_s: float,
               again: bool = False) -> Job:
    """This configuration's run on these requests: running, stored, or started now."""
    model = lm()   # loaded in the page's run, where loading can show progress
    prefix, suffixes = request_ids(system, questions)
    options = options.effective()

    def work(ctx: JobContext) -> EngineRun:
        return serve(model, list(prefix), [list(s) for s in suffixes], new_tokens, options, on_progress=ctx.report,
                     should_stop=ctx.should_stop)

    return job_registry().submit(("serving engine", system, questions, int(new_tokens), options), work,
                                 title=f"Engine: {options.describe()}", budget_s=budget_s, fresh=again)
