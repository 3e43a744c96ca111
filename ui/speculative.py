"""The speculative-decoding timing job: greedy and speculative decoding of the same prompt, both timed.

Keyed by every input, so a shared link joins (or reads) the same measurement; "Measure again" starts afresh.
"""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.decoding.speculative import Comparison, FirstRound, compare, first_round
from engine.tokens.offsets import token_ids
from ui.models import lm


def comparison_job(prompt: str, new_tokens: int, drafter: str, k: int, ngram: int, exit_layer: int,
                   budget_s: float, again: bool = False) -> Job:
    model = lm()   # loaded in the page's run, where loading can show progress

    def work(ctx: JobContext) -> Comparison:
        return compare(model, prompt, new_tokens, drafter=drafter, k=k, ngram=ngram, exit_layer=exit_layer,
                       on_progress=ctx.report, should_stop=ctx.should_stop)

    key = ("speculative decoding", prompt, int(new_tokens), drafter, int(k), int(ngram), int(exit_layer))
    return job_registry().submit(key, work, title="Speculative decoding", budget_s=budget_s, fresh=again)


@st.cache_data(max_entries=64, show_spinner=False)
def checked_first_round(prompt: str, drafter: str, k: int, ngram: int, exit_layer: int) -> FirstRound:
    """Round 1 drafted and checked at once (one draft, one full-model pass), shown while the timed runs work."""
    return first_round(lm(), token_ids(lm(), prompt), drafter, k, ngram, exit_layer)
