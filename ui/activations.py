"""Cached model work for the activation-functions page, keyed by text only.

The gate histograms of all 30 layers come from one traced pass per text (only the binned counts are kept, a
few kB per layer); moving the layer slider reads them. The three perplexities come from engine.model.perplexity,
whose own bounded cache is shared with every other page that swaps an activation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.inside.activations import GateStats, gate_stats, swapped
from engine.tokens.offsets import token_ids
from ui.models import lm

MAX_TOKENS = 128


@st.cache_data(max_entries=64, show_spinner=False)
def gate_histograms(text: str) -> GateStats:
    return gate_stats(lm(), token_ids(lm(), text))


@dataclass(frozen=True)
class Swap:
    ids: tuple[int, ...]
    perplexity: dict[str, float]       # function name -> perplexity of the text
    top1: dict[str, float]             # ... share of next tokens the model ranked first
    token_nll: dict[str, np.ndarray]   # ... nats per predicted token


@st.cache_data(max_entries=64, show_spinner=False)
def swap(text: str) -> Swap:
    ids = tuple(token_ids(lm(), text))
    results = swapped(lm(), ids)
    return Swap(ids=ids, perplexity={k: r.perplexity for k, r in results.items()},
                top1={k: r.top1_accuracy for k, r in results.items()},
                token_nll={k: np.asarray(r.token_nll) for k, r in results.items()})
