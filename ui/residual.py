"""Cached residual-stream computations for the residual-stream page, keyed by text and numbers only.

The stream pass (every layer's stream and writes, every head's output, the lens at the last position) is kept
read-only in a bounded resource cache; choosing a position, a token to follow or an exit layer only reads it.
Two things cost seconds and run as one job keyed by the text: the logit lens at every position (an lm_head
product per layer and position) and the perplexity at every exit layer (31 passes, shallow ones cheap).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.inside.residual import Attribution, ExitSweep, attribution, exit_sweep, lens_grid_pass, stream_pass
from engine.tokens.offsets import decode_each, token_ids, visible
from engine.model.traced import TracedPass
from ui.models import lm

MAX_TOKENS = 32         # a 30-row lens grid stays readable with one column per token up to about this many
READOUT_BUDGET_S = 120  # the readout takes a few seconds; the budget only guards a crowded server


@st.cache_resource(max_entries=6, show_spinner=False)
def stream(text: str) -> TracedPass:
    return stream_pass(lm(), token_ids(lm(), text))


@st.cache_data(max_entries=64, show_spinner=False)
def token_labels(text: str) -> list[str]:
    return [visible(t) for t in decode_each(lm(), token_ids(lm(), text))]


@st.cache_data(max_entries=2048, show_spinner=False)
def token_text(token_id: int) -> str:
    return decode_each(lm(), [int(token_id)])[0]


@st.cache_data(max_entries=128, show_spinner=False)
def logit_attribution(text: str, token_id: int, versus_id: int | None) -> Attribution:
    return attribution(lm(), stream(text), token_id, versus_id)


@dataclass(frozen=True, eq=False)
class Readout:
    """The layer-by-layer readout of a text: the lens grid's top guesses and the exit-layer perplexities."""
    top_ids: np.ndarray        # [layers, T] the lens's top guess after each block at each position
    top_probs: np.ndarray      # [layers, T]
    sweep: ExitSweep


def readout_job(text: str) -> Job:
    """The readout for this text: running, stored, or started now."""
    model = lm()   # loaded in the page's run, where loading can show progress
    ids = token_ids(model, text)

    def work(ctx: JobContext) -> Readout:
        ctx.report(0.02, "Reading every block at every position through the logit lens...")
        lens = lens_grid_pass(model, ids).lens
        total = model.card.layers + 1

        def step(done: int, _total: int, layer: int) -> None:
            ctx.report(0.25 + 0.75 * done / total, f"Perplexity when exiting after {layer} blocks "
                                                   f"({done} of {total} exits measured)")

        sweep = exit_sweep(model, ids, on_step=step, should_stop=ctx.should_stop)
        return Readout(top_ids=lens.top_ids[:, :, 0].copy(), top_probs=lens.top_probs[:, :, 0].copy(), sweep=sweep)

    return job_registry().submit(("residual-stream readout", tuple(ids)), work, title="Layer-by-layer readout",
                                 budget_s=READOUT_BUDGET_S)
