"""The shared model handles: one copy per server process, loaded once, shown loading with progress.

`st.cache_resource` holds a small loader object rather than the model itself: a cached function may
not draw into a progress bar created outside it, and the first load wants to show its progress.
"""
from __future__ import annotations

import gc
import threading
from typing import Callable, Generic, TypeVar

import streamlit as st

from engine.model.encoder import LiveEncoder, load_encoder
from engine.model.live_model import LiveModel, load_live_model
from engine.model.model_source import ModelUnavailable

# transformers resolves its names lazily on first use. Two threads resolving them at once (a page loading
# SmolLM2 while a job builds the baby GPT) can see a half-imported module and fail with "cannot import name
# 'AutoModelForCausalLM'". Resolving every name the engine uses here, once, in the thread that imports the
# app's pages, settles them before any job thread starts.
from transformers import (AttentionInterface, AutoModel, AutoModelForCausalLM, AutoTokenizer,  # noqa: E402,F401
                          DynamicCache, LlamaConfig, LlamaForCausalLM)

T = TypeVar("T")


class SharedLoader(Generic[T]):
    """Loads a value once per process, whichever session asks first; the others wait for it."""

    def __init__(self, load: Callable[..., T]):
        self._load, self._lock, self._value = load, threading.Lock(), None

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def get(self, **kwargs) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._load(**kwargs)
                # The model's tens of thousands of long-lived objects need never be walked by the garbage
                # collector again: freezing them makes every later collection cheap (Python's gc.freeze).
                gc.collect()
                gc.freeze()
            return self._value


@st.cache_resource(show_spinner=False)
def _model_loader() -> SharedLoader[LiveModel]:
    return SharedLoader(load_live_model)


@st.cache_resource(show_spinner=False)
def _encoder_loader() -> SharedLoader[LiveEncoder]:
    return SharedLoader(load_encoder)


def lm() -> LiveModel:
    """SmolLM2, loaded on first use. A missing model package ends the page with the command that fixes it."""
    loader = _model_loader()
    if loader.loaded:
        return loader.get()
    slot = st.empty()

    def report(message: str, fraction: float) -> None:
        slot.progress(min(max(fraction, 0.0), 1.0), text=f"Preparing the model: {message}")

    report("loading SmolLM2-135M-Instruct", 0.02)
    try:
        model = loader.get(report=report)
    except ModelUnavailable as err:
        slot.empty()
        st.error(f"The language model could not be loaded. {err}", icon=":material/error:")
        st.stop()
    slot.empty()
    return model


def encoder() -> LiveEncoder:
    loader = _encoder_loader()
    try:
        if loader.loaded:
            return loader.get()
        with st.spinner("Loading the sentence encoder (all-MiniLM-L6-v2)..."):
            return loader.get()
    except ModelUnavailable as err:
        st.error(f"The sentence encoder could not be loaded. {err}", icon=":material/error:")
        st.stop()
