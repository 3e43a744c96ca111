"""Cached pieces of the state-space page: the live model's surprise per token, the scan run on real embeddings, and
the measured per-layer step costs (a job).

The scan itself is a few numpy passes over at most ~100 tokens; it is cached per (text, selectivity, decay) so
that moving a slider back costs nothing, and the model's forward pass (the surprise) is cached per text.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.runtime.gate import model_work
from engine.runtime.jobs import Job, JobContext, job_registry
from engine.model.perplexity import perplexity
from engine.inside.state_space import (StepCosts, convolution_form, measure_step_costs, retention, selective_deltas,
                                selective_scan, step_lengths, unrolled_form)
from engine.tokens.offsets import decode_each, token_ids
from ui.models import lm

STATES = 4             # state numbers per channel of the scan run on the text (4 keeps its checks quick)
MAMBA_STATES = 16      # Mamba's default state size per channel, used for the measured layer
CHECK_CHANNELS = 64    # channels of the embedding the direct forms are checked on
STEP_BUDGET_S = 60
STEP_CAP = 16384       # a 16k cache is 25 MB per layer here; beyond, one reader's sweep would hog memory and a core
EXPAND = 2             # Mamba's inner width: 2 x d_model channels


@dataclass(frozen=True, eq=False)
class ScanView:
    tokens: list[str]
    surprise: np.ndarray        # [T] nats; the first token (nothing predicts it) gets the text's mean
    deltas: np.ndarray          # [T]
    kept: np.ndarray            # [T, T] retention, each row scaled to sum to 1
    raw_last: np.ndarray        # [T] unscaled retention of each token in the final state
    unrolled_gap: float         # max |scan - unrolled| on real embedding channels, with these deltas
    convolution_gap: float      # max |scan - convolution| with selectivity 0 (every delta the same)


@st.cache_data(max_entries=32, show_spinner=False)
def _surprise(text: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    model = lm()
    ids = token_ids(model, text)
    nll = perplexity(model, ids).token_nll
    surprise = np.concatenate([[float(nll.mean()) if nll.size else 0.0], nll]).astype(np.float64)
    embeddings = model.model.model.embed_tokens.weight[ids].numpy().astype(np.float64)
    return decode_each(model, ids), surprise, embeddings


@st.cache_data(max_entries=64, show_spinner=False)
def scan_view(text: str, selectivity: float, decay: float) -> ScanView:
    tokens, surprise, x = _surprise(text)
    deltas = selective_deltas(surprise, selectivity)
    W = retention(deltas, decay)
    rows = W.sum(1, keepdims=True)
    A = -decay * np.arange(1, STATES + 1, dtype=np.float64)     # one slow state and faster ones per channel
    channels = x[:, :CHECK_CHANNELS]
    scan = selective_scan(channels, deltas, A, 1.0, 1.0)
    flat = selective_deltas(surprise, 0.0)
    flat_scan = selective_scan(channels, flat, A, 1.0, 1.0)
    return ScanView(tokens=tokens, surprise=surprise, deltas=deltas, kept=W / rows, raw_last=W[-1],
                    unrolled_gap=float(np.abs(scan.y - unrolled_form(channels, deltas, A, 1.0, 1.0)).max()),
                    convolution_gap=float(np.abs(flat_scan.y - convolution_form(channels, flat[0], A, 1.0, 1.0)).max()))


def step_cost_job(longest: int, again: bool = False) -> Job:
    """One decode step of one attention layer (SmolLM2's shapes) and of one scan layer, at growing contexts."""
    card = lm().card
    lengths = step_lengths(longest, STEP_CAP)

    def work(ctx: JobContext) -> StepCosts:
        ctx.report(0.0, f"Timing one decode step at {lengths[0]:,} cached tokens...")

        def on_point(done: int, total: int, point) -> None:
            ctx.report(done / total, f"{point.context:,} tokens: attention {point.attention_ms:.2f} ms, scan "
                                     f"{point.scan_ms:.3f} ms ({done} of {total})")

        return measure_step_costs(lengths, card.heads, card.kv_heads, card.head_dim, EXPAND * card.d_model,
                                  MAMBA_STATES, on_point=on_point, should_stop=ctx.should_stop, work_gate=model_work)

    return job_registry().submit(("state-space step costs", tuple(lengths)), work, title="Step cost sweep",
                                 budget_s=STEP_BUDGET_S, fresh=again)
