"""Cached computations for the grouped-query attention page, keyed by text and numbers only.

A layer's attention maps live in `st.cache_resource` (read-only arrays, 9 x T x T); choosing another KV
group only slices them, and the perplexities come from engine.model.perplexity's shared cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.inside.gqa import head_differences, pooled_interventions, traced_kv_bytes
from engine.model.perplexity import perplexity
from engine.tokens.offsets import decode_each, token_ids, visible
from engine.model.traced import Interventions, trace
from ui.models import lm

MAX_TOKENS = 64   # three 64 x 64 maps side by side stay readable


@st.cache_data(max_entries=64, show_spinner=False)
def token_labels(text: str) -> list[str]:
    model = lm()
    return [visible(t) for t in decode_each(model, token_ids(model, text))]


@st.cache_resource(max_entries=16, show_spinner=False)
def layer_probs(text: str, layer: int) -> np.ndarray:
    """[heads, T, T] attention weights of one layer (0-based), read-only."""
    model = lm()
    return trace(model, token_ids(model, text), record={"probs"}, layers=[layer]).at("probs", layer)


@st.cache_data(max_entries=64, show_spinner=False)
def distances(text: str, layer: int) -> np.ndarray:
    return head_differences(layer_probs(text, layer))


@dataclass(frozen=True)
class PoolingCost:
    first: int                  # 0-based, inclusive
    last: int
    before_ppl: float
    after_ppl: float
    before_top1: float
    after_top1: float
    before_bits: np.ndarray     # [T - 1] surprise per predicted token
    after_bits: np.ndarray


@st.cache_data(max_entries=64, show_spinner=False)
def pooling_cost(text: str, first: int, last: int) -> PoolingCost:
    """Perplexity with the model's 3 KV heads against one mean-pooled KV head in layers first..last."""
    model = lm()
    ids = token_ids(model, text)
    before = perplexity(model, ids)
    after = perplexity(model, ids, pooled_interventions(model, first, last))
    return PoolingCost(first, last, before.perplexity, after.perplexity, before.top1_accuracy, after.top1_accuracy,
                       before.token_nll / np.log(2), after.token_nll / np.log(2))


@st.cache_data(max_entries=64, show_spinner=False)
def mqa_tensor_bytes(text: str) -> tuple[int, int, tuple]:
    """(bytes, tokens, one layer's K shape) of the K and V tensors of the pass pooled to one KV head."""
    model = lm()
    ids = token_ids(model, text)
    total, shape = traced_kv_bytes(model, ids, Interventions(kv_groups=1))
    return total, len(ids), shape
