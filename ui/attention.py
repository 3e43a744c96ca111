"""Cached attention computations for the attention pages, keyed by text and numbers only.

The forward pass (every head's weights and the residual stream) is cached per text in `st.cache_resource`
and treated as read-only; moving a layer, head or query slider only reads it, it never re-runs the model.
"""
from __future__ import annotations


import numpy as np
import streamlit as st

from engine.inside.attention import AttentionCapture, AttentionStep, HeadStats, attention_step, capture, head_stats, pooled
from engine.tokens.offsets import visible
from ui.models import lm

MAX_TOKENS = 64   # a 64 x 64 map per head stays readable; 30 x 9 of them stay light
THUMBNAIL = 16    # cells per side of an overview thumbnail


@st.cache_resource(max_entries=8, show_spinner=False)
def captured(text: str) -> AttentionCapture:
    """The model's forward pass over `text` with every attention map and hidden state (read-only arrays)."""
    return capture(lm(), text)


@st.cache_data(max_entries=256, show_spinner=False)
def worked_step(text: str, layer: int, head: int, query: int) -> AttentionStep:
    return attention_step(lm(), captured(text), layer, head, query)


@st.cache_data(max_entries=32, show_spinner=False)
def statistics(text: str) -> HeadStats:
    return head_stats(captured(text).attentions)


@st.cache_data(max_entries=32, show_spinner=False)
def thumbnails(text: str) -> np.ndarray:
    return pooled(captured(text).attentions, THUMBNAIL).astype(np.float32)


def token_labels(cap: AttentionCapture) -> list[str]:
    """Chart labels with whitespace made visible."""
    return [visible(t) for t in cap.tokens]


def head_name(layer: int, head: int) -> str:
    """0-based indices to the 1-based name the pages show, e.g. L3H5."""
    return f"L{layer + 1}H{head + 1}"
