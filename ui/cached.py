"""Model computations cached by their inputs (strings and numbers only), shared by every session.

A slider that only reshapes a result reads these caches and runs no forward pass.
"""
from __future__ import annotations

import streamlit as st

from engine.decoding.generation import Distribution, Generation, generate, next_token_distribution
from ui.models import lm


@st.cache_data(max_entries=256, show_spinner=False)
def next_token(text: str) -> Distribution:
    return next_token_distribution(lm(), text)


@st.cache_data(max_entries=128, show_spinner=False)
def continuation(text: str, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0) -> Generation:
    return generate(lm(), text, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
