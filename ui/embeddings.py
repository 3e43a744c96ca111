"""Embedding computations cached by their inputs (strings, numbers and flags), shared by every session."""
from __future__ import annotations

import logging
import threading

import numpy as np
import streamlit as st

from engine.embeddings import (AnalogyResult, Neighbours, WordMap, embedding_matrix, map_words, neighbours,
                               normalize_rows, solve_analogy, warm_umap)
from engine.gate import lowest_priority_for_this_thread
from ui.models import lm

log = logging.getLogger("llm_handbook")


@st.cache_resource(max_entries=1, show_spinner=False)
def normalized_embeddings() -> np.ndarray:
    """Every row of the embedding matrix scaled to length 1 (a float32 copy, ~113 MB), computed once, read-only."""
    unit = normalize_rows(embedding_matrix(lm()))
    unit.flags.writeable = False
    return unit


@st.cache_data(max_entries=1, show_spinner=False)
def mean_row_length() -> float:
    return float(np.linalg.norm(embedding_matrix(lm()), axis=1).mean())


@st.cache_data(max_entries=64, show_spinner=False)
def word_map(groups_text: str, leading_space: bool, method: str, dims: int, background: int,
             seed: int = 0) -> WordMap:
    return map_words(lm(), groups_text, leading_space, method, dims, background, seed)


@st.cache_data(max_entries=256, show_spinner=False)
def nearest(word: str, leading_space: bool, k: int, exclude_query: bool, hide_variants: bool) -> Neighbours:
    return neighbours(lm(), normalized_embeddings(), word, leading_space, k, exclude_query, hide_variants)


@st.cache_data(max_entries=128, show_spinner=False)
def arithmetic(a: str, b: str, c: str, expected: str, leading_space: bool, k: int = 10) -> AnalogyResult | None:
    return solve_analogy(lm(), normalized_embeddings(), a, b, c, expected, leading_space, k)


def _warm() -> None:
    lowest_priority_for_this_thread()   # nine seconds of compiling must not slow the readers down
    # The page run that starts this thread may be importing torch right now. UMAP's imports (scipy) look
    # torch up half-initialised and fail; importing it here waits until that import has finished.
    import torch  # noqa: F401
    try:
        log.info("UMAP warmed up (numba compiled) in %.1f s", warm_umap())
    except Exception:  # a failed warm-up only means the first UMAP view is slower
        log.exception("UMAP warm-up failed")


@st.cache_resource(show_spinner=False)
def umap_warmup() -> threading.Thread:
    """Compile UMAP's numba code once per server, in the background (about 9 s of one core)."""
    thread = threading.Thread(target=_warm, name="umap-warmup", daemon=True)
    thread.start()
    return thread
