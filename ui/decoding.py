"""Cached decoding runs for the greedy-decoding and beam-search pages (strings and numbers in, results out)."""
from __future__ import annotations

import streamlit as st

from engine.decoding.strategies import BeamResult, GreedyTrace, beam_search, greedy_trace, sequence_logprob
from engine.tokens.offsets import decode, decode_each, token_ids
from ui.models import lm


@st.cache_data(max_entries=64, show_spinner=False)
def prompt_ids(text: str) -> tuple[int, ...]:
    return tuple(token_ids(lm(), text))


@st.cache_data(max_entries=64, show_spinner=False)
def greedy(text: str, steps: int) -> GreedyTrace:
    return greedy_trace(lm(), list(prompt_ids(text)), steps)


@st.cache_data(max_entries=64, show_spinner=False)
def beam(text: str, width: int, steps: int, length_penalty: float) -> BeamResult:
    return beam_search(lm(), list(prompt_ids(text)), width, steps, length_penalty)


@st.cache_data(max_entries=256, show_spinner=False)
def logprob_of(text: str, new_ids: tuple[int, ...]) -> float:
    return sequence_logprob(lm(), list(prompt_ids(text)), list(new_ids))


@st.cache_data(max_entries=512, show_spinner=False)
def pieces(ids: tuple[int, ...]) -> list[str]:
    return decode_each(lm(), list(ids))


@st.cache_data(max_entries=512, show_spinner=False)
def text_of(ids: tuple[int, ...]) -> str:
    return decode(lm(), list(ids))
