"""Cached compression results for the quantization and pruning pages, and their sweeps as jobs."""
from __future__ import annotations

import numpy as np
import streamlit as st

from engine.serving.compression import Damage, Quantizer, damage, linear_weight, make_pruner, sweep
from engine.runtime.jobs import Job, job_registry
from engine.tokens.offsets import token_ids
from ui.models import lm

SWEEP_BITS = (8, 6, 4, 3, 2)
SWEEP_SPARSITY = (0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.8)
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj")


@st.cache_data(max_entries=32, show_spinner=False)
def ids_of(text: str) -> tuple[int, ...]:
    return tuple(token_ids(lm(), text))


@st.cache_data(max_entries=128, show_spinner=False)
def quantized(text: str, bits: int, granularity: str, scheme: str, group: int) -> Damage:
    return damage(lm(), list(ids_of(text)), Quantizer(bits, granularity, scheme, group))


@st.cache_data(max_entries=128, show_spinner=False)
def pruned(text: str, sparsity: float, method: str, pattern: str) -> Damage:
    ids = ids_of(text)
    return damage(lm(), list(ids), make_pruner(lm(), sparsity, method, pattern, ids))


def quantization_sweep(text: str, granularity: str, scheme: str, group: int) -> Job:
    model, ids = lm(), list(ids_of(text))
    transforms = [(b, Quantizer(b, granularity, scheme, group)) for b in SWEEP_BITS]

    def work(ctx):
        return sweep(model, ids, transforms, should_stop=ctx.should_stop,
                     on_step=lambda d, t: ctx.report(d / t, f"{d} of {t} bit widths measured"))

    return job_registry().submit(("quantization sweep", tuple(ids), granularity, scheme, group), work,
                                 title="quantization sweep", budget_s=180)


def pruning_sweep(text: str, method: str) -> Job:
    model, ids = lm(), ids_of(text)
    transforms = [(s, make_pruner(model, s, method, "unstructured", ids)) for s in SWEEP_SPARSITY]

    def work(ctx):
        return sweep(model, list(ids), transforms, should_stop=ctx.should_stop,
                     on_step=lambda d, t: ctx.report(d / t, f"{d} of {t} sparsities measured"))

    return job_registry().submit(("pruning sweep", ids, method), work, title="pruning sweep", budget_s=240)


@st.cache_data(max_entries=32, show_spinner=False)
def weight_sample(name: str, bits: int, granularity: str, scheme: str, group: int,
                  sample: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """A fixed sample of one matrix's weights, before and after quantization (the histogram's input)."""
    w = linear_weight(lm(), name)
    q = Quantizer(bits, granularity, scheme, group)(name, w)
    pick = np.random.default_rng(0).choice(w.numel(), size=min(sample, w.numel()), replace=False)
    return w.detach().reshape(-1).numpy()[pick], q.detach().reshape(-1).numpy()[pick]


@st.cache_data(max_entries=32, show_spinner=False)
def survivors(text: str, name: str, sparsity: float, pattern: str) -> np.ndarray:
    from engine.serving.compression import survival_map
    return survival_map(lm(), name, sparsity, pattern, ids_of(text))
