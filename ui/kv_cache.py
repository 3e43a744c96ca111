"""KV-cache measurements for the kv-cache page, shared by every session of this server.

The timing runs as a job (engine.runtime.jobs) keyed by (prompt, new tokens): it takes seconds to a minute, so it
runs outside the page's script run, a second reader with the same link joins it, and its result is kept in
the registry's bounded store, so that a shared link shows the same run. "Measure again" starts a fresh job.
"""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.serving.kv_cache import CacheComparison, CacheGrowth, compare_generation, growth_points, measure_cache_growth
from engine.tokens.offsets import token_ids
from ui.models import lm

GROWTH_MIN_TOKENS = 64   # a short prompt is repeated up to this many tokens, so the growth line has points


def timing_job(prompt: str, new_tokens: int, budget_s: float, again: bool = False) -> Job:
    """The timing job for this prompt and length: running, stored, or started now."""
    model = lm()   # loaded here, in the page's run: the job's thread has no page to show loading progress on
    ids = token_ids(model, prompt)
    steps = int(new_tokens)

    def work(ctx: JobContext) -> CacheComparison:
        ctx.report(0.0, "Warming up the model...")

        def on_step(done: int, total: int, with_s: float, without_s: float) -> None:
            ctx.report(done / total, f"Token {done} of {total}: {1000 * with_s:.0f} ms with the cache, "
                                     f"{1000 * without_s:.0f} ms without")

        return compare_generation(model, ids, steps, on_step=on_step, time_budget_s=budget_s,
                                  should_stop=ctx.stop_requested)

    return job_registry().submit(("kv-cache timing", prompt, steps), work, title="KV-cache timing",
                                 budget_s=budget_s, fresh=again)


def cache_growth(prompt: str) -> CacheGrowth:
    """The real cache tensors weighed as the prompt's tokens are fed in (repeated up to 64 if shorter).

    A cache's bytes depend on how many tokens it holds, never on which: the measurement is kept by token
    count, so a reader whose prompt has a length already measured on this server reads that measurement.
    """
    ids = token_ids(lm(), prompt)
    return _growth_for_length(len(ids), tuple(ids))


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs={tuple: lambda ids: 0})
def _growth_for_length(tokens: int, ids: tuple[int, ...]) -> CacheGrowth:
    """Keyed by `tokens` alone (`ids`, the first asker's tokens, are hashed as a constant)."""
    return measure_cache_growth(lm(), list(ids), growth_points(max(GROWTH_MIN_TOKENS, tokens)))
