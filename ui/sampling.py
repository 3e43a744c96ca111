"""Cached views for the temperature and top-k/top-p pages (keys are strings and numbers only).

Moving a temperature, k or p slider reads these caches: no forward pass runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.model.forward import forward
from engine.decoding.generation import softmax
from engine.decoding.sampling import FilterResult, apply_temperature, entropy_bits
from engine.tokens.offsets import decode_each, token_ids, visible
from ui.cached import next_token
from ui.models import lm

CURVE_TEMPERATURES = tuple(round(0.05 * i, 2) for i in range(1, 41))  # 0.05 .. 2.00


@dataclass(frozen=True)
class TemperatureCurve:
    temperatures: tuple[float, ...]
    entropies: np.ndarray   # bits at each T
    top1: np.ndarray        # the argmax token's probability at each T


@st.cache_data(max_entries=128, show_spinner=False)
def temperature_curve(text: str) -> TemperatureCurve:
    """Entropy and top-1 probability of the real next-token distribution for T = 0.05 .. 2."""
    logits = next_token(text).logits
    dists = [apply_temperature(logits, t) for t in CURVE_TEMPERATURES]
    return TemperatureCurve(CURVE_TEMPERATURES, np.array([entropy_bits(d) for d in dists]),
                            np.array([d.max() for d in dists]))


@st.cache_data(max_entries=256, show_spinner=False)
def token_texts(ids: tuple[int, ...]) -> list[str]:
    return decode_each(lm(), list(ids))


@dataclass(frozen=True)
class Steps:
    """One forward pass of a text: the next-token logits after every token, and each step's entropy at T = 1."""
    ids: list[int]
    texts: list[str]          # each token decoded on its own
    logits: np.ndarray        # [tokens, vocab] float32, read-only
    entropies: np.ndarray     # [tokens] bits
    top_guess: list[str]      # the argmax token after each position
    top_probability: np.ndarray  # its probability at T = 1

    @property
    def confident(self) -> int:
        return int(np.argmin(self.entropies))

    @property
    def uncertain(self) -> int:
        return int(np.argmax(self.entropies))


@st.cache_resource(max_entries=4, show_spinner=False)
def steps(text: str) -> Steps:
    """Cached as a resource (up to 128 x 49,152 floats each): callers must not modify the arrays."""
    model = lm()
    ids = token_ids(model, text)
    logits = forward(model, ids).logits
    logits.setflags(write=False)
    dists = [softmax(row) for row in logits]
    guesses = decode_each(model, [int(i) for i in logits.argmax(axis=1)])
    return Steps(ids=ids, texts=decode_each(model, ids), logits=logits,
                 entropies=np.array([entropy_bits(d) for d in dists]), top_guess=guesses,
                 top_probability=np.array([d.max() for d in dists]))


def chart_label(token_text: str, limit: int = 18) -> str:
    """A token as a chart label: whitespace made visible, very long tokens shortened with an ellipsis."""
    label = visible(token_text)
    return label if len(label) <= limit else label[:limit - 1] + "…"


def filter_statuses(result: FilterResult, ids: np.ndarray) -> list[str]:
    """For each token: "kept", or the first filter in the chain that removed it."""
    if result.temperature <= 0:
        return ["kept" if result.keep[i] else "greedy" for i in ids]
    return ["kept" if result.keep[i] else "top-k" if not result.after_top_k[i]
            else "top-p" if not result.after_top_p[i] else "min-p" for i in ids]
