"""Cached model work for the positional-encoding and RoPE pages, keyed by text and numbers only.

The traced pass over a text (q and k before and after RoPE, every layer's scores) is kept in
`st.cache_resource` and treated as read-only: moving the layer, head, token or pair sliders only reads it.
Small results (a shift check, the shuffle experiment, perplexities) are kept in `st.cache_data`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.model.perplexity import perplexity
from engine.inside.positions import OrderEffect, PositionFacts, ShiftCheck, order_effect, position_facts, shift_check, \
    shifted_scores, shuffle_words
from engine.inside.rope import RopeFrequencies, rope_frequencies, rotation_tables
from engine.tokens.offsets import decode, decode_each, token_ids, tokenize, visible
from engine.model.traced import Interventions, TracedPass, trace
from ui.models import lm

MAX_TOKENS = 96      # every layer's q, k and scores for 96 tokens is about 25 MB; a 96-row heatmap stays legible
MAX_SHIFT = 8_000    # about the model's 8,192-token context

ORDER_SETTINGS = {   # the shuffle experiment's three models, from the real one to a truly order-blind one
    "RoPE on, causal mask (the real model)": Interventions(),
    "RoPE off, causal mask": Interventions(rope=False),
    "RoPE off, no mask (order-blind)": Interventions(rope=False, causal_mask=False),
}


@st.cache_resource(max_entries=4, show_spinner=False)
def rope_pass(text: str) -> TracedPass:
    """Every layer's q and k before and after RoPE, and its attention scores (read-only arrays)."""
    return trace(lm(), token_ids(lm(), text), record={"q", "k", "q_rot", "k_rot", "scores"})


@st.cache_data(max_entries=64, show_spinner=False)
def token_labels(text: str) -> list[str]:
    return [visible(t) for t in decode_each(lm(), token_ids(lm(), text))]


@st.cache_data(max_entries=128, show_spinner=False)
def shift(text: str, k: int) -> ShiftCheck:
    """The model with positions 0..T-1 against k..k+T-1: attention scores and logits compared."""
    return shift_check(rope_pass(text), shifted_scores(lm(), token_ids(lm(), text), k))


@st.cache_data(max_entries=256, show_spinner=False)
def text_perplexity(text: str, rope: bool = True, theta: float | None = None, scale: float = 1.0) -> float:
    iv = Interventions(rope=rope, rope_theta=theta, position_scale=scale)
    return perplexity(lm(), token_ids(lm(), text), iv).perplexity


@st.cache_data(max_entries=4, show_spinner=False)
def facts() -> PositionFacts:
    return position_facts(lm())


@st.cache_data(max_entries=4, show_spinner=False)
def frequencies() -> RopeFrequencies:
    return rope_frequencies(lm())


@st.cache_data(max_entries=32, show_spinner=False)
def rotations(positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [positions, pairs] from the model's own rotary module."""
    return rotation_tables(lm(), positions)


@dataclass(frozen=True)
class ShuffleResult:
    shuffled_text: str | None      # None: too few words to shuffle
    tokens: int
    effects: tuple[OrderEffect, ...]
    token_texts: dict[int, str]    # id -> decoded text, for every token the effects name


@st.cache_data(max_entries=64, show_spinner=False)
def shuffle_experiment(text: str, seed: int) -> ShuffleResult:
    """Shuffle the middle words and compare the prediction after the last token under each of ORDER_SETTINGS."""
    model = lm()
    tokens = tokenize(model, text)
    ids = [t.id for t in tokens]
    shuffled = shuffle_words(ids, [t.piece for t in tokens], seed)
    if shuffled is None:
        return ShuffleResult(None, len(ids), (), {})
    effects = tuple(order_effect(model, ids, list(shuffled), name, iv) for name, iv in ORDER_SETTINGS.items())
    named = sorted({i for e in effects for i, _ in e.original_top + e.shuffled_top})
    return ShuffleResult(decode(model, list(shuffled)), len(ids), effects,
                         dict(zip(named, decode_each(model, named))))
