"""Cached computations for the mixture-of-experts page, keyed by text and numbers only.

The perplexity for the reader's own k is computed in the page's run (two traced passes, both cached by
engine.model.perplexity); the sweep over every k and both routers (fifteen passes, seconds) runs as a job keyed by
its inputs, so a second reader or a share link joins or reads it instead of starting another.
"""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.inside.moe import KSweep, LayerRouting, layer_routing, moe_interventions, sweep_k
from engine.model.perplexity import perplexity
from engine.tokens.offsets import decode_each, token_ids, visible
from ui.models import lm

MAX_TOKENS = 64
SWEEP_BUDGET_S = 90


@st.cache_data(max_entries=64, show_spinner=False)
def token_labels(text: str) -> list[str]:
    model = lm()
    return [visible(t) for t in decode_each(model, token_ids(model, text))]


@st.cache_data(max_entries=128, show_spinner=False)
def moe_perplexity(text: str, first: int, last: int, k: int, grouping: str) -> tuple[float, float, float, float]:
    """(dense perplexity, MoE perplexity, dense top-1, MoE top-1) with layers first..last (0-based) made MoE."""
    model = lm()
    ids = token_ids(model, text)
    dense = perplexity(model, ids)
    sparse = perplexity(model, ids, moe_interventions(model, range(first, last + 1), k, grouping))
    return dense.perplexity, sparse.perplexity, dense.top1_accuracy, sparse.top1_accuracy


@st.cache_data(max_entries=64, show_spinner=False)
def routing(text: str, first: int, last: int, k: int, layer: int, grouping: str) -> LayerRouting:
    model = lm()
    return layer_routing(model, token_ids(model, text), range(first, last + 1), k, layer, grouping)


def sweep_job(text: str, first: int, last: int, grouping: str) -> Job:
    """Perplexity for k = 1..8 with both routers, layers first..last (0-based) sparse: running, stored, or
    started now."""
    model = lm()   # loaded in the page's run: the job's thread has no page to show loading progress on
    ids = token_ids(model, text)

    def work(ctx: JobContext) -> KSweep:
        ctx.report(0.0, "Measuring the dense model...")

        def on_step(done: int, total: int) -> None:
            ctx.report(done / total, f"Pass {done} of {total}: one k, one router, your whole text")

        return sweep_k(model, ids, range(first, last + 1), grouping, on_step=on_step, should_stop=ctx.should_stop)

    return job_registry().submit(("moe k sweep", tuple(ids), first, last, grouping), work,
                                 title="MoE sweep over k", budget_s=SWEEP_BUDGET_S)
