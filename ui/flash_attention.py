"""Cached pieces of the flash-attention page: one head's real q, k, v from the traced forward, and the cost sweep.

The traced pass is cached per (text, layer) in `st.cache_resource` (small arrays, read-only): moving the head,
the block size or the stepper only re-tiles a [T, 64] head in numpy, it never re-runs the model. The sweep
runs as a job keyed by its inputs (engine.runtime.jobs): a second reader with the same link joins it or reads it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.inside.flash_attention import CostSweep, head_vectors, measure_costs, sweep_lengths
from engine.runtime.gate import model_work
from engine.runtime.jobs import Job, JobContext, job_registry
from engine.tokens.offsets import decode_each, token_ids
from engine.model.traced import trace
from ui.models import lm

SWEEP_BUDGET_S = 60   # the sweep stops after this, so one reader cannot hold a core for long


@dataclass(frozen=True, eq=False)
class HeadData:
    """One query head of one layer on the reader's text: its vectors and the model's own output for it."""
    tokens: list[str]
    q: np.ndarray          # [T, head_dim], after RoPE
    k: np.ndarray          # [T, head_dim], after RoPE, the key/value head this query head reads
    v: np.ndarray
    model_output: np.ndarray   # [T, head_dim], the head's output inside the model's own pass (before W_O)
    kv_head: int


@st.cache_resource(max_entries=16, show_spinner=False)
def _layer_pass(text: str, layer: int):
    model = lm()
    ids = token_ids(model, text)
    return decode_each(model, ids), trace(model, ids, record={"q_rot", "k_rot", "v", "head_out"}, layers=[layer])


def head_data(text: str, layer: int, head: int) -> HeadData:
    """0-based layer and head."""
    tokens, tp = _layer_pass(text, layer)
    q_rot, k_rot = tp.at("q_rot", layer), tp.at("k_rot", layer)
    q, k, v = head_vectors(q_rot, k_rot, tp.at("v", layer), head)
    return HeadData(tokens=tokens, q=q, k=k, v=v, model_output=tp.at("head_out", layer)[head],
                    kv_head=head // (q_rot.shape[0] // k_rot.shape[0]))


@st.cache_data(max_entries=64, show_spinner=False)
def attention_map(text: str, layer: int, head: int) -> np.ndarray:
    """The head's [T, T] attention weights, the matrix naive attention forms and the tiles never do."""
    data = head_data(text, layer, head)
    scores = (data.q @ data.k.T) / np.sqrt(data.q.shape[1])
    scores[np.triu_indices(len(scores), 1)] = -np.inf
    weights = np.exp(scores - scores.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    return weights.astype(np.float32)


def cost_job(longest: int, cap: int, block: int, again: bool = False) -> Job:
    """The sweep for these lengths and block size: running, stored, or started now."""
    lengths = sweep_lengths(longest, cap)

    def work(ctx: JobContext) -> CostSweep:
        ctx.report(0.0, f"Timing naive and tiled attention at {lengths[0]:,} tokens...")

        def on_point(done: int, total: int, point) -> None:
            following = f"; next: {lengths[done]:,} tokens" if done < total else ""
            ctx.report(done / total, f"Measured {point.length:,} tokens ({done} of {total}){following}")

        return measure_costs(lengths, block, on_point=on_point, should_stop=ctx.should_stop, work_gate=model_work)

    return job_registry().submit(("flash-attention sweep", tuple(lengths), int(block)), work,
                                 title="Attention cost sweep", budget_s=SWEEP_BUDGET_S, fresh=again)
