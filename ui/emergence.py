"""Cached scoring for the emergence page: one problem in one forward pass (cached by its inputs), and the
k = 1..6 sweep as a job with progress (a few dozen passes take longer than a page run may)."""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.training.emergence import MAX_DIGITS, DigitsRow, Scored, problem, score, sweep
from ui.models import lm

SWEEP_BUDGET_S = 240


@st.cache_data(max_entries=256, show_spinner=False)
def scored_problem(operation: str, digits: int, index: int, seed: int) -> Scored:
    return score(lm(), problem(operation, digits, index, seed), seed)


def sweep_job(operation: str, per_digit: int, seed: int) -> Job:
    """All k = 1..MAX_DIGITS with `per_digit` problems each: running, stored, or started now."""
    model = lm()

    def work(ctx: JobContext) -> tuple[DigitsRow, ...]:
        def progress(done: int, total: int) -> None:
            ctx.report(done / total, f"Problem {done} of {total} ({MAX_DIGITS} sizes × {per_digit})")

        return sweep(model, operation, per_digit, seed, on_problem=progress, should_stop=ctx.should_stop)

    return job_registry().submit(("emergence sweep", operation, per_digit, seed), work,
                                 title="arithmetic by number of digits", budget_s=SWEEP_BUDGET_S)
