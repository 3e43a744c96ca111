"""Cached model work for the memory-augmented page: one traced pass per text, neighbour lists per (document,
query, key kind), and the chat budget. The k, temperature and lambda sliders read these and run no pass."""
from __future__ import annotations

import streamlit as st

from engine.tokens.offsets import decode_each, token_ids
from engine.using.knn_lm import HiddenPass, Memory, Neighbours, build_memory, hidden_pass, nearest
from engine.using.memory_budget import BUNDLED_CHAT, MemoryComparison, compare_memory
from ui.models import lm


@st.cache_resource(max_entries=16, show_spinner=False)
def text_pass(text: str) -> HiddenPass:
    """The one forward pass over a text (document or query); read-only, shared by every session."""
    model = lm()
    return hidden_pass(model, token_ids(model, text))


@st.cache_resource(max_entries=32, show_spinner=False)
def token_texts(text: str) -> tuple[str, ...]:
    model = lm()
    return tuple(decode_each(model, token_ids(model, text)))


@st.cache_data(max_entries=256, show_spinner=False)
def decoded(ids: tuple[int, ...]) -> list[str]:
    return decode_each(lm(), list(ids))


@st.cache_resource(max_entries=16, show_spinner=False)
def memory_and_neighbours(doc: str, query: str, kind: str) -> tuple[Memory, Neighbours]:
    memory = build_memory(text_pass(doc), kind)
    return memory, nearest(memory, text_pass(query).keys[kind][:-1])


@st.cache_data(max_entries=32, show_spinner=False)
def chat_budget(keep_last: int) -> MemoryComparison:
    return compare_memory(lm(), list(BUNDLED_CHAT), keep_last)
